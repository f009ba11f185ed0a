"""Plan changes pushed to Stripe: subscribe, upgrade (prorated, same period), downgrade now
(new period, credit) or at the period end (subscription schedule).

Order of writes: Stripe first, then the local plan (from Stripe's answer, through the same
mapping the inbound sync uses), all in the caller's transaction. A declined card or any
Stripe refusal raises before anything local is written. If the local commit fails after
Stripe accepted, the two sides differ until the echo webhooks, a retry (same idempotency
key: Stripe replays its answer) or ``syncd reconcile --repair`` bring them together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import stripe
import structlog
from sqlmodel import Session, col, select

from ..exceptions import ConflictError, ValidationError
from ..models import CatalogSettingsRow, CompanyPlan, Plan, PlanChange, PlanPrice, PlanVersion, utcnow
from ..services.audit import Actor, record
from ..services.common import require
from ..services.company_plans import company_plan_rows, require_published_version
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key
from ..stripe_sync import mirror
from ..stripe_sync.mapping import MappingContext, sync_company
from ..stripe_sync.normalize import plain, price_of, ref_id
from . import downgrades
from .classify import Side, classify
from .customers import ensure_customer
from .errors import ForbiddenError, translate
from .limits import over_limits

log = structlog.get_logger(__name__)

PRORATIONS = ("create_prorations", "always_invoice", "none")
TIMINGS = ("now", "period_end")


@dataclass
class ChangeRequest:
    plan: str  # base plan id or key
    add_ons: Sequence[str] | None = None  # ids or keys; None keeps the current add-ons
    timing: str | None = None  # downgrades: now | period_end (None: catalog setting)
    proration_behavior: str | None = None  # None: catalog setting
    require_payment: bool = True  # upgrades only take effect once paid (error_if_incomplete)
    force: bool = False  # admin: downgrade even when over limits or self-service is off
    actor: Actor = field(default_factory=Actor)


@dataclass
class ChangeOutcome:
    kind: str  # subscribe | upgrade | downgrade | unchanged | downgrade_canceled
    applied: bool  # the local plan changed now
    scheduled: dict[str, Any] | None = None
    subscription_id: str | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "applied": self.applied,
            "scheduled_downgrade": self.scheduled,
            "stripe_subscription_id": self.subscription_id,
            "warnings": self.warnings,
        }


def _plan(session: Session, ident: str) -> Plan:
    found = session.get(Plan, ident) or session.exec(select(Plan).where(col(Plan.key) == ident)).first()
    if found is None:
        raise ValidationError(f"plan {ident!r} not found", code="plan_not_found", plan=ident)
    return found


def _price(session: Session, version: PlanVersion, interval: str | None) -> PlanPrice:
    prices = session.exec(
        select(PlanPrice).where(
            col(PlanPrice.plan_version_id) == version.id,
            col(PlanPrice.active),
            col(PlanPrice.stripe_price_id).is_not(None),
            col(PlanPrice.interval).in_(["month", "year"]),
        )
    ).all()
    by_interval = {p.interval: p for p in prices}
    chosen = by_interval.get(interval or "month") or by_interval.get("month") or by_interval.get("year")
    if chosen is None:
        raise ValidationError(
            f"plan version {version.id!r} has no Stripe price (run `syncd catalog push`)",
            code="no_price_for_interval",
            plan_version_id=version.id,
            interval=interval,
        )
    return chosen


def _settings(session: Session) -> CatalogSettingsRow:
    return session.get(CatalogSettingsRow, 1) or CatalogSettingsRow()


def _current_price(session: Session, row: CompanyPlan | None) -> PlanPrice | None:
    if row is None or row.stripe_price_id is None:
        return None
    return session.exec(
        select(PlanPrice).where(col(PlanPrice.stripe_price_id) == row.stripe_price_id)
    ).first()


def _token(company_id: str, *parts: object) -> str:
    """A stable id for one requested change from one starting state (retries share it)."""
    raw = ":".join(str(p) for p in (company_id, *parts))
    return f"{company_id}:{hashlib.sha256(raw.encode()).hexdigest()[:20]}"


def change_plan(
    session: Session,
    client: stripe.StripeClient,
    company_id: str,
    req: ChangeRequest,
    *,
    now: dt.datetime | None = None,
) -> ChangeOutcome:
    """Move the company to ``req.plan`` (+ add-ons) in Stripe, then locally."""
    now = now or utcnow()
    settings = _settings(session)
    rows = company_plan_rows(session, company_id)
    base_row = next((r for r in rows if r.role == "base"), None)
    billed = base_row if base_row is not None and base_row.stripe_subscription_id else None
    if base_row is not None and base_row.source == "billing" and billed is None:
        # The boundary job flipped a scheduled downgrade before Stripe's webhook filled in the
        # subscription: pushing now could start a second subscription.
        raise ConflictError(
            "the billing state is catching up with Stripe; retry in a moment", code="billing_sync_pending"
        )
    current_add_ons = {r.plan_id: r for r in rows if r.role == "add_on"}

    target = _plan(session, req.plan)
    if target.plan_type != "plan":
        raise ValidationError(f"plan {target.key!r} is an add-on", code="invalid_base_plan")
    add_on_plans = (
        [_plan(session, a) for a in req.add_ons]
        if req.add_ons is not None
        else [require(session, Plan, pid, "plan") for pid in current_add_ons]
    )
    for plan in add_on_plans:
        if plan.plan_type != "add_on":
            raise ValidationError(f"plan {plan.key!r} is not an add-on", code="invalid_add_on")
    cur_price = _current_price(session, billed)
    interval = cur_price.interval if cur_price is not None else None
    version = require_published_version(session, target)
    price = _price(session, version, interval)
    add_on_prices = {
        p.id: _price(session, require_published_version(session, p), price.interval) for p in add_on_plans
    }

    base_changed = (
        billed is None or billed.plan_id != target.id or billed.stripe_price_id != price.stripe_price_id
    )
    current = (
        Side(cur_price.amount, cur_price.interval, frozenset(current_add_ons), billed.quantity)
        if billed is not None and cur_price is not None
        else None
    )
    wanted = Side(price.amount, price.interval, frozenset(p.id for p in add_on_plans), 1)
    kind = classify(current, wanted, base_changed=base_changed)

    pending = downgrades.pending(session, company_id)
    outcome = ChangeOutcome(kind=kind, applied=False)
    if pending is not None:
        if kind == "unchanged" or (kind == "upgrade" and base_changed) or kind == "subscribe":
            downgrades.cancel(session, client, pending, req.actor)  # resubscribe / upgrade cancels it
            if kind == "unchanged":
                outcome.kind = "downgrade_canceled"
                return outcome
        else:
            downgrades.refuse_while_pending(session, company_id, "changing plans or add-ons")
    if kind == "unchanged":
        return outcome

    if kind == "downgrade":
        _check_downgrade(session, company_id, req, settings, version, add_on_plans, now, outcome)

    proration = req.proration_behavior or {"invoice_immediately": "always_invoice"}.get(
        settings.proration_behavior, settings.proration_behavior
    )
    if proration not in PRORATIONS:
        raise ValidationError(f"unknown proration_behavior {proration!r}", code="invalid_proration_behavior")
    timing = req.timing or (
        "period_end" if settings.scheduled_downgrade_behavior == "end_of_billing_period" else "now"
    )
    if timing not in TIMINGS:
        raise ValidationError(f"unknown timing {timing!r}", code="invalid_timing", allowed=list(TIMINGS))
    customer = ensure_customer(session, client, company_id)
    live = (
        _call(lambda: client.v1.subscriptions.retrieve(str(billed.stripe_subscription_id)))
        if billed is not None
        else None
    )
    token = _token(
        company_id,
        _last_change(session, company_id),
        _payer(client, customer, live),  # a retry with another card is a new request
        billed.stripe_subscription_id if billed else None,
        price.stripe_price_id,
        sorted(p.stripe_price_id or "" for p in add_on_prices.values()),
        timing,
        proration,
    )
    items = [{"price": price.stripe_price_id, "quantity": 1}] + [
        {"price": p.stripe_price_id, "quantity": 1} for p in add_on_prices.values()
    ]
    payment = "error_if_incomplete" if req.require_payment else "allow_incomplete"

    if billed is None:
        create: Any = {
            "customer": customer,
            "items": [{**_price_param(str(i["price"])), "quantity": i["quantity"]} for i in items],
            "metadata": {METADATA_ORIGIN_KEY: "syncd", "syncd_company_id": company_id},
        }
        if req.require_payment:
            create["payment_behavior"] = payment
        sub = _call(
            lambda: client.v1.subscriptions.create(
                create, {"idempotency_key": idempotency_key("subscribe", token)}
            )
        )
    elif kind == "downgrade" and timing == "period_end":
        assert base_row is not None
        row = downgrades.schedule(
            session,
            client,
            billed,
            items,
            to_plan_id=target.id,
            to_version_id=version.id,
            interval=price.interval,
            token=token,
            actor=req.actor,
        )
        outcome.scheduled = downgrades.view(row)
        outcome.subscription_id = billed.stripe_subscription_id
        return outcome
    else:
        assert billed.stripe_subscription_id is not None
        sub_id = billed.stripe_subscription_id
        # Stripe's defaults (create_prorations, allow_incomplete) are left implicit: fakes
        # such as localstripe reject parameters they do not model.
        params: Any = {"items": _item_changes(live, items)}
        if proration != "create_prorations":
            params["proration_behavior"] = proration
        if kind == "upgrade":
            if req.require_payment:
                params["payment_behavior"] = payment
        else:
            params["billing_cycle_anchor"] = "now"  # a downgrade starts a new period (with credit)
        sub = _call(
            lambda: client.v1.subscriptions.update(
                sub_id,
                params,
                {"idempotency_key": idempotency_key("plan-change", token)},
            )
        )
    outcome.subscription_id = str(sub.id)
    _apply_locally(session, client, sub, now)
    outcome.applied = True
    log.info("plan_change_pushed", company_id=company_id, kind=kind, subscription_id=sub.id, timing=timing)
    return outcome


def _call(fn: Any) -> Any:
    try:
        return fn()
    except stripe.StripeError as exc:
        raise translate(exc) from exc


def _payer(client: stripe.StripeClient, customer: str, live: Any) -> str | None:
    """The payment method Stripe would charge: the subscription's, else the customer's default.

    Part of the idempotency token: Stripe keeps a declined (402) answer under its key, so a
    retry after the customer changed cards must be a new request; a plain retry is not."""
    if live is not None and plain(live).get("default_payment_method"):
        return ref_id(plain(live)["default_payment_method"])
    cus = plain(_call(lambda: client.v1.customers.retrieve(customer)))
    settings = cus.get("invoice_settings") or {}
    return ref_id(settings.get("default_payment_method"))


def _last_change(session: Session, company_id: str) -> str | None:
    return session.exec(
        select(PlanChange.id)
        .where(col(PlanChange.company_id) == company_id)
        .order_by(col(PlanChange.created_at).desc(), col(PlanChange.id).desc())
    ).first()


def _price_param(price_id: str) -> dict[str, str]:
    """``price``, or ``plan`` for a legacy Plan id (accepted by Stripe; all localstripe knows)."""
    return {"plan": price_id} if price_id.startswith("plan_") else {"price": price_id}


def _item_changes(live: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subscription item params turning ``live``'s items into ``items`` (re-priced in place)."""
    change: dict[str, Any]
    existing = [(str(it["id"]), ref_id(price_of(it))) for it in plain(live)["items"]["data"]]
    wanted = {str(i["price"]): i for i in items}
    changes: list[dict[str, Any]] = []
    spare = [item_id for item_id, price_id in existing if price_id not in wanted]
    for _, price_id in existing:
        wanted.pop(price_id or "", None)
    for price_id, item in wanted.items():
        change = _price_param(price_id)
        if item["quantity"] != 1:  # 1 is Stripe's default (and all localstripe accepts here)
            change["quantity"] = item["quantity"]
        changes.append({"id": spare.pop(0), **change} if spare else change)
    changes.extend({"id": item_id, "deleted": True} for item_id in spare)
    return changes


