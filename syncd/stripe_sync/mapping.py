"""Stripe mirror -> domain: customers to companies, subscriptions to plans, add-ons and access.

:func:`sync_company` recomputes one customer's billing-managed plans from *every* mirrored
subscription of that customer, so the result depends only on the mirror, never on the order
events arrived in, and running it twice changes nothing.

* Customer -> company through the ``stripe_customer_id`` company key (created on first sight).
* Product -> plan or add-on: ``Plan.stripe_product_id`` (catalog / ``upsert_billing_product_plan``),
  else a product whose ``metadata["syncd_plan"]`` names a plan key. Price -> plan version:
  ``PlanPrice.stripe_price_id``, else the plan's published version.
* Status -> access: active and trialing grant; past_due grants (for ``past_due_grace_days``
  after it started when that is > 0); incomplete, incomplete_expired, canceled, unpaid and
  paused revoke. Revoking removes the billing-sourced base plan; the state loader derives the
  catalog fallback plan for a company without a base plan.
* ``cancel_at_period_end`` / ``cancel_at`` keep access until then: ``CompanyPlan.access_until``.
* Pay-in-advance quantity -> the allocation trait of the plan's ``pay_in_advance`` trait
  entitlements (e.g. ``seats_allocated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from ..models import (
    Company,
    CompanyPlan,
    CreditGrant,
    Plan,
    PlanChange,
    PlanCreditGrant,
    PlanEntitlement,
    PlanPrice,
    PlanVersion,
    StripeCustomer,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    TraitDefinition,
    utcnow,
)
from ..services import keys as entity_keys
from ..services.audit import Actor
from ..services.changes import entitlements_changed, record_event
from ..services.companies import upsert_company
from ..services.company_plans import _classify, company_plan_rows, published_version, update_company_plans
from ..services.traits import set_traits
from . import rows
from .normalize import GRANTING, ItemView, SubscriptionView, metadata, subscription_view

CUSTOMER_KEY = "stripe_customer_id"
PLAN_METADATA_KEY = "syncd_plan"
STRIPE = Actor("stripe")


def ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


@dataclass
class CatalogCache:
    """Catalog lookups of the mapping (read-only facts about plans, versions and prices)."""

    plans: dict[tuple[str | None, str | None], tuple[PlanRef | None, str | None]] = field(
        default_factory=dict
    )
    allocations: dict[str, list[str]] = field(default_factory=dict)  # version id -> trait names
    published: dict[str, str | None] = field(default_factory=dict)  # plan id -> version id
    credits: dict[str, bool] = field(default_factory=dict)  # version id -> grants credits
    classified: dict[tuple[str | None, str], str | None] = field(default_factory=dict)
    initial: tuple[str | None, str | None] | None = None  # (initial plan id, its published version)


@dataclass
class MappingContext:
    """What a mapping run needs: the time to judge access at, policy, and per-run caches."""

    now: datetime
    past_due_grace_days: int = 0
    # What mapping reads of the catalog; shared across batches while the catalog is unchanged
    # (:mod:`.catalog_cache`).
    catalog: CatalogCache = field(default_factory=lambda: CatalogCache())
    # Live subscriptions by customer, preloaded for a batch (customers absent: ask the DB).
    _subscriptions: dict[str, list[tuple[SubscriptionView, int | None]]] = field(default_factory=dict)
    # Plan rows by company, preloaded the same way (ordered as ``company_plan_rows``).
    _company_plans: dict[str, list[Any]] = field(default_factory=dict)
    # Preloaded for a batch (:mod:`.preload`): customer -> company, and for the companies in
    # ``_known`` whether they have pending downgrades or plan credit grants (others: ask the DB).
    _company_of: dict[str, str] = field(default_factory=dict)
    _known: set[str] = field(default_factory=set)
    _pending_downgrades: set[str] = field(default_factory=set)
    _plan_grants: set[str] = field(default_factory=set)
    # Plain-row writes of plan moves; batch callers set ``defer_flush`` and write them once.
    pending: rows.PendingWrites = field(default_factory=rows.PendingWrites)
    defer_flush: bool = False

    @property
    def now_ts(self) -> int:
        return int(self.now.timestamp())


@dataclass(frozen=True, slots=True)
class PlanRef:
    """What mapping needs of a plan, detached from any session (cached across transactions)."""

    id: str
    key: str
    plan_type: str

    @classmethod
    def of(cls, plan: Plan | None) -> PlanRef | None:
        return cls(plan.id, plan.key, plan.plan_type) if plan is not None else None


@dataclass(frozen=True, slots=True)
class Claim:
    """One billing-managed plan assignment wanted for a company."""

    plan: PlanRef
    version_id: str | None
    sub: SubscriptionView
    item: ItemView
    access_until: datetime | None


# -- customers -> companies ------------------------------------------------------------------


def ensure_company(session: Session, customer_id: str, *, name: str | None = None) -> str:
    """The company of a Stripe customer, created on first sight."""
    mirror = session.get(StripeCustomer, customer_id)
    if mirror is not None and mirror.company_id and session.get(Company, mirror.company_id):
        return mirror.company_id
    found = entity_keys.resolve(session, entity_keys.COMPANY_KEYS, {CUSTOMER_KEY: customer_id})
    if found is None:
        company, _ = upsert_company(session, keys={CUSTOMER_KEY: customer_id}, name=name, actor=STRIPE)
        found = company.id
    if mirror is not None and mirror.company_id != found:
        mirror.company_id = found
        session.add(mirror)
    return found


def customer_name(data: Mapping[str, Any]) -> str | None:
    for key in ("name", "email", "description"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:255]
    return None


def apply_customer(session: Session, mirror: StripeCustomer) -> str:
    """Create (or rename) the customer's company; returns the company id."""
    name = customer_name(mirror.data)
    company_id = ensure_company(session, mirror.stripe_id, name=name)
    company = session.get(Company, company_id)
    if company is not None and name and company.name != name and not mirror.deleted:
        company.name, company.updated_at = name, utcnow()
        session.add(company)
    return company_id


