"""Plan entitlements and company overrides through the official SDK."""

from __future__ import annotations

import datetime as dt

import pytest
from schematic.core.api_error import ApiError
from schematic.errors import BadRequestError, NotFoundError
from sqlmodel import Session, col, select

from syncd.models import AuditLog, OverrideNote

from .conftest import NO_RETRY, ApiServer, unique


def _event_feature(api: ApiServer) -> str:
    sdk = api.sdk()
    return sdk.features.create_feature(
        name=unique("Calls"), description="", feature_type="event", event_subtype=unique("ev")
    ).data.id


def test_plan_entitlement_crud(api: ApiServer) -> None:
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("Pro"), plan_type="plan").data
    feature_id = _event_feature(api)
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}, base_plan_id=plan.id).data

    ent = sdk.entitlements.create_plan_entitlement(
        plan_id=plan.id, feature_id=feature_id, value_type="numeric", value_numeric=1000,
        metric_period="current_month", soft_limit=900,
    ).data  # fmt: skip
    assert ent.id.startswith("pltn_") and ent.rule_id.startswith("rule_") and ent.rule_id_usage_exceeded
    assert (ent.value_numeric, ent.metric_period, ent.metric_period_month_reset) == (
        1000, "current_month", "first_of_month",
    )  # fmt: skip
    assert ent.feature is not None and ent.feature.id == feature_id and ent.plan is not None
    assert company.id in api.changes[-1]

    assert sdk.entitlements.get_plan_entitlement(ent.id).data.value_numeric == 1000
    listed = sdk.entitlements.list_plan_entitlements(plan_id=plan.id)
    assert [e.id for e in listed.data] == [ent.id] and listed.params.plan_id == plan.id
    assert sdk.plans.get_plan(plan.id).data.features[0].id == feature_id

    detail = sdk.companies.get_company(company.id).data
    assert [(e.feature_id, e.value_type, e.allocation) for e in detail.entitlements] == [
        (feature_id, "numeric", 1000)
    ]

    updated = sdk.entitlements.update_plan_entitlement(ent.id, value_type="unlimited").data
    assert updated.value_type == "unlimited" and updated.value_numeric is None
    assert updated.rule_id == ent.rule_id and updated.rule_id_usage_exceeded is None

    with pytest.raises(ApiError) as info:
        sdk.entitlements.create_plan_entitlement(
            plan_id=plan.id, feature_id=feature_id, value_type="boolean", request_options=NO_RETRY
        )
    assert info.value.status_code == 409

    assert sdk.entitlements.delete_plan_entitlement(ent.id).data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.entitlements.get_plan_entitlement(ent.id)
    assert sdk.companies.get_company(company.id).data.entitlements == []


def test_plan_entitlement_validation(api: ApiServer) -> None:
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("V"), plan_type="plan").data
    feature_id = _event_feature(api)
    with pytest.raises(BadRequestError):  # numeric needs a value
        sdk.entitlements.create_plan_entitlement(plan_id=plan.id, feature_id=feature_id, value_type="numeric")
    with pytest.raises(BadRequestError):
        sdk.entitlements.create_plan_entitlement(plan_id=plan.id, feature_id=feature_id, value_type="fancy")
    with pytest.raises(BadRequestError):  # month reset only for current_month
        sdk.entitlements.create_plan_entitlement(
            plan_id=plan.id, feature_id=feature_id, value_type="numeric", value_numeric=1,
            metric_period="all_time", metric_period_month_reset="billing_cycle",
        )  # fmt: skip
    with pytest.raises(NotFoundError):
        sdk.entitlements.create_plan_entitlement(
            plan_id="plan_missing", feature_id=feature_id, value_type="boolean"
        )
    with pytest.raises(NotFoundError):
        sdk.entitlements.create_plan_entitlement(
            plan_id=plan.id, feature_id=feature_id, value_type="trait", value_trait_id="trdf_missing"
        )
    with pytest.raises(BadRequestError):  # metered billing is not supported
        sdk.entitlements.create_plan_entitlement(
            plan_id=plan.id,
            feature_id=feature_id,
            value_type="numeric",
            value_numeric=1,
            monthly_unit_price=5,
        )
    assert sdk.entitlements.list_plan_entitlements(plan_id=plan.id).data == []


def test_company_override_crud(api: ApiServer) -> None:
    sdk = api.sdk()
    feature_id = _event_feature(api)
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}).data
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)

    override = sdk.entitlements.create_company_override(
        company_id=company.id, feature_id=feature_id, value_type="numeric", value_numeric=50,
        metric_period="current_day", expiration_date=expires, note="trial extension",
    ).data  # fmt: skip
    assert override.id.startswith("cmov_") and override.expiration_date == expires
    assert [n.note for n in override.notes] == ["trial extension"]
    assert override.notes[0].external_user_name == "test-secret"
    assert override.company is not None and override.company.id == company.id
    assert company.id in api.changes[-1]

    assert sdk.entitlements.get_company_override(override.id).data.value_numeric == 50
    listed = sdk.entitlements.list_company_overrides(company_id=company.id)
    assert [o.id for o in listed.data] == [override.id]
    assert (
        sdk.entitlements.list_company_overrides(feature_id=feature_id, without_expired=True).data[0].id
        == override.id
    )

    updated = sdk.entitlements.update_company_override(
        override.id, value_type="boolean", value_bool=True, note="now boolean"
    ).data
    assert updated.value_type == "boolean" and updated.value_bool is True and updated.expiration_date is None
    assert [n.note for n in updated.notes] == ["trial extension", "now boolean"]
    assert [
        (e.feature_id, e.value_type) for e in sdk.companies.get_company(company.id).data.entitlements
    ] == [(feature_id, "boolean")]

    with pytest.raises(ApiError) as info:
        sdk.entitlements.create_company_override(
            company_id=company.id, feature_id=feature_id, value_type="boolean", request_options=NO_RETRY
        )
    assert info.value.status_code == 409
    with pytest.raises(BadRequestError):
        sdk.entitlements.update_company_override(
            override.id, value_type="boolean", expiration_date=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        )
    with pytest.raises(NotFoundError):
        sdk.entitlements.create_company_override(
            company_id="comp_missing", feature_id=feature_id, value_type="boolean"
        )

    assert sdk.entitlements.delete_company_override(override.id).data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.entitlements.get_company_override(override.id)
    with Session(api.daemon.engine) as session:
        assert (
            session.exec(select(OverrideNote).where(col(OverrideNote.override_id) == override.id)).first()
            is None
        )
        actions = session.exec(
            select(AuditLog.action).where(col(AuditLog.entity_id) == override.id).order_by(col(AuditLog.id))
        ).all()
    assert actions == ["company.override.created", "company.override.updated", "company.override.deleted"]
