"""The `syncd` command line.

Every command loads settings once, configures logging once, and turns syncd's own errors
into a one-line message on stderr with a non-zero exit status (2 for configuration, 1
otherwise); tracebacks are reserved for bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Console
from sqlalchemy.engine import Engine

from . import __version__, credits_cli
from .config import Settings, load_settings, masked
from .exceptions import ConfigError, SyncdError

Handler = Callable[[argparse.Namespace, Settings], int]
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd", description="Keep Stripe billing and product entitlements in sync."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: config/syncd.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the HTTP API, scheduler and Stripe sync in one process")
    run.add_argument("--host", help="interface to bind (default from [server] host)")
    run.add_argument("--port", type=int, help="port to bind (default from [server] port)")
    run.set_defaults(handler=cmd_run)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the database to the latest schema").set_defaults(
        handler=cmd_db_upgrade
    )
    db.add_parser("check", help="exit non-zero unless the schema is at the latest revision").set_defaults(
        handler=cmd_db_check
    )

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    cfg.add_parser("check", help="print the effective configuration, secrets masked").set_defaults(
        handler=cmd_config_check
    )

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key (printed once, on the last line)")
    create.add_argument("--kind", required=True, choices=["secret", "publishable", "readonly"])
    create.add_argument("--name", default="")
    create.set_defaults(handler=cmd_keys_create)

    catalog = sub.add_parser("catalog", help="catalog as code").add_subparsers(
        dest="catalog_command", required=True
    )
    apply = catalog.add_parser("apply", help="make the catalog match FILE (idempotent; prints the diff)")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    apply.add_argument("--prune", action="store_true", help="delete catalog objects missing from FILE")
    apply.set_defaults(handler=cmd_catalog_apply)
    export = catalog.add_parser("export", help="print the catalog as TOML or YAML")
    export.add_argument("--format", choices=["toml", "yaml"], default="toml")
    export.set_defaults(handler=cmd_catalog_export)
    push = catalog.add_parser("push", help="push plans/add-ons and their prices to Stripe (prints the diff)")
    push.add_argument("--dry-run", action="store_true", help="show what would be written, write nothing")
    push.add_argument(
        "--proration",
        choices=["create_prorations", "always_invoice", "none"],
        default=None,
        help="for migrated subscriptions (default: the catalog setting)",
    )
    push.set_defaults(handler=cmd_catalog_push)

    emulator = sub.add_parser("stripe-emulator", help="run the built-in Stripe emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=None, help="default from [stripe] emulator_port")
    emulator.add_argument("--seed", type=int, default=None, help="reproducible ids and fault draws")
    emulator.add_argument("--webhook-url", default=None, help="also deliver every event to this URL")
    emulator.set_defaults(handler=cmd_stripe_emulator)

    sub.add_parser("plugins", help="list installed adapters and their versions").set_defaults(
        handler=cmd_plugins
    )

    adapters = sub.add_parser("adapters", help="enabled adapters").add_subparsers(
        dest="adapters_command", required=True
    )
    resync = adapters.add_parser("resync", help="rebuild adapter targets (e.g. Redis) from current state")
    resync.add_argument("name", nargs="?", help="only this adapter (default: every enabled adapter)")
    resync.set_defaults(handler=cmd_adapters_resync)

    hooks = sub.add_parser("webhooks", help="outbound webhooks").add_subparsers(
        dest="webhooks_command", required=True
    )
    replay = hooks.add_parser("replay", help="re-queue dead-letter deliveries for a new round of attempts")
    replay.add_argument("--endpoint", metavar="ID", help="only this webhook endpoint (whk_...)")
    replay.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only deliveries created since: ISO 8601 time, or 30m/24h/7d ago",
    )
    replay.set_defaults(handler=cmd_webhooks_replay)

    reconcile = sub.add_parser("reconcile", help="reconcile local state with Stripe")
    mode = reconcile.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="print differences; exit 1 if any")
    mode.add_argument("--repair", action="store_true", help="make local state match Stripe")
    reconcile.set_defaults(handler=cmd_reconcile)
    backfill = sub.add_parser("backfill", help="resumable full sweep of Stripe into syncd")
    backfill.add_argument("--restart", action="store_true", help="start over instead of resuming")
    backfill.set_defaults(handler=cmd_backfill)
    credits_cli.register(sub, _prepared_engine)
    from .billing.cli import add_parsers as add_billing_parsers

    add_billing_parsers(sub)
    sub.choices["companies"].set_defaults(handler=cmd_companies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        _err.print(f"syncd: configuration error: {exc}", markup=False)
        return 2
    from .log import configure_logging

    configure_logging(settings.log.level, settings.log.format)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ConfigError as exc:
        _err.print(f"syncd: configuration error: {exc}", markup=False)
        return 2
    except SyncdError as exc:
        _err.print(f"syncd: error: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        return 130


def _prepared_engine(settings: Settings) -> Engine:
    """An engine on a reachable, migrated database."""
    from . import migrate
    from .db import check_connection, make_engine

    engine = make_engine(settings.database_url)
    check_connection(engine)
    migrate.upgrade(engine)
    return engine


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from .daemon import Daemon

    if settings.server.workers > 1:
        from .workers import serve_workers

        return serve_workers(settings, args.host, args.port)
    daemon = Daemon(settings)
    daemon.prepare()
    asyncio.run(daemon.serve(args.host, args.port))
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from . import migrate
    from .db import check_connection, make_engine

    engine = make_engine(settings.database_url)
    check_connection(engine)
    with _err.status("migrating database"):
        migrate.upgrade(engine)
    print(f"database at revision {migrate.current_revision(engine)}")
    return 0


def cmd_db_check(args: argparse.Namespace, settings: Settings) -> int:
    from . import migrate
    from .db import check_connection, make_engine

    engine = make_engine(settings.database_url)
    check_connection(engine)
    current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    print(f"current={current} head={head}")
    return 0 if current == head else 1


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(masked(settings), indent=2, default=str))
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from .apikeys import create_key
    from .db import session_scope

    engine = _prepared_engine(settings)
    with session_scope(engine) as session:
        row, plaintext = create_key(session, args.kind, args.name)
    print(f"created {row.kind} key {row.id} ({row.name or 'unnamed'}); it is shown once:", file=sys.stderr)
    print(plaintext)
    return 0


def cmd_catalog_apply(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import apply_catalog, load_catalog
    from .db import session_scope

    catalog = load_catalog(args.file)
    engine = _prepared_engine(settings)
    with session_scope(engine) as session:
        diff = apply_catalog(session, catalog, dry_run=args.dry_run, prune=args.prune)
    for line in diff.changes:
        print(line)
    for line in diff.kept:
        print(f"  kept: {line}")
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {len(diff.changes)} object(s)" if not diff.is_empty else "catalog already up to date")
    return 0


def cmd_catalog_push(args: argparse.Namespace, settings: Settings) -> int:
    from .stripe_push.cli import catalog_push

    engine = _prepared_engine(settings)
    return catalog_push(settings, engine, dry_run=args.dry_run, proration_behavior=args.proration)


def cmd_catalog_export(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import dump, export_catalog
    from .db import session_scope

    engine = _prepared_engine(settings)
    with session_scope(engine) as session:
        catalog = export_catalog(session)
    sys.stdout.write(dump(catalog, args.format))
    return 0


def cmd_stripe_emulator(args: argparse.Namespace, settings: Settings) -> int:
    from .stripe_emulator import EmulatorConfig, serve

    config = EmulatorConfig(
        seed=args.seed, webhook_url=args.webhook_url, api_version=settings.stripe.api_version
    )
    serve(args.host, args.port or settings.stripe.emulator_port, config, log_level=settings.log.level)
    return 0


def cmd_plugins(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from .plugins import installed_adapters

    print(json.dumps([asdict(a) for a in installed_adapters(settings)], indent=2))
    return 0


def cmd_adapters_resync(args: argparse.Namespace, settings: Settings) -> int:
    """Resync in this process: the same config reaches the same targets as the daemon."""
    from . import migrate
    from .daemon import Daemon
    from .db import check_connection
    from .exceptions import ValidationError
    from .publish import call_each

    daemon = Daemon(settings)
    try:
        check_connection(daemon.engine)
        if not migrate.is_at_head(daemon.engine):
            raise SyncdError("the database schema is not at the latest revision; run `syncd db upgrade`")
        daemon.start_plugins()
        assert daemon.plugins is not None
        known = daemon.plugins.implementers("syncd_resync")
        if args.name is not None and args.name not in known:
            raise ValidationError(
                f"no enabled adapter {args.name!r} can resync (enabled: {', '.join(known) or 'none'})"
            )
        names = [args.name] if args.name else known
        call_each(daemon.plugins, "syncd_resync", daemon, names)
    finally:
        daemon.close()
    for name in names:
        print(f"resynced {name}")
    return 0


def _since(value: str) -> datetime:
    """``--since``: an ISO 8601 time (with a zone) or a duration ago (``30m``, ``24h``, ``7d``)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither an ISO 8601 time nor e.g. 24h") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    return parsed


def cmd_webhooks_replay(args: argparse.Namespace, settings: Settings) -> int:
    from .db import session_scope
    from .services.audit import Actor
    from .webhooks_out.replay import replay_dead

    engine = _prepared_engine(settings)
    with session_scope(engine) as session:
        result = replay_dead(session, webhook_id=args.endpoint, since=args.since, actor=Actor("cli"))
    for endpoint in result.inactive_endpoints:
        _err.print(f"warning: endpoint {endpoint} is inactive; re-enable it to deliver its re-queued rows")
    print(f"re-queued {result.count} dead-letter deliveries")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from .stripe_sync.cli import reconcile

    return reconcile(settings, _prepared_engine(settings), verify_only=args.verify, repair=args.repair)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from .stripe_sync.cli import backfill

    return backfill(settings, _prepared_engine(settings), resume=not args.restart)


def cmd_companies(args: argparse.Namespace, settings: Settings) -> int:
    from .billing.cli import run

    return run(args, settings, _prepared_engine(settings))