def _apply_locally(session: Session, client: stripe.StripeClient, sub: Any, now: dt.datetime) -> None:
    """Mirror Stripe's answer and map it, exactly as the inbound sync would."""
    data = mirror.complete_items(client, plain(sub))
    row = mirror.store(session, "subscription", data, created=0, source_id="syncd:plan_change")
    if row.customer_id:
        sync_company(session, row.customer_id, MappingContext(now=now))


def _check_downgrade(
    session: Session,
    company_id: str,
    req: ChangeRequest,
    settings: CatalogSettingsRow,
    version: PlanVersion,
    add_on_plans: list[Plan],
    now: dt.datetime,
    outcome: ChangeOutcome,
) -> None:
    if settings.prevent_self_service_downgrade and not req.force:
        raise ForbiddenError(
            "downgrades are not self-service: contact us to downgrade",
            code="self_service_downgrade_disabled",
            contact_url=settings.self_service_downgrade_url,
        )
    if not settings.prevent_downgrades_when_over_limit:
        return
    versions = [version.id, *(require_published_version(session, p).id for p in add_on_plans)]
    overs = [o.as_dict() for o in over_limits(session, company_id, versions, now)]
    if not overs:
        return
    if not req.force:
        raise ConflictError(
            "the company is over the new plan's limits", code="over_plan_limits", over_limits=overs
        )
    outcome.warnings = overs
    record(
        session,
        req.actor,
        "company.downgrade_forced",
        "company",
        company_id,
        after={"to_plan_version_id": version.id, "over_limits": overs},
        note="warning: downgraded while over the new plan's limits",
    )


def pushes_to_stripe(session: Session, company_id: str, base_plan_id: str | None) -> bool:
    """Whether a Schematic-style ``PUT /company-plans`` must go through Stripe: the company pays
    through a subscription now, or the new base plan has a Stripe price.

    Removing a billed base plan (cancel) is Stripe's to do, so that is refused here."""
    rows = company_plan_rows(session, company_id)
    billed = any(r.role == "base" and r.stripe_subscription_id for r in rows)
    linked = False
    if base_plan_id is not None:
        plan = session.get(Plan, base_plan_id)
        version = published_version_of(session, plan) if plan is not None else None
        linked = version is not None and (
            session.exec(
                select(PlanPrice.id).where(
                    col(PlanPrice.plan_version_id) == version.id, col(PlanPrice.stripe_price_id).is_not(None)
                )
            ).first()
            is not None
        )
    if billed and not linked:
        raise ConflictError(
            "the company's plan is billed through Stripe: cancel the subscription to remove it",
            code="billing_managed_plan",
        )
    return linked


def published_version_of(session: Session, plan: Plan) -> PlanVersion | None:
    from ..services.company_plans import published_version

    return published_version(session, plan.id)
