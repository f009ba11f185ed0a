"""``syncd reconcile --verify`` reports catalog push divergence, ``--repair`` pushes it."""

from __future__ import annotations

import pytest

from syncd.stripe_sync.cli import reconcile
from tests.stripe_sync.harness import World

from .helpers import catalog, run


def test_verify_reports_and_repair_pushes(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    catalog(world)
    run(world)
    world.sync()
    assert reconcile(world.settings, world.engine, verify_only=True, repair=False) == 0
    capsys.readouterr()

    month = next(
        p
        for p in world.emu.store.all("price")
        if p["metadata"]["syncd_plan"] == "pro" and (p["recurring"] or {}).get("interval") == "month"
    )
    world.client.v1.prices.update(month["id"], {"active": False})  # someone in the dashboard
    catalog(world, pro_year=59000)  # local amount change not pushed yet (a crash, say)

    assert reconcile(world.settings, world.engine, verify_only=True, repair=False) == 1
    out = capsys.readouterr().out
    assert "catalog push: update     price pro v1 month usd: active" in out
    assert "catalog push: deactivate price pro v1 year usd" in out and "amount 49000 -> 59000" in out
    assert "catalog push: create     price pro v1 year usd: 59000 usd" in out

    assert reconcile(world.settings, world.engine, verify_only=False, repair=True) == 0
    assert "pushed 3 change(s) to Stripe" in capsys.readouterr().out
    assert reconcile(world.settings, world.engine, verify_only=True, repair=False) == 0


def test_verify_ignores_a_catalog_syncd_does_not_own(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = world.catalog()  # linked to hand-made Stripe products, never pushed
    assert ids
    world.sync()
    assert reconcile(world.settings, world.engine, verify_only=True, repair=False) == 0
    assert "catalog push" not in capsys.readouterr().out
