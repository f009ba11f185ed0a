"""Plans, company plans and the Stripe billing link through the official SDK."""

from __future__ import annotations

import pytest
from schematic.core.api_error import ApiError
from schematic.errors import BadRequestError, NotFoundError
from sqlmodel import Session, col, select

from syncd.models import CompanyPlan, PlanChange, PlanPrice, PlanVersion

from .conftest import NO_RETRY, ApiServer, unique


def test_plan_crud_with_published_version(api: ApiServer) -> None:
    sdk = api.sdk()
    name = unique("Pro")
    plan = sdk.plans.create_plan(name=name, plan_type="plan", description="For teams", icon="blue").data
    assert plan.id.startswith("plan_") and plan.plan_type == "plan" and plan.icon == "blue"
    assert [(v.version, v.status) for v in plan.versions] == [(1, "published")]
    assert plan.active_version is not None and plan.charge_type == "none" and plan.company_count == 0

    got = sdk.plans.get_plan(plan.id, plan_version_id=plan.active_version.id)
    assert got.data.id == plan.id and got.params.plan_version_id == plan.active_version.id
    with pytest.raises(NotFoundError):
        sdk.plans.get_plan(plan.id, plan_version_id="plvr_missing")

    updated = sdk.plans.update_plan(plan.id, name=name + " 2").data
    assert updated.name == name + " 2" and updated.description == "For teams"
    listed = sdk.plans.list_plans(q=name, plan_type="plan")
    assert [p.id for p in listed.data] == [plan.id] and listed.params.plan_type == "plan"
    assert sdk.plans.list_plans(q=name, plan_type="add_on").data == []

    assert sdk.plans.delete_plan(plan.id).data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.plans.get_plan(plan.id)
    with Session(api.daemon.engine) as session:
        assert session.exec(select(PlanVersion).where(col(PlanVersion.plan_id) == plan.id)).first() is None


def test_plan_validation(api: ApiServer) -> None:
    sdk = api.sdk()
    with pytest.raises(BadRequestError):
        sdk.plans.create_plan(name="X", plan_type="bundle")
    with pytest.raises(BadRequestError):
        sdk.plans.create_plan(name="X", plan_type="plan", icon="neon")
    with pytest.raises(NotFoundError):
        sdk.plans.update_plan("plan_missing", name="Y")


def test_update_company_plans_base_and_add_ons(api: ApiServer) -> None:
    sdk = api.sdk()
    free = sdk.plans.create_plan(name=unique("Free"), plan_type="plan").data
    pro = sdk.plans.create_plan(name=unique("Pro"), plan_type="plan").data
    addon = sdk.plans.create_plan(name=unique("Extra seats"), plan_type="add_on").data
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}, base_plan_id=free.id).data

    result = sdk.plans.update_company_plans(company.id, base_plan_id=pro.id, add_on_ids=[addon.id]).data
    assert result.plan is not None and result.plan.id == pro.id
    assert [a.id for a in result.add_ons] == [addon.id]
    assert result.plan.plan_version_id == pro.active_version.id if pro.active_version else False
    assert company.id in api.changes[-1]
    with Session(api.daemon.engine) as session:
        rows = session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company.id)).all()
        assert {(r.plan_id, r.role) for r in rows} == {(pro.id, "base"), (addon.id, "add_on")}
        change = session.exec(
            select(PlanChange).where(
                col(PlanChange.company_id) == company.id, col(PlanChange.action) == "manage_plan"
            )
        ).one()
        assert (change.previous_base_plan_id, change.base_plan_id) == (free.id, pro.id)
        assert change.add_ons_added == [addon.id] and change.actor_type == "api_key"

    # listing by company / plan
    assert {p.id for p in sdk.plans.list_plans(company_id=company.id).data} == {pro.id, addon.id}
    assert [c.id for c in sdk.companies.list_companies(plan_id=pro.id).data] == [company.id]

    cleared = sdk.plans.update_company_plans(company.id, add_on_ids=[]).data
    assert cleared.plan is None and cleared.add_ons == []

    with pytest.raises(BadRequestError):
        sdk.plans.update_company_plans(company.id, base_plan_id=addon.id, add_on_ids=[])
    with pytest.raises(BadRequestError):
        sdk.plans.update_company_plans(company.id, base_plan_id=pro.id, add_on_ids=[free.id])
    with pytest.raises(NotFoundError):
        sdk.plans.update_company_plans(company.id, base_plan_id="plan_missing", add_on_ids=[])
    with pytest.raises(NotFoundError):
        sdk.plans.update_company_plans("comp_missing", base_plan_id=pro.id, add_on_ids=[])