# -- products and prices -> plans and versions -----------------------------------------------


def _plan_for_product(session: Session, product_id: str | None) -> Plan | None:
    if not product_id:
        return None
    plan = session.exec(select(Plan).where(col(Plan.stripe_product_id) == product_id)).first()
    if plan is not None:
        return plan
    product = session.get(StripeProduct, product_id)
    key = metadata(product.data).get(PLAN_METADATA_KEY) if product is not None else None
    return session.exec(select(Plan).where(col(Plan.key) == key)).first() if key else None


def resolve_price(
    session: Session, ctx: MappingContext, price_id: str | None, product_id: str | None
) -> tuple[PlanRef | None, str | None]:
    """(plan, pinned version id or None) for a subscription item's price."""
    cache_key = (price_id, product_id)
    if cache_key in ctx.catalog.plans:
        return ctx.catalog.plans[cache_key]
    result: tuple[PlanRef | None, str | None] = (None, None)
    linked = (
        session.exec(select(PlanPrice).where(col(PlanPrice.stripe_price_id) == price_id)).first()
        if price_id
        else None
    )
    version = session.get(PlanVersion, linked.plan_version_id) if linked is not None else None
    if version is not None:
        result = (PlanRef.of(session.get(Plan, version.plan_id)), version.id)
    else:
        if product_id is None and price_id:
            price = session.get(StripePrice, price_id)
            product_id = price.product_id if price is not None else None
        result = (PlanRef.of(_plan_for_product(session, product_id)), None)
    ctx.catalog.plans[cache_key] = result
    return result


def link_product(session: Session, product: StripeProduct) -> bool:
    """Persist a metadata link (``syncd_plan``) as ``Plan.stripe_product_id``; True if new."""
    key = metadata(product.data).get(PLAN_METADATA_KEY)
    if not key or product.deleted:
        return False
    plan = session.exec(select(Plan).where(col(Plan.key) == key)).first()
    if plan is None or plan.stripe_product_id is not None:
        return False
    taken = session.exec(select(Plan.id).where(col(Plan.stripe_product_id) == product.stripe_id)).first()
    if taken is not None:
        return False
    plan.stripe_product_id = product.stripe_id
    session.add(plan)
    return True


# -- subscriptions -> plans and access --------------------------------------------------------


def access_until(
    view: SubscriptionView, past_due_since: int | None, ctx: MappingContext
) -> tuple[bool, int | None]:
    """Whether the subscription grants access now, and until when (None: open-ended)."""
    if view.status not in GRANTING:
        return False, None
    until: int | None = None
    if view.status == "past_due" and ctx.past_due_grace_days > 0 and past_due_since is not None:
        until = past_due_since + ctx.past_due_grace_days * 86_400
    if view.cancel_at_period_end and view.period_end is not None:
        until = view.period_end if until is None else min(until, view.period_end)
    if view.cancel_at is not None:
        until = view.cancel_at if until is None else min(until, view.cancel_at)
    if until is not None and until <= ctx.now_ts:
        return False, until
    return True, until


