"""Companies from the database to the rules-engine wire model, in bulk.

Each table is read once per batch of companies (``IN`` over the batch), never once per company,
so loading 100k companies is a few dozen queries. What a company is on is resolved here, at
load time, from the stored facts and the clock:

- an assignment whose ``access_until`` has passed no longer counts (cancel at period end);
- a trial that ended unconverted moves the base plan to the catalog's trial-expiry plan;
- a company without an active base plan is on the catalog's fallback plan.

Every instant at which that resolution would change (an access end, a trial end, an override
expiry) is returned as a boundary, so the engine's snapshot is not trusted past it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlmodel import Session, col, select

from ..db import TextArray
from ..engine import wire
from ..engine.compile import EntitlementSpec, build_entitlements, compile_override_rules
from ..engine.periods import next_reset, period_start
from ..models import (
    Company,
    CompanyKey,
    CompanyMetric,
    CompanyOverride,
    CompanyPlan,
    CompanyTrait,
    CreditGrant,
    StripeSubscription,
)
from .catalog_view import CatalogView, entitlement_spec

BATCH = 2000
_KEY_COLUMNS = ("company_id", "key", "value")
_TRAIT_COLUMNS = ("company_id", "trait_definition_id", "value")


@dataclass(slots=True)
class LoadedCompany:
    company: wire.Company
    boundaries: tuple[dt.datetime, ...]


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), BATCH):
        yield ids[i : i + BATCH]


def _id_filter(session: Session, column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    # On Postgres one array parameter (= ANY) instead of an IN list of thousands of bind
    # parameters: the driver and the server parse a short, cacheable statement.
    if session.get_bind().dialect.name == "postgresql":
        return col(column) == any_(bindparam("ids", list(ids), type_=TextArray()))
    return col(column).in_(ids)


def _rows(
    session: Session, model: Any, column: Any, ids: Sequence[str] | None, only: Sequence[str] = ()
) -> list[Any]:
    """Plain rows (attribute access by column name): no ORM instances for bulk reads.
    ``only``: just these columns (fewer values to transfer and convert)."""
    table = model.__table__
    stmt = select(*(table.c[name] for name in only)) if only else select(table)
    if ids is not None:
        stmt = stmt.where(_id_filter(session, column, ids))
    return list(session.connection().execute(stmt).all())


def _grouped(rows: Iterable[Any], attr: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        out[getattr(row, attr)].append(row)
    return out


def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def subscription_period(data: dict[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    """The current period of a Stripe subscription, on the subscription (older API versions)
    or on its items (newer ones)."""
    start, end = _ts(data.get("current_period_start")), _ts(data.get("current_period_end"))
    if start is None or end is None:
        items = (data.get("items") or {}).get("data") or []
        if items:
            start, end = _ts(items[0].get("current_period_start")), _ts(items[0].get("current_period_end"))
    if start is None or end is None:
        return None
    return start, end


def _active(row: CompanyPlan, now: dt.datetime) -> bool:
    return row.access_until is None or row.access_until > now


def _trial_over(row: CompanyPlan, now: dt.datetime) -> bool:
    # Billing-driven trials end in Stripe (trialing -> active or canceled); only ours expire here.
    return (
        row.source != "billing"
        and row.trial_end is not None
        and row.trial_end <= now
        and row.trial_status in (None, "active")
    )


def effective_plans(
    rows: Sequence[CompanyPlan], view: CatalogView, now: dt.datetime
) -> tuple[tuple[str, str] | None, list[tuple[str, str]], list[dt.datetime]]:
    """(base (plan, version), add-ons [(plan, version)], future boundaries) at ``now``."""
    bounds = [t for r in rows for t in (r.access_until, r.trial_end) if t is not None and t > now]
    base: tuple[str, str] | None = None
    add_ons: list[tuple[str, str]] = []
    for row in rows:
        if not _active(row, now):
            continue
        if row.role == "base":
            if _trial_over(row, now):
                base = view.published_version(view.trial_expiry_plan_id)
            else:
                base = (row.plan_id, row.plan_version_id)
        else:
            add_ons.append((row.plan_id, row.plan_version_id))
    if base is None:
        base = view.published_version(view.fallback_plan_id)
    return base, add_ons, bounds


def _metrics(
    company_id: str, rows: Sequence[CompanyMetric], sub: wire.Subscription | None, now: dt.datetime
) -> list[wire.CompanyMetric]:
    """The counters of the periods containing ``now``; a rolled-over period reads as absent (0)."""
    out = []
    starts: dict[tuple[str, str], dt.datetime | None] = {}
    for row in rows:
        key = (row.period, row.month_reset)
        if key not in starts:
            starts[key] = period_start(row.period, row.month_reset, sub, now)
        current = starts[key]
        if row.period != "all_time" and (current is None or row.period_start != current):
            continue
        out.append(
            wire.CompanyMetric(
                row.event_subtype,
                row.period,
                row.month_reset,
                row.value,
                company_id=company_id,
                created_at=row.period_start,
                valid_until=next_reset(row.period, row.month_reset, sub, now),
            )
        )
    return out


def _credit_balances(
    grants: Sequence[CreditGrant], now: dt.datetime
) -> tuple[dict[str, float], list[dt.datetime]]:
    balances: dict[str, float] = defaultdict(float)
    bounds = []
    for g in grants:
        if g.zeroed_at is not None or (g.expires_at is not None and g.expires_at <= now):
            continue
        balances[g.credit_type_id] += g.remaining
        if g.expires_at is not None:
            bounds.append(g.expires_at)
    return dict(balances), bounds


def _override_specs(rows: Sequence[Any], view: CatalogView) -> list[EntitlementSpec]:
    specs = []
    for row in rows:
        feature = view.features.get(row.feature_id)
        flag = view.flag_by_feature.get(row.feature_id)
        if feature is not None and flag is not None:
            specs.append(
                entitlement_spec(
                    row, feature, flag, view.traits, f"{feature.name} override", is_override=True
                )
            )
    return specs


def load_companies(
    session: Session, view: CatalogView, ids: Sequence[str] | None, now: dt.datetime
) -> dict[str, LoadedCompany]:
    """Wire companies by id (``ids`` None: every company); unknown ids are left out."""
    if ids is None:
        return _load_batch(session, view, None, now)
    out: dict[str, LoadedCompany] = {}
    for chunk in _chunks(sorted(set(ids))):
        out.update(_load_batch(session, view, chunk, now))
    return out


def _load_batch(
    session: Session, view: CatalogView, ids: Sequence[str] | None, now: dt.datetime
) -> dict[str, LoadedCompany]:
    companies = _rows(session, Company, Company.id, ids, ("id",))
    if not companies:
        return {}
    keys = _grouped(_rows(session, CompanyKey, CompanyKey.company_id, ids, _KEY_COLUMNS), "company_id")
    plans = _grouped(
        sorted(_rows(session, CompanyPlan, CompanyPlan.company_id, ids), key=lambda r: (r.created_at, r.id)),
        "company_id",
    )
    traits = _grouped(
        _rows(session, CompanyTrait, CompanyTrait.company_id, ids, _TRAIT_COLUMNS), "company_id"
    )
    metrics = _grouped(_rows(session, CompanyMetric, CompanyMetric.company_id, ids), "company_id")
    overrides = _grouped(_rows(session, CompanyOverride, CompanyOverride.company_id, ids), "company_id")
    grants = _grouped(_rows(session, CreditGrant, CreditGrant.company_id, ids), "company_id")
    sub_ids = sorted(
        {r.stripe_subscription_id for rs in plans.values() for r in rs if r.stripe_subscription_id}
    )
    subs = {
        s.stripe_id: s
        for chunk in _chunks(sub_ids)
        for s in session.exec(
            select(StripeSubscription).where(_id_filter(session, StripeSubscription.stripe_id, chunk))
        )
    }
    out: dict[str, LoadedCompany] = {}
    for row in companies:
        cid = row.id
        plan_rows = plans.get(cid, [])
        base, add_ons, bounds = effective_plans(plan_rows, view, now)
        sub = _subscription(plan_rows, subs)
        balances, credit_bounds = _credit_balances(grants.get(cid, []), now)
        on = [p for p in (base, *add_ons) if p is not None]
        company = wire.Company(
            id=cid,
            keys={k.key: k.value for k in keys.get(cid, [])},
            base_plan_id=base[0] if base else None,
            plan_ids=[p for p, _ in on],
            plan_version_ids=[v for _, v in on],
            billing_product_ids=sorted({view.plan_products[p] for p, _ in on if p in view.plan_products}),
            credit_balances=balances,
            metrics=_metrics(cid, metrics.get(cid, []), sub, now),
            subscription=sub,
            traits=[
                wire.Trait(t.value, view.traits[t.trait_definition_id])
                for t in traits.get(cid, [])
                if t.trait_definition_id in view.traits
            ],
        )
        specs = _override_specs(overrides.get(cid, []), view)
        company.rules = compile_override_rules(specs, cid, now)
        company.entitlements = build_entitlements([*view.specs_for(company), *specs], company, now)
        expiries = [s.expires_at for s in specs if s.expires_at is not None and s.expires_at > now]
        out[cid] = LoadedCompany(company, tuple([*bounds, *credit_bounds, *expiries]))
    return out


def conservative_validity(item: LoadedCompany, now: dt.datetime) -> float:
    """An instant up to which a company's loaded state is certainly current, without
    evaluating its flags: its own boundaries, the next UTC midnight (every calendar metric
    period starts at one) and its billing period's next reset and ends."""
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    times = [midnight, *(b for b in item.boundaries if b > now)]
    sub = item.company.subscription
    if sub is not None:
        times.append(next_reset("current_month", "billing_cycle", sub, now) or midnight)
        times.extend(t for t in (sub.period_start, sub.period_end) if t > now)
    return min(times).timestamp()


def _subscription(
    rows: Sequence[CompanyPlan], subs: dict[str, StripeSubscription]
) -> wire.Subscription | None:
    for row in rows:
        found = subs.get(row.stripe_subscription_id or "")
        if found is not None and (period := subscription_period(found.data)) is not None:
            return wire.Subscription(found.stripe_id, *period)
    return None
