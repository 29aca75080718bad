"""Reading the security audit log: its chain, checked."""

from collections.abc import Iterator

from audit.chain import AUDIT_LOG_ANCHOR, ChainCheck, Link, chain_check, chain_key
from audit.models import AuditEntry
from audit.services import entry_link_fields


def _links(batch_size: int) -> Iterator[Link]:
    last = 0
    while True:
        batch = list(AuditEntry.objects.filter(id__gt=last).order_by("id")[:batch_size])
        if not batch:
            return
        for entry in batch:
            yield Link(entry.id, entry.chain_hash, entry_link_fields(entry))
        last = batch[-1].id


def audit_log_check(*, batch_size: int = 500) -> ChainCheck:
    """Recompute the audit log's chain, `batch_size` entries at a time; stop at the first broken link."""
    return chain_check(_links(batch_size), anchor=AUDIT_LOG_ANCHOR, key=chain_key())
