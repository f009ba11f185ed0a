"""The boundary job in a real AsyncIOScheduler under a fake clock: it sleeps until the boundary
and publishes within one second of it; audiences assign plans through the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd import jobs
from syncd.config import CatalogSettings, DatabaseSettings, SchedulerSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.engine import wire
from syncd.models import ChangeLog, CompanyOverride, Feature, utcnow
from syncd.scheduler import install_jobs
from syncd.services import audiences

from .conftest import add_company, add_plan, assign, plans_of

BOUNDARY = datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC)


async def _published_at(daemon: Daemon, topic: str, timeout: float) -> datetime | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(daemon.engine) as session:
            if session.exec(select(ChangeLog).where(col(ChangeLog.topic) == topic)).first():
                return utcnow()
        await asyncio.sleep(0.05)
    return None


def test_boundary_job_wakes_at_the_boundary_and_publishes_within_a_second(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=str(tmp_path),
        database=DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path / 'syncd.db'}")),
        catalog=CatalogSettings(path=None),
        scheduler=SchedulerSettings(
            follow_interval_s=3600, audience_interval_s=3600, heartbeat_interval_s=3600
        ),
    )
    daemon = Daemon(settings)
    daemon.prepare()
    cid = add_company(daemon.engine)
    with session_scope(daemon.engine) as session:
        feature = Feature(key="beta", name="Beta")
        session.add(feature)
        session.flush()
        session.add(
            CompanyOverride(
                company_id=cid,
                feature_id=feature.id,
                value_type="boolean",
                value_bool=True,
                expiration_date=BOUNDARY,
            )
        )

    async def scenario() -> tuple[datetime | None, datetime | None]:
        jobs.set_current_daemon(daemon)
        daemon.loop = asyncio.get_running_loop()
        install_jobs(daemon.scheduler, settings)
        daemon.leadership.start()
        daemon.scheduler.start()
        try:
            await asyncio.sleep(0.3)  # the first run found nothing due and armed the boundary
            armed = daemon.scheduler.get_job(jobs.BOUNDARIES).next_run_time
            return armed, await _published_at(daemon, "company.override.expired", timeout=5)
        finally:
            daemon.scheduler.shutdown(wait=True)
            jobs.set_current_daemon(None)

    # tick=True: the fake clock starts 1.5 s before the boundary and runs at real speed.
    with freeze_time(BOUNDARY - timedelta(seconds=1.5), tick=True):
        armed, published = asyncio.run(scenario())
    daemon.close()
    assert armed == BOUNDARY
    assert published is not None, "nothing published"
    assert BOUNDARY <= published < BOUNDARY + timedelta(seconds=1)


def _trait_loader(traits: dict[str, str]) -> audiences.Loader:
    """A stand-in for syncd.state.load_companies: companies with one number trait each."""
    definition = wire.TraitDefinition(id="trdf_seats", comparable_type="int", entity_type="company")

    def load(session: Session, ids: Sequence[str] | None, now: datetime) -> dict[str, wire.Company]:
        assert ids is not None
        return {cid: wire.Company(id=cid, traits=[wire.Trait(traits[cid], definition)]) for cid in ids}

    return load


def test_audiences_assign_by_priority_and_take_back_when_no_longer_matching(engine: Engine) -> None:
    seats = {"id": "trdf_seats", "comparable_type": "int", "entity_type": "company"}

    def over(n: int) -> list[dict[str, object]]:
        return [
            {
                "id": f"cond_{n}",
                "condition_type": "trait",
                "operator": "gt",
                "resource_ids": [],
                "trait_value": str(n),
                "trait_definition": seats,
            }
        ]

    team = add_plan(engine, "team", audience=over(10), audience_priority=1)
    big = add_plan(engine, "enterprise", audience=over(100), audience_priority=5)
    manual = add_plan(engine, "custom")
    small, large, pinned = (
        add_company(engine, "Small"),
        add_company(engine, "Large"),
        add_company(engine, "Pinned"),
    )
    assign(engine, pinned, manual)  # assigned by hand: audiences leave it alone
    now = datetime.now(UTC)
    traits = {small: "20", large: "500", pinned: "500"}
    assert audiences.reevaluate(engine, None, now, _trait_loader(traits)) == 2
    assert plans_of(engine, small) == {team[0]: ("base", "audience")}
    assert plans_of(engine, large) == {big[0]: ("base", "audience")}  # higher priority wins
    assert plans_of(engine, pinned) == {manual[0]: ("base", "manual")}
    assert audiences.reevaluate(engine, None, now, _trait_loader(traits)) == 0  # idempotent
    traits[small] = "3"
    assert audiences.reevaluate(engine, [small], now, _trait_loader(traits)) == 1
    assert plans_of(engine, small) == {}  # no audience matches: the fallback plan applies
