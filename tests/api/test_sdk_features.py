"""Features, flags and flag rules through the official SDK."""

from __future__ import annotations

import pytest
from schematic.core.api_error import ApiError
from schematic.errors import BadRequestError, NotFoundError
from schematic.types import (
    CreateOrUpdateConditionGroupRequestBody,
    CreateOrUpdateConditionRequestBody,
    CreateOrUpdateFlagRequestBody,
    CreateOrUpdateRuleRequestBody,
)
from sqlmodel import Session, col, select

from syncd.models import Condition, ConditionGroup, Flag, Rule

from .conftest import NO_RETRY, ApiServer, unique


def _flag(key: str, default: bool = False) -> CreateOrUpdateFlagRequestBody:
    return CreateOrUpdateFlagRequestBody(key=key, name=key.title(), description="", default_value=default)


def test_feature_crud_with_its_flag(api: ApiServer) -> None:
    sdk = api.sdk()
    key = unique("sso")
    feature = sdk.features.create_feature(
        name="SSO", description="Single sign-on", feature_type="boolean", flag=_flag(key, default=True)
    ).data
    assert feature.id.startswith("feat_") and feature.feature_type == "boolean"
    assert [f.key for f in feature.flags] == [key] and feature.flags[0].default_value is True
    assert api.changes[-1] == "all"

    got = sdk.features.get_feature(feature.id).data
    assert got.name == "SSO" and got.flags[0].feature_id == feature.id
    updated = sdk.features.update_feature(feature.id, name="Single sign-on", lifecycle_phase="beta").data
    assert updated.name == "Single sign-on" and updated.lifecycle_phase == "beta"
    assert updated.description == "Single sign-on"  # untouched
    assert {f.id for f in sdk.features.list_features(q=key).data} == {feature.id}

    assert sdk.features.delete_feature(feature.id).data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.features.get_feature(feature.id)
    with Session(api.daemon.engine) as session:
        assert session.exec(select(Flag).where(col(Flag.key) == key)).first() is None


def test_event_and_trait_features(api: ApiServer) -> None:
    sdk = api.sdk()
    event = sdk.features.create_feature(
        name=unique("API calls"), description="", feature_type="event", event_subtype="api_call"
    ).data
    assert event.event_subtype == "api_call" and event.flags[0].key.startswith("api-calls-")
    with pytest.raises(BadRequestError):
        sdk.features.create_feature(name="No event", description="", feature_type="event")
    with pytest.raises(BadRequestError):
        sdk.features.update_feature(event.id, feature_type="boolean")
    with pytest.raises(NotFoundError):
        sdk.features.create_feature(name="T", description="", feature_type="trait", trait_id="trdf_missing")
    only_events = sdk.features.list_features(feature_type="event", ids=[event.id])
    assert [f.id for f in only_events.data] == [event.id] and only_events.params.feature_type == ["event"]


def test_duplicate_flag_key_conflicts(api: ApiServer) -> None:
    sdk = api.sdk()
    key = unique("dup")
    sdk.features.create_feature(name="One", description="", feature_type="boolean", flag=_flag(key))
    with pytest.raises(ApiError) as info:
        sdk.features.create_feature(
            name="Two", description="", feature_type="boolean", flag=_flag(key), request_options=NO_RETRY
        )
    assert info.value.status_code == 409


def test_flags_list_get_and_rules(api: ApiServer) -> None:
    sdk = api.sdk()
    key = unique("beta")
    feature = sdk.features.create_feature(
        name="Beta", description="", feature_type="boolean", flag=_flag(key)
    ).data
    flag_id = feature.flags[0].id
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}, traits={"plan_tier": "gold"}).data
    plan = sdk.plans.create_plan(name=unique("Gold"), plan_type="plan").data
    trait_id = company.entity_traits[0].definition_id

    listed = sdk.features.list_flags(feature_id=feature.id)
    assert [f.id for f in listed.data] == [flag_id] and listed.params.feature_id == feature.id
    assert sdk.features.get_flag(flag_id).data.key == key

    rules = [
        CreateOrUpdateRuleRequestBody(
            name="Beta companies",
            priority=1,
            value=True,
            rule_type="standard",
            conditions=[
                CreateOrUpdateConditionRequestBody(
                    condition_type="company", operator="eq", resource_ids=[company.id]
                )
            ],
            condition_groups=[
                CreateOrUpdateConditionGroupRequestBody(
                    conditions=[
                        CreateOrUpdateConditionRequestBody(
                            condition_type="trait",
                            operator="eq",
                            resource_ids=[],
                            trait_id=trait_id,
                            trait_value="gold",
                        ),
                        CreateOrUpdateConditionRequestBody(
                            condition_type="plan", operator="eq", resource_ids=[plan.id]
                        ),
                    ]
                )
            ],
        ),
        CreateOrUpdateRuleRequestBody(
            name="Kill switch",
            priority=0,
            value=False,
            rule_type="global_override",
            conditions=[],
            condition_groups=[],
        ),
    ]
    result = sdk.features.update_flag_rules(flag_id, rules=rules).data
    assert result.flag is not None and result.flag.id == flag_id
    assert [r.rule_type for r in result.rules] == ["global_override", "standard"]
    standard = result.rules[1]
    assert standard.conditions[0].resources[0].id == company.id
    assert [c.condition_type for c in standard.condition_groups[0].conditions] == ["trait", "plan"]
    assert standard.condition_groups[0].conditions[0].trait_value == "gold"

    # replace: keep the standard rule by id, drop the override
    kept = CreateOrUpdateRuleRequestBody(
        id=standard.id, name="Renamed", priority=2, value=True, conditions=[], condition_groups=[]
    )
    again = sdk.features.update_flag_rules(flag_id, rules=[kept]).data
    assert [(r.id, r.name) for r in again.rules] == [(standard.id, "Renamed")]
    with Session(api.daemon.engine) as session:
        assert session.exec(select(Rule).where(col(Rule.flag_id) == flag_id)).one().id == standard.id
        assert session.exec(select(Condition).where(col(Condition.rule_id) == standard.id)).first() is None
        assert (
            session.exec(select(ConditionGroup).where(col(ConditionGroup.rule_id) == standard.id)).first()
            is None
        )
    assert sdk.features.get_flag(flag_id).data.rules[0].name == "Renamed"


def test_flag_rule_validation(api: ApiServer) -> None:
    sdk = api.sdk()
    feature = sdk.features.create_feature(
        name="V", description="", feature_type="boolean", flag=_flag(unique())
    ).data
    flag_id = feature.flags[0].id

    def rule(**kwargs: object) -> CreateOrUpdateRuleRequestBody:
        base: dict[str, object] = {
            "name": "r",
            "priority": 0,
            "value": True,
            "conditions": [],
            "condition_groups": [],
        }
        return CreateOrUpdateRuleRequestBody(**{**base, **kwargs})  # type: ignore[arg-type]

    with pytest.raises(BadRequestError):
        sdk.features.update_flag_rules(flag_id, rules=[rule(rule_type="plan_entitlement")])
    with pytest.raises(BadRequestError):
        sdk.features.update_flag_rules(flag_id, rules=[rule(rule_type="default"), rule(rule_type="default")])
    missing_plan = CreateOrUpdateConditionRequestBody(
        condition_type="plan", operator="eq", resource_ids=["plan_x"]
    )
    with pytest.raises(NotFoundError):
        sdk.features.update_flag_rules(flag_id, rules=[rule(conditions=[missing_plan])])
    with pytest.raises(NotFoundError):
        sdk.features.update_flag_rules("flag_missing", rules=[])
    assert sdk.features.get_flag(flag_id).data.rules == []