def test_deleting_a_plan_unassigns_it(api: ApiServer) -> None:
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("Doomed"), plan_type="plan").data
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}, base_plan_id=plan.id).data
    assert sdk.plans.get_plan(plan.id).data.company_count == 1
    sdk.plans.delete_plan(plan.id)
    assert sdk.companies.get_company(company.id).data.plan is None
    with Session(api.daemon.engine) as session:
        change = session.exec(
            select(PlanChange).where(
                col(PlanChange.company_id) == company.id, col(PlanChange.action) == "plan_deleted"
            )
        ).one()
        assert change.previous_base_plan_id == plan.id


def test_upsert_billing_product_plan(api: ApiServer) -> None:
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("Paid"), plan_type="plan").data
    product, monthly, yearly = unique("prod"), unique("price_m"), unique("price_y")
    link = sdk.plans.upsert_billing_product_plan(
        plan.id,
        billing_product_id=product,
        charge_type="recurring",
        is_trialable=True,
        trial_days=14,
        monthly_price=2000,
        monthly_price_id=monthly,
        yearly_price=20000,
        yearly_price_id=yearly,
    ).data
    assert (link.plan_id, link.billing_product_id, link.charge_type) == (plan.id, product, "recurring")
    assert (link.monthly_price_id, link.yearly_price_id, link.trial_days) == (monthly, yearly, 14)
    detail = sdk.plans.get_plan(plan.id).data
    assert detail.monthly_price is not None and detail.monthly_price.price == 2000
    assert detail.monthly_price.external_price_id == monthly and detail.is_trialable
    assert detail.controlled_by == "stripe"

    # dropping the yearly price deactivates it (old subscriptions still map)
    sdk.plans.upsert_billing_product_plan(
        plan.id, billing_product_id=product, charge_type="recurring", is_trialable=False,
        monthly_price=2500, monthly_price_id=monthly,
    )  # fmt: skip
    with Session(api.daemon.engine) as session:
        prices = {
            p.interval: p
            for p in session.exec(
                select(PlanPrice).where(col(PlanPrice.stripe_price_id).in_([monthly, yearly]))
            )
        }
    assert prices["month"].amount == 2500 and prices["month"].active and not prices["year"].active
    assert sdk.plans.get_plan(plan.id).data.is_trialable is False

    other = sdk.plans.create_plan(name=unique("Other"), plan_type="plan").data
    with pytest.raises(ApiError) as info:
        sdk.plans.upsert_billing_product_plan(
            other.id,
            billing_product_id=product,
            charge_type="free",
            is_trialable=False,
            request_options=NO_RETRY,
        )
    assert info.value.status_code == 409
    with pytest.raises(BadRequestError):
        sdk.plans.upsert_billing_product_plan(
            other.id, billing_product_id=unique("prod"), charge_type="one_time", is_trialable=False,
            monthly_price=100, monthly_price_id=unique("p"),
        )  # fmt: skip
    with pytest.raises(BadRequestError):
        sdk.plans.upsert_billing_product_plan(
            other.id, billing_product_id=unique("prod"), charge_type="recurring", is_trialable=False,
            quarterly_price=100,
        )  # fmt: skip
