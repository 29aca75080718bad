"""Writing the security audit log: audit_record appends one entry to the one chain."""

import ipaddress
import json
import logging
import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.chain import AUDIT_LOG_ANCHOR, chain_key, link_hash, timestamp
from audit.models import AuditEntry
from core.client_ip import client_ip
from core.request_id import current_request_id

logger = logging.getLogger(__name__)

KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
# pg_advisory_xact_lock key of the audit log's chain: ASCII "audit".
CHAIN_LOCK = 0x6175646974


def entry_link_fields(entry: AuditEntry) -> dict[str, Any]:
    """What an entry's chain_hash covers: every field but its id and the hash itself."""
    return {
        "at": timestamp(entry.at),
        "kind": entry.kind,
        "actor": entry.actor_id,
        "actor_label": entry.actor_label,
        "subject": entry.subject,
        "ip": entry.ip,
        "request_id": entry.request_id,
        "details": entry.details,
    }


def _ip_of(request: HttpRequest | None) -> str | None:
    """The client's address (core.client_ip), or None when there is none worth keeping."""
    if request is None:
        return None
    address = client_ip(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:  # an X-Forwarded-For entry is whatever the client sent
        return None


def _lock_chain() -> None:
    """Serialise appends to the one chain until the transaction ends; SQLite (development) serialises writers."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])


def audit_record(
    *,
    kind: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str,
    subject: str = "",
    request: HttpRequest | None = None,
    **details: Any,
) -> AuditEntry:
    """Append a security event to the audit log: who (`actor`, `actor_label`), what `kind`, about which `subject`.

    `request` gives the client's IP; the request id comes from the context. A
    lock serialises appends (the log is low-volume), so call this last in a
    transaction that takes other locks, or outside one.
    """
    if not KIND.fullmatch(kind):
        raise ValueError(f"An audit kind is snake_case, up to 64 characters: {kind!r}")
    entry = AuditEntry(
        kind=kind,
        actor=actor if actor is not None and actor.pk is not None else None,
        actor_label=actor_label[:150],
        subject=str(subject)[:200],
        ip=_ip_of(request),
        request_id=current_request_id(),
        # As the database will give it back, so the hash matches on reading.
        details=json.loads(json.dumps(details, cls=DjangoJSONEncoder)),
    )
    with transaction.atomic(savepoint=False):
        _lock_chain()
        previous = AuditEntry.objects.order_by("-id").values_list("chain_hash", flat=True).first()
        entry.at = timezone.now()
        entry.chain_hash = link_hash(
            AUDIT_LOG_ANCHOR if previous is None else previous, entry_link_fields(entry), key=chain_key()
        )
        entry.save()
    logger.info("audit entry=%s kind=%s actor=%s", entry.id, kind, entry.actor_label)
    return entry