def trial_status(view: SubscriptionView) -> str | None:
    """Schematic's trial status: active while trialing, then converted (paying) or expired."""
    if view.trial_end is None:
        return None
    if view.status == "trialing":
        return "active"
    return "converted" if view.status in ("active", "past_due") else "expired"


def claims_for(session: Session, customer_id: str, ctx: MappingContext) -> list[Claim]:
    """The billing-managed plans this customer's mirrored subscriptions grant now."""
    subs = ctx._subscriptions.pop(customer_id, None)
    if subs is None:
        subs = [
            (subscription_view(s.data), s.past_due_since)
            for s in session.exec(
                select(StripeSubscription).where(
                    col(StripeSubscription.customer_id) == customer_id,
                    col(StripeSubscription.deleted).is_(False),
                )
            ).all()
        ]
    return claims_from(session, subs, ctx)


def claims_from(
    session: Session, subs: list[tuple[SubscriptionView, int | None]], ctx: MappingContext
) -> list[Claim]:
    """Claims from (subscription, past_due_since) pairs, newest subscription first."""
    claims: list[Claim] = []
    for view, since in sorted(subs, key=lambda v: (-v[0].created, v[0].id)):
        grant, until = access_until(view, since, ctx)
        if not grant:
            continue
        for item in view.items:
            plan, version_id = resolve_price(session, ctx, item.price_id, item.product_id)
            if plan is not None:
                claims.append(Claim(plan, version_id, view, item, ts(until)))
    return claims


def expected_plans(claims: list[Claim]) -> tuple[Claim | None, dict[str, Claim]]:
    """(base claim, add-on claims by plan id): the newest subscription's base plan wins."""
    base = next((c for c in claims if c.plan.plan_type == "plan"), None)
    add_ons: dict[str, Claim] = {}
    for claim in claims:
        if claim.plan.plan_type == "add_on":
            add_ons.setdefault(claim.plan.id, claim)
    return base, add_ons


def _billing_fields(claim: Claim, ctx: MappingContext) -> dict[str, Any]:
    return {
        "source": "billing",
        "quantity": claim.item.quantity,
        "stripe_subscription_id": claim.sub.id,
        "stripe_subscription_item_id": claim.item.id,
        "stripe_price_id": claim.item.price_id,
        "trial_end": ts(claim.sub.trial_end),
        "trial_status": trial_status(claim.sub),
        "access_until": claim.access_until,
    }


def _allocation_traits(session: Session, ctx: MappingContext, version_id: str) -> list[str]:
    """Names of the traits a version's pay-in-advance trait entitlements read (cached per run)."""
    if version_id in ctx.catalog.allocations:
        return ctx.catalog.allocations[version_id]
    ents = session.exec(
        select(PlanEntitlement).where(
            col(PlanEntitlement.plan_version_id) == version_id,
            col(PlanEntitlement.value_type) == "trait",
            col(PlanEntitlement.value_trait_id).is_not(None),
        )
    ).all()
    in_advance = session.exec(
        select(PlanPrice.id).where(
            col(PlanPrice.plan_version_id) == version_id, col(PlanPrice.price_behavior) == "pay_in_advance"
        )
    ).first()
    names: list[str] = []
    for ent in ents:
        if ent.price_behavior == "pay_in_advance" or in_advance is not None:
            definition = session.get(TraitDefinition, ent.value_trait_id)
            if definition is not None:
                names.append(definition.name)
    ctx.catalog.allocations[version_id] = names
    return names


def _allocate(session: Session, ctx: MappingContext, company_id: str, version_id: str, quantity: int) -> bool:
    """Write a pay-in-advance quantity to the allocation traits of a plan version."""
    names = _allocation_traits(session, ctx, version_id)
    if not names:
        return False
    return set_traits(session, "company", company_id, dict.fromkeys(names, quantity))


def _plans_match(
    plan_rows: list[CompanyPlan], base_id: str | None, add_on_ids: list[str], version_ids: dict[str, str]
) -> bool:
    """Whether the rows already are exactly these plans on these pinned versions, so
    ``update_company_plans`` would change nothing (the common re-sync: skip its queries)."""
    base = next((r for r in plan_rows if r.role == "base"), None)
    if (base.plan_id if base is not None else None) != base_id:
        return False
    if sorted(r.plan_id for r in plan_rows if r.role == "add_on") != sorted(set(add_on_ids)):
        return False
    by_plan = {r.plan_id: r for r in plan_rows}
    return all(pid in by_plan and by_plan[pid].plan_version_id == v for pid, v in version_ids.items())


