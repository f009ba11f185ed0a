"""Who may write a customer's, an object's or a company's rows right now (Postgres).

Webhook batches, the per-event fallback, sweep pages and the access-expiry job can all run at
once (threads, the applier process, replicas). They take transaction-scoped advisory locks
named ``customer:<id>`` (or ``<kind>:<id>`` for objects without a customer) and then
``company:<id>`` for the companies those resolve to, each set in one sorted statement, so two
holders of sets never wait on each other. SQLite has one writer at a time and needs none of this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import text
from sqlmodel import Session

from ..pgarray import plain_array
from .normalize import JSON, ref_id

_LOCK = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS ordered"
)


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def lock_objects(session: Session, objects: Sequence[tuple[str, JSON]]) -> None:
    """Each object's customer's lock (every writer of a customer's objects takes it), or the
    object's own for objects without a customer (products, prices), in one statement. One
    lock per customer keeps a sweep page (1,000 objects) well inside Postgres's shared lock table
    (``max_locks_per_transaction`` x connections)."""
    names: set[str] = set()
    for kind, obj in objects:
        customer = str(obj["id"]) if kind == "customer" else ref_id(obj.get("customer"))
        names.add(f"customer:{customer}" if customer else f"{kind}:{obj['id']}")
    advisory_locks(session, names)


# Advisory locks share Postgres's lock table (64 x connections by default): a transaction
# re-mapping every customer of a newly linked product must not fill it.
COMPANY_LOCKS_MAX = 1_000


def lock_companies(session: Session, company_ids: Iterable[str], *, created: Collection[str] = ()) -> None:
    """Companies about to be mapped (batches and sweep pages, right after their customers'
    locks, before any mapping write). A company can be reached through several customers,
    whose locks alone would let two writers map it at once. Companies ``created`` by this
    transaction need none: no other writer can see them before it commits (a backfill's
    pages thus hold a lock per customer only). A larger set (a product's re-link re-maps
    all its subscribers) goes without: it is rare, and running out of shared lock memory
    would fail it outright."""
    names = {f"company:{company_id}" for company_id in company_ids if company_id not in created}
    if len(names) <= COMPANY_LOCKS_MAX:
        advisory_locks(session, names)


def advisory_locks(session: Session, names: Iterable[str]) -> None:
    """Take these locks (held to the end of the transaction), in one sorted statement."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({lock_key(name) for name in names})
    if keys:
        session.execute(_LOCK, {"keys": plain_array(keys)})  # a literal: no per-key dumping
