"""Tamper evidence for the audit logs: every row carries a keyed hash chained to the row before it.

    chain_hash = HMAC-SHA256(key, previous || canonical JSON of the row's fields)

`previous` is the chain_hash of the previous row of the same chain, or the
chain's anchor for its first row: each gift's events form one chain (anchor
`gift:<id>`), the security audit log another (anchor `audit-log`). Altering a
row's fields or hash, deleting a row, or inserting one breaks the chain at that
point. The key is derived from BLIND_INDEX_KEY (core.crypto.derived_key), so
someone who can write the database but cannot read the application's
environment cannot compute a valid hash for anything they change.

What a chain cannot show on its own: rows cut off its end. `verify_audit_log`
prints each chain's head, so an operator can keep it elsewhere and compare.
"""

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.crypto import derived_key

KEY_LABEL = "audit-chain"
AUDIT_LOG_ANCHOR = "audit-log"


def chain_key() -> bytes:
    """The key of every audit chain: derived from BLIND_INDEX_KEY for this purpose only."""
    return derived_key(KEY_LABEL)


def gift_anchor(gift_id: object) -> str:
    """Where the chain of one gift's events starts."""
    return f"gift:{gift_id}"


def timestamp(moment: datetime) -> str:
    """A time as the chain hashes it: UTC, ISO 8601, to the microsecond (what both databases keep)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(fields: dict[str, Any]) -> bytes:
    """One byte string per value: sorted keys, no spaces, ASCII only."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def link_hash(previous: str, fields: dict[str, Any], *, key: bytes) -> str:
    """The chain_hash of a row with these `fields` that follows `previous` (a hash or an anchor)."""
    return hmac.new(key, previous.encode() + canonical_json(fields), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Link:
    """A stored row as the chain sees it: its id, the hash it carries, and the fields that hash covers."""

    row_id: int
    chain_hash: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class BrokenLink:
    """The first row whose stored hash is not the one its fields and predecessor give."""

    row_id: int
    expected: str
    found: str


@dataclass(frozen=True)
class ChainCheck:
    """A chain walked to its end or to its first broken link; `head` is the last hash walked."""

    rows: int
    head: str
    broken: BrokenLink | None


def chain_check(links: Iterable[Link], *, anchor: str, key: bytes) -> ChainCheck:
    """Walk one chain in order; stop at the first broken link."""
    previous, rows = anchor, 0
    for link in links:
        expected = link_hash(previous, link.fields, key=key)
        if not hmac.compare_digest(expected, link.chain_hash):
            return ChainCheck(rows=rows, head=previous, broken=BrokenLink(link.row_id, expected, link.chain_hash))
        previous, rows = link.chain_hash, rows + 1
    return ChainCheck(rows=rows, head=previous, broken=None)
