"""Two appliers on Postgres deadlocking on customer locks: the victim's event is deferred (still
pending, no attempt spent) instead of failing, and the next run applies it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from syncd import migrate
from syncd.db import make_engine
from syncd.models import InboxEvent
from syncd.stripe_sync.apply import ApplyOptions, ApplyResult, apply_batch, apply_pending
from syncd.stripe_sync.inbox import store_event


def _customer_created(cus: str) -> dict[str, Any]:
    return {
        "id": f"evt_{cus}",
        "object": "event",
        "type": "customer.created",
        "created": 1_767_300_000,
        "data": {"object": {"id": cus, "object": "customer", "name": cus}},
    }


def _lock_key(name: str) -> int:
    # The key syncd's applier locks for a customer (stripe_sync.locks.lock_objects).
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def test_deadlock_victim_is_deferred_not_failed(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        for cus in ("cus_x", "cus_y"):
            event = _customer_created(cus)
            store_event(conn, json.dumps(event).encode(), event)
    options = ApplyOptions(max_attempts=1)  # one failure would make the event "failed" for good

    rival = engine.connect()
    # The rival checks for deadlocks far later than the batch (default 1 s), so the batch is
    # always the victim, however loaded the machine is.
    rival.execute(text("SET deadlock_timeout = '30s'"))
    rival.commit()
    rival_tx = rival.begin()
    rival.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("customer:cus_y")})
    result: dict[str, ApplyResult] = {}
    # The batch locks cus_x (first event), then waits for cus_y, which the rival holds ...
    batch = threading.Thread(
        target=lambda: result.update(r=apply_batch(engine, None, ["evt_cus_x", "evt_cus_y"], options=options))
    )
    batch.start()
    deadline = time.monotonic() + 10
    with engine.connect() as probe:
        while not probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
            assert time.monotonic() < deadline, "the batch never waited for the rival's lock"
            time.sleep(0.02)

    # ... and the rival now asks for cus_x: a deadlock, which the batch (waiting longer) detects.
    def take_x_then_commit() -> None:
        rival.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("customer:cus_x")})
        rival_tx.commit()

    blocked = threading.Thread(target=take_x_then_commit)
    blocked.start()
    batch.join(30)
    blocked.join(30)
    rival.close()
    assert result["r"].applied == 1 and result["r"].skipped == 1 and result["r"].failed == 0

    with Session(engine) as session:
        deferred = session.get(InboxEvent, "evt_cus_y")
        assert deferred is not None and deferred.status == "pending" and deferred.attempts == 0
    assert apply_pending(engine, None, options=options).applied == 1
    with Session(engine) as session:
        assert {e.status for e in session.exec(select(InboxEvent)).all()} == {"applied"}
    engine.dispose()
