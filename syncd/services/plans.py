"""Plans and add-ons (``plan_type``), each with a published version 1, and their Stripe link."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists
from sqlmodel import Session, col, select

from ..exceptions import ConflictError, NotFoundError, ValidationError
from ..models import CompanyPlan, Plan, PlanChange, PlanEntitlement, PlanPrice, PlanVersion, utcnow
from .audit import SYSTEM, Actor, record, snapshot
from .changes import catalog_changed, entitlements_changed
from .common import FIRST_PAGE, Page, check_choice, require, text_match
from .company_plans import require_published_version
from .features import slugify
from .inputs import BillingLink

PLAN_TYPES = ("plan", "add_on")
PLAN_ICONS = (
    "amber",
    "blue",
    "blueGray",
    "blueGreen",
    "cyan",
    "emerald",
    "fuchsia",
    "gray",
    "green",
    "indigo",
    "lightBlue",
    "lime",
    "orange",
    "pink",
    "purple",
    "red",
    "redOrange",
    "rose",
    "sky",
    "slate",
    "teal",
    "trueGray",
    "violet",
    "warmGray",
    "yellow",
)
CHARGE_TYPES = ("free", "none", "one_time", "recurring")
INTERVALS = ("month", "year", "one_time")


def _check_fields(name: str, description: str | None, icon: str | None) -> None:
    if not name or len(name) > 255:
        raise ValidationError("name must be 1 to 255 characters", code="invalid_name")
    if description is not None and len(description) > 2048:
        raise ValidationError("description must be at most 2048 characters", code="invalid_description")
    check_choice(icon, PLAN_ICONS, "icon")


def _unique_key(session: Session, name: str) -> str:
    base = slugify(name)[:240]
    key, n = base, 1
    while session.exec(select(Plan.id).where(col(Plan.key) == key)).first() is not None:
        n += 1
        key = f"{base}-{n}"
    return key


def create_plan(
    session: Session,
    *,
    name: str,
    plan_type: str = "plan",
    description: str = "",
    icon: str | None = None,
    key: str | None = None,
    actor: Actor = SYSTEM,
) -> Plan:
    """Create a plan (or add-on) with a published version 1 and no entitlements."""
    _check_fields(name, description, icon)
    check_choice(plan_type, PLAN_TYPES, "plan_type")
    if key is not None and session.exec(select(Plan.id).where(col(Plan.key) == key)).first():
        raise ConflictError(f"a plan with key {key!r} already exists", code="duplicate_key")
    now = utcnow()
    plan = Plan(
        key=key or _unique_key(session, name),
        name=name,
        description=description,
        plan_type=plan_type,
        icon=icon,
        created_at=now,
        updated_at=now,
    )
    session.add(plan)
    session.flush()
    session.add(PlanVersion(plan_id=plan.id, version=1, status="published", created_at=now, published_at=now))
    session.flush()
    record(session, actor, "plan.created", "plan", plan.id, after=snapshot(plan))
    catalog_changed(session)
    return plan


def update_plan(
    session: Session,
    plan_id: str,
    *,
    name: str,
    description: str | None = None,
    icon: str | None = None,
    actor: Actor = SYSTEM,
) -> Plan:
    plan = require(session, Plan, plan_id, "plan")
    _check_fields(name, description, icon)
    before = snapshot(plan)
    plan.name = name
    if description is not None:
        plan.description = description
    if icon is not None:
        plan.icon = icon
    plan.updated_at = utcnow()
    session.add(plan)
    session.flush()
    record(session, actor, "plan.updated", "plan", plan.id, before=before, after=snapshot(plan))
    catalog_changed(session)
    return plan


def delete_plan(session: Session, plan_id: str, *, actor: Actor = SYSTEM) -> None:
    """Delete a plan with its versions, prices and entitlements; companies on it lose it."""
    plan = require(session, Plan, plan_id, "plan")
    before = snapshot(plan)
    assignments = session.exec(select(CompanyPlan).where(col(CompanyPlan.plan_id) == plan.id)).all()
    for row in assignments:
        base = row.role == "base"
        session.add(
            PlanChange(
                company_id=row.company_id,
                action="plan_deleted",
                actor_type=actor.actor_type,
                actor=actor.actor,
                previous_base_plan_id=plan.id if base else None,
                previous_base_plan_version_id=row.plan_version_id if base else None,
                add_ons_removed=[] if base else [plan.id],
            )
        )
    session.flush()
    session.delete(plan)  # the database cascades to versions, prices, entitlements, assignments
    session.flush()
    record(session, actor, "plan.deleted", "plan", plan_id, before=before)
    catalog_changed(session)
    entitlements_changed(session, {row.company_id for row in assignments})


def get_plan(session: Session, plan_id: str) -> Plan:
    return require(session, Plan, plan_id, "plan")


def require_version_of(session: Session, plan: Plan, version_id: str) -> PlanVersion:
    version = require(session, PlanVersion, version_id, "plan version")
    if version.plan_id != plan.id:
        raise NotFoundError(
            f"plan version {version_id!r} does not belong to plan {plan.id!r}", code="plan_version_not_found"
        )
    return version


def list_plans(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    plan_type: str | None = None,
    q: str | None = None,
    company_id: str | None = None,
    has_product_id: bool | None = None,
    with_published_version: bool | None = None,
    without_entitlement_for: str | None = None,
    exclude_unused: bool = False,
    eligible_as: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[Plan]:
    """Plans, newest first. ``eligible_as`` (initial | fallback | trial_expiry) keeps the base
    plans the catalog settings may name for that role (fallback and trial-expiry plans must not
    be billing-linked)."""
    check_choice(plan_type, PLAN_TYPES, "plan_type")
    check_choice(eligible_as, ("initial", "fallback", "trial_expiry"), "eligible_as")
    query = select(Plan)
    if eligible_as is not None:
        query = query.where(col(Plan.plan_type) == "plan")
        if eligible_as != "initial":
            query = query.where(col(Plan.stripe_product_id).is_(None))
    if exclude_unused:
        query = query.where(exists().where(col(CompanyPlan.plan_id) == Plan.id))
    if ids is not None:
        query = query.where(col(Plan.id).in_(ids))
    if plan_type is not None:
        query = query.where(col(Plan.plan_type) == plan_type)
    if company_id is not None:
        query = query.where(
            exists().where(col(CompanyPlan.plan_id) == Plan.id, col(CompanyPlan.company_id) == company_id)
        )
    if has_product_id is not None:
        linked = col(Plan.stripe_product_id).is_not(None)
        query = query.where(linked if has_product_id else ~linked)
    if with_published_version:
        query = query.where(
            exists().where(col(PlanVersion.plan_id) == Plan.id, col(PlanVersion.status) == "published")
        )
    if without_entitlement_for is not None:
        query = query.where(
            ~exists().where(
                col(PlanEntitlement.plan_id) == Plan.id,
                col(PlanEntitlement.feature_id) == without_entitlement_for,
                col(PlanEntitlement.plan_version_id) == PlanVersion.id,
                col(PlanVersion.plan_id) == Plan.id,
                col(PlanVersion.status) == "published",
            )
        )
    if q:
        query = query.where(text_match(q, Plan.name, Plan.key, Plan.description))
    query = query.order_by(col(Plan.created_at).desc(), col(Plan.id).desc())
    return list(session.exec(page.apply(query)).all())


def version_prices(session: Session, version_id: str) -> list[PlanPrice]:
    return list(
        session.exec(
            select(PlanPrice)
            .where(col(PlanPrice.plan_version_id) == version_id)
            .order_by(col(PlanPrice.interval))
        ).all()
    )


def charge_type(plan: Plan, prices: Sequence[PlanPrice]) -> str:
    """Derived from the active prices: recurring | one_time | free (linked, no charge) | none."""
    active = [p for p in prices if p.active]
    if any(p.interval in ("month", "year") and p.amount > 0 for p in active):
        return "recurring"
    if any(p.interval == "one_time" and p.amount > 0 for p in active):
        return "one_time"
    return "free" if plan.stripe_product_id or active else "none"


def _check_link(session: Session, plan: Plan, link: BillingLink) -> dict[str, tuple[int, str | None]]:
    check_choice(link.charge_type, CHARGE_TYPES, "charge_type")
    if len(link.currency) != 3 or not link.currency.isalpha():
        raise ValidationError("currency must be a three-letter ISO code", code="invalid_currency")
    if link.is_trialable and not (link.trial_days and link.trial_days > 0):
        raise ValidationError("a trialable plan needs trial_days of at least 1", code="invalid_trial_days")
    desired: dict[str, tuple[int, str | None]] = {}
    for interval, amount, price_id in (
        ("month", link.monthly_price, link.monthly_price_id),
        ("year", link.yearly_price, link.yearly_price_id),
        ("one_time", link.one_time_price, link.one_time_price_id),
    ):
        if amount is None and price_id is None:
            continue
        if amount is not None and amount < 0:
            raise ValidationError("prices must not be negative", code="invalid_price", interval=interval)
        desired[interval] = (amount or 0, price_id)
    positive = {i for i, (amount, _) in desired.items() if amount > 0}
    wanted = {"recurring": {"month", "year"}, "one_time": {"one_time"}}.get(link.charge_type)
    if (wanted is None and positive) or (wanted is not None and not positive & wanted):
        raise ValidationError(
            f"charge_type {link.charge_type!r} does not match the prices given", code="charge_type_mismatch"
        )
    if link.billing_product_id is not None:
        other = session.exec(
            select(Plan.id).where(
                col(Plan.stripe_product_id) == link.billing_product_id, col(Plan.id) != plan.id
            )
        ).first()
        if other:
            raise ConflictError(
                f"billing product {link.billing_product_id!r} is already linked to plan {other!r}",
                code="billing_product_in_use",
            )
    for interval, (_, price_id) in desired.items():
        if price_id is None:
            continue
        other = session.exec(
            select(PlanVersion.plan_id)
            .join(PlanPrice, col(PlanPrice.plan_version_id) == PlanVersion.id)
            .where(col(PlanPrice.stripe_price_id) == price_id, col(PlanVersion.plan_id) != plan.id)
        ).first()
        if other:
            raise ConflictError(
                f"price {price_id!r} is already linked to plan {other!r}",
                code="price_in_use",
                interval=interval,
            )
    return desired


def upsert_billing_product_plan(
    session: Session, plan_id: str, link: BillingLink, *, actor: Actor = SYSTEM
) -> Plan:
    """Link the plan to a Stripe product and its published version to Stripe prices.

    Intervals not given are deactivated (kept, so old subscriptions still map).
    """
    plan = require(session, Plan, plan_id, "plan")
    desired = _check_link(session, plan, link)
    version = require_published_version(session, plan)
    before = snapshot(plan)
    existing = {p.interval: p for p in version_prices(session, version.id)}
    for interval, price in existing.items():
        if interval not in desired:
            price.active = False
            session.add(price)
    for interval, (amount, price_id) in desired.items():
        price = existing.get(interval) or PlanPrice(plan_version_id=version.id, interval=interval)
        price.amount, price.currency, price.stripe_price_id, price.active = (
            amount,
            link.currency,
            price_id,
            True,
        )
        session.add(price)
    plan.stripe_product_id = link.billing_product_id
    plan.trial_days = link.trial_days if link.is_trialable else None
    plan.updated_at = utcnow()
    session.add(plan)
    session.flush()
    record(
        session,
        actor,
        "plan.billing_linked",
        "plan",
        plan.id,
        before=before,
        after={**(snapshot(plan) or {}), "prices": {i: [a, p] for i, (a, p) in desired.items()}},
    )
    catalog_changed(session)  # the plan's billing product is a condition input (billing_product)
    on_plan = session.exec(select(CompanyPlan.company_id).where(col(CompanyPlan.plan_id) == plan.id)).all()
    entitlements_changed(session, set(on_plan))
    return plan
