"""``syncd catalog push [--dry-run]`` end to end: the real CLI against the emulator."""

from __future__ import annotations

from pathlib import Path

from syncd.config import load_settings
from syncd.scheduler import build_scheduler, install_jobs
from tests.cli_helpers import run_cli, syncd_env
from tests.stripe_sync.harness import World

from .helpers import catalog, stripe_counts


def test_cli_dry_run_push_and_stripe_error(world: World, tmp_path: Path) -> None:
    catalog(world)
    env = syncd_env(
        tmp_path,
        SYNCD_DATABASE_URL=str(world.engine.url),
        SYNCD_CATALOG_PATH="",
        SYNCD_STRIPE_API_KEY="sk_test_emulator",
        SYNCD_STRIPE_API_BASE=world.server.url if world.server else "",
        SYNCD_STRIPE_MAX_NETWORK_RETRIES="0",
    )
    dry = run_cli("catalog", "push", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "create     product pro: name='Pro'" in dry.stdout
    assert "would write 5 change(s) (dry run: nothing written)" in dry.stdout
    assert stripe_counts(world)["products"] == 0

    world.faults(server_error_count=1, paths=["/v1/prices"], methods=["POST"])
    failed = run_cli("catalog", "push", env=env)
    assert failed.returncode == 1
    assert "error: Stripe refused the push" in failed.stderr and "Traceback" not in failed.stderr
    assert stripe_counts(world) == {"products": 1, "prices": 0, "active_prices": 0}  # boost, linked

    done = run_cli("catalog", "push", env=env)
    assert done.returncode == 0, done.stderr
    assert "wrote 4 change(s)" in done.stdout  # resumed: boost price, pro product and prices


def test_usage_flush_job_is_scheduled(tmp_path: Path) -> None:
    (tmp_path / "syncd.toml").write_text("[stripe]\npush_catalog = true\n")
    settings = load_settings(tmp_path / "syncd.toml", environ={})
    scheduler = build_scheduler(settings)
    install_jobs(scheduler, settings)
    ids = {job.id for job in scheduler.get_jobs()}
    assert {"flush_usage_to_stripe", "push_catalog_to_stripe"} <= ids
