"""Features, flags and flag rules."""

from __future__ import annotations

from typing import Literal

from ...services.inputs import ConditionGroupInput, ConditionInput, FlagInput, RuleInput
from .base import Body, ListQuery


class FlagBody(Body):
    key: str
    name: str
    description: str
    default_value: bool | None = None
    feature_id: str | None = None
    flag_type: Literal["boolean"] | None = None
    id: str | None = None
    maintainer_account_member_id: str | None = None

    def to_input(self) -> FlagInput:
        return FlagInput(
            key=self.key, name=self.name, description=self.description, default_value=self.default_value
        )


class _FeatureFields(Body):
    event_source: Literal["track"] | None = None  # inference-sourced features are not supported
    event_subtype: str | None = None
    flag: FlagBody | None = None
    icon: str | None = None
    lifecycle_phase: str | None = None
    maintainer_account_member_id: str | None = None
    plural_name: str | None = None
    singular_name: str | None = None
    trait_id: str | None = None


class CreateFeatureBody(_FeatureFields):
    name: str
    description: str
    feature_type: str


class UpdateFeatureBody(_FeatureFields):
    name: str | None = None
    description: str | None = None
    feature_type: str | None = None


class ListFeaturesQuery(ListQuery):
    ids: list[str] | None = None
    feature_type: list[str] | None = None
    q: str | None = None
    plan_version_id: str | None = None
    without_company_override_for: str | None = None
    without_plan_entitlement_for: str | None = None
    boolean_require_event: bool | None = None
    managed_by: str | None = None


class ListFlagsQuery(ListQuery):
    feature_id: str | None = None
    ids: list[str] | None = None
    q: str | None = None


class ConditionBody(Body):
    condition_type: str
    operator: str
    resource_ids: list[str]
    comparison_trait_id: str | None = None
    credit_cost: float | None = None
    credit_id: str | None = None
    event_subtype: str | None = None
    id: str | None = None
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    metric_value: int | None = None
    trait_id: str | None = None
    trait_value: str | None = None

    def to_input(self) -> ConditionInput:
        return ConditionInput(**self.model_dump())


class ConditionGroupBody(Body):
    conditions: list[ConditionBody]
    flag_id: str | None = None
    id: str | None = None


class RuleBody(Body):
    name: str
    priority: int
    value: bool
    conditions: list[ConditionBody]
    condition_groups: list[ConditionGroupBody]
    rule_type: str | None = None
    id: str | None = None

    def to_input(self) -> RuleInput:
        return RuleInput(
            name=self.name,
            priority=self.priority,
            value=self.value,
            rule_type=self.rule_type,
            conditions=[c.to_input() for c in self.conditions],
            condition_groups=[
                ConditionGroupInput(conditions=[c.to_input() for c in g.conditions], id=g.id)
                for g in self.condition_groups
            ],
            id=self.id,
        )


class UpdateFlagRulesBody(Body):
    rules: list[RuleBody]