def _move_base(
    session: Session,
    ctx: MappingContext,
    company_id: str,
    current: Any,  # CompanyPlan, a preloaded plain row of it, or None: no base plan yet
    claim: Claim,
    has_grants: bool | None = None,
) -> rows.Row | None:
    """``update_company_plans`` for the common billing case (one base plan replaced by another,
    or given to a company that has none, no add-ons, no plan credits involved) without its
    re-reads and intermediate flushes: the same rows, audit entry and events, written as
    plain rows through ``ctx.pending`` (at once, or with the batch when ``ctx.defer_flush``).
    Returns the new plan row; None: not that case, the caller uses the service."""
    version_id = claim.version_id
    if version_id is None:
        if claim.plan.id not in ctx.catalog.published:
            published = published_version(session, claim.plan.id)
            ctx.catalog.published[claim.plan.id] = published.id if published is not None else None
        version_id = ctx.catalog.published[claim.plan.id]
    if version_id is None or _grants_credits(session, ctx, version_id):
        return None
    previous_plan_id = current.plan_id if current is not None else None
    previous_version_id = current.plan_version_id if current is not None else None
    if previous_version_id is not None and _grants_credits(session, ctx, previous_version_id):
        return None
    if has_grants is None:
        has_grants = (
            session.exec(
                select(CreditGrant.id).where(
                    col(CreditGrant.company_id) == company_id,
                    col(CreditGrant.reason).in_(("plan", "rollover")),
                )
            ).first()
            is not None
        )
    if has_grants:
        return None
    pair = (previous_version_id, version_id)
    if pair not in ctx.catalog.classified:
        ctx.catalog.classified[pair] = _classify(session, pair[0], pair[1], True, [], [])
    now = utcnow()
    pending = ctx.pending
    if current is not None:
        pending.delete(rows.COMPANY_PLAN, current.id)
    if isinstance(current, CompanyPlan):
        session.expunge(current)  # deleted below in SQL: the session must not flush it again
    new_row = pending.insert(
        rows.COMPANY_PLAN,
        rows.plan_row(company_id, claim.plan.id, version_id, now, **_billing_fields(claim, ctx)),
    )
    actor = Actor("stripe", claim.sub.id)
    change = pending.insert(
        rows.PLAN_CHANGE,
        rows.plan_change_row(
            company_id,
            "billing_sync",
            actor,
            now,
            subscription_change_action=ctx.catalog.classified[pair],
            previous_base_plan_id=previous_plan_id,
            base_plan_id=claim.plan.id,
            previous_base_plan_version_id=previous_version_id,
            base_plan_version_id=version_id,
        ),
    )
    after = rows.snapshot(change)
    pending.insert(
        rows.AUDIT_LOG, rows.audit_row(actor, "company.plan_changed", company_id, None, after, now)
    )
    record_event(
        session,
        "company.plan_changed",
        company_id,
        {
            "plan_change": after,
            "plan_change_id": change["id"],
            "reason": "billing_sync",
            "base_plan_id": claim.plan.id,
            "previous_base_plan_id": previous_plan_id,
            "add_ons_added": [],
            "add_ons_removed": [],
        },
    )
    entitlements_changed(session, [company_id])
    if not ctx.defer_flush:
        pending.write(session)
    return new_row


def _grants_credits(session: Session, ctx: MappingContext, version_id: str) -> bool:
    if version_id not in ctx.catalog.credits:
        found = session.exec(
            select(PlanCreditGrant.id).where(col(PlanCreditGrant.plan_version_id) == version_id)
        ).first()
        ctx.catalog.credits[version_id] = found is not None
    return ctx.catalog.credits[version_id]


