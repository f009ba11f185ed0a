"""The durable record of "this company's subscription must move to that plan version".

Written by ``catalog apply`` in the same transaction that migrates the companies, so the
intent survives a crash before the push and is not lost when an inbound webhook re-maps
the company from its (still old) Stripe price in the meantime. The push consumes the rows
(see :mod:`.subscriptions`); pending ones show in the outbox gauge and in
``reconcile --verify``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from ..models import CompanyPlan, OutboxMessage, Plan, PlanVersion

ADAPTER = "stripe_push"
TOPIC = "plan_version.migrated"


def enqueue_migrations(session: Session, migrations: Sequence[tuple[str, int, Sequence[str]]]) -> int:
    """One row per migrated company holding a Stripe subscription item of the plan.

    ``migrations``: (plan key, new version number, moved company ids)."""
    added = 0
    for plan_key, number, company_ids in migrations:
        plan = session.exec(select(Plan).where(col(Plan.key) == plan_key)).first()
        if plan is None or not company_ids:
            continue
        version = session.exec(
            select(PlanVersion).where(col(PlanVersion.plan_id) == plan.id, col(PlanVersion.version) == number)
        ).first()
        if version is None:
            continue
        billed = session.exec(
            select(CompanyPlan.company_id).where(
                col(CompanyPlan.plan_id) == plan.id,
                col(CompanyPlan.company_id).in_(list(company_ids)),
                col(CompanyPlan.stripe_subscription_item_id).is_not(None),
            )
        ).all()
        for company_id in billed:
            dedupe = f"migrate:{company_id}:{plan.id}:{version.id}"
            exists = session.exec(
                select(OutboxMessage.id).where(
                    col(OutboxMessage.adapter) == ADAPTER, col(OutboxMessage.dedupe_key) == dedupe
                )
            ).first()
            if exists is not None:
                continue
            session.add(
                OutboxMessage(
                    adapter=ADAPTER,
                    ordering_key=company_id,
                    dedupe_key=dedupe,
                    topic=TOPIC,
                    payload={
                        "company_id": company_id,
                        "plan_id": plan.id,
                        "plan_key": plan.key,
                        "version_id": version.id,
                        "version": number,
                    },
                )
            )
            added += 1
    return added


def pending(session: Session) -> list[OutboxMessage]:
    return list(
        session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.adapter) == ADAPTER, col(OutboxMessage.status) == "pending")
            .order_by(col(OutboxMessage.id))
        ).all()
    )