def sync_company(session: Session, customer_id: str, ctx: MappingContext) -> bool:
    """Make the customer's company's billing-managed plans match the mirror. True if changed."""
    company_id = ctx._company_of.pop(customer_id, None) or ensure_company(session, customer_id)
    known = company_id in ctx._known  # preloaded: its downgrades and grants are in ctx
    ctx._known.discard(company_id)
    base, add_ons = expected_plans(claims_for(session, customer_id, ctx))

    plan_rows = ctx._company_plans.pop(company_id, None) if known else None
    if plan_rows is None:
        if ctx.pending:
            ctx.pending.write(session)  # e.g. a company reached through two customers in a batch
        plan_rows = company_plan_rows(session, company_id)
    current_base = next((r for r in plan_rows if r.role == "base"), None)
    if base is not None:
        base_id: str | None = base.plan.id
    elif current_base is not None and current_base.source != "billing":
        base_id = current_base.plan_id  # a manual or initial plan: not billing's to remove
    else:
        base_id = None
    kept = [
        r.plan_id
        for r in plan_rows
        if r.role == "add_on" and r.source != "billing" and r.plan_id not in add_ons
    ]
    wanted = {c.plan.id: c for c in [*([base] if base else []), *add_ons.values()]}
    version_ids = {pid: c.version_id for pid, c in wanted.items() if c.version_id}
    change: PlanChange | None = None
    new_row: rows.Row | None = None
    moved = (
        base is not None
        and (current_base is None or current_base.plan_id != base.plan.id)
        and not add_ons
        and not any(r.role == "add_on" for r in plan_rows)
    )
    if moved and base is not None:
        grants = company_id in ctx._plan_grants if known else None
        new_row = _move_base(session, ctx, company_id, current_base, base, grants)
        if new_row is not None:
            plan_rows = [r for r in plan_rows if r is not current_base]
    if new_row is None and not _plans_match(plan_rows, base_id, [*kept, *add_ons], version_ids):
        change = update_company_plans(
            session,
            company_id,
            base_plan_id=base_id,
            add_on_ids=[*kept, *add_ons],
            actor=Actor("stripe", base.sub.id if base else None),
            source="billing",
            action="billing_sync",
            version_ids=version_ids,
        )
        plan_rows = company_plan_rows(session, company_id)
    updated = False
    for row in plan_rows:
        claim = wanted.get(row.plan_id)
        if claim is None:
            continue
        fields = _billing_fields(claim, ctx)
        if any(getattr(row, k) != v for k, v in fields.items()):
            if isinstance(row, CompanyPlan):
                for k, v in fields.items():
                    setattr(row, k, v)
                row.updated_at = utcnow()
                session.add(row)
            else:  # a preloaded plain row
                ctx.pending.update(rows.COMPANY_PLAN, row.id, {**fields, "updated_at": utcnow()})
            updated = True
        updated |= _allocate(session, ctx, company_id, row.plan_version_id, fields["quantity"])
    if new_row is not None:
        updated |= _allocate(session, ctx, company_id, new_row["plan_version_id"], new_row["quantity"])
    from ..billing.downgrades import settle  # billing builds on mapping: import late

    if not known or company_id in ctx._pending_downgrades:
        if ctx.pending:
            ctx.pending.write(session)  # settle reads the company's base plan
        settle(session, company_id)  # a schedule's phase change landed: the pending row is done
    if change is None and new_row is None and not updated:
        return False
    if not ctx.defer_flush:
        ctx.pending.write(session)
        session.flush()
    entitlements_changed(session, [company_id])
    if change is None and new_row is None:
        # Plans unchanged, billing details moved (trial status, access_until, quantity):
        # update_company_plans records the event for real plan changes itself.
        record_event(
            session,
            "company.plan_changed",
            company_id,
            {
                "action": "subscription_updated",
                "base_plan_id": base_id,
                "stripe_customer_id": customer_id,
                "stripe_subscription_id": base.sub.id if base else None,
            },
        )
    return True


def expiring_customers(session: Session, now: datetime) -> list[str]:
    """Customers with billing access that has run out (cancel at period end, past_due grace)."""
    found = session.exec(
        select(StripeCustomer.stripe_id)
        .join(CompanyPlan, col(CompanyPlan.company_id) == StripeCustomer.company_id)
        .where(
            col(CompanyPlan.source) == "billing",
            col(CompanyPlan.access_until).is_not(None),
            col(CompanyPlan.access_until) <= now,
        )
        .distinct()
    ).all()
    return list(found)


def current_period(session: Session, company_id: str) -> tuple[datetime, datetime] | None:
    """The billing period of the company's base-plan subscription (billing-cycle metric resets)."""
    row = session.exec(
        select(CompanyPlan).where(
            col(CompanyPlan.company_id) == company_id,
            col(CompanyPlan.role) == "base",
            col(CompanyPlan.stripe_subscription_id).is_not(None),
        )
    ).first()
    sub = session.get(StripeSubscription, row.stripe_subscription_id) if row is not None else None
    if sub is None or sub.current_period_start is None or sub.current_period_end is None:
        return None
    start, end = ts(sub.current_period_start), ts(sub.current_period_end)
    assert start is not None and end is not None
    return start, end
