"""Features, flags and flag rules as Schematic's response shapes."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from ...models import (
    Company,
    Condition,
    ConditionGroup,
    Feature,
    Flag,
    Plan,
    PlanEntitlement,
    PlanVersion,
    Rule,
    TraitDefinition,
    User,
)
from ...services.features import flag_of
from ...services.flags import flag_rules
from .common import ENVIRONMENT_ID, preview, trait_definition


def feature_response(feature: Feature) -> dict[str, Any]:
    """``FeatureResponseData``."""
    return {
        "id": feature.id,
        "name": feature.name,
        "description": feature.description,
        "feature_type": feature.feature_type,
        "event_source": "track",
        "event_subtype": feature.event_subtype,
        "icon": "",
        "lifecycle_phase": feature.lifecycle_phase,
        "trait_id": feature.trait_id,
        "created_at": feature.created_at,
        "updated_at": feature.updated_at,
    }


def flag_response(flag: Flag) -> dict[str, Any]:
    """``FlagResponseData``."""
    return {
        "id": flag.id,
        "key": flag.key,
        "name": flag.name,
        "description": flag.description,
        "flag_type": "boolean",
        "default_value": flag.default_value,
        "feature_id": flag.feature_id,
        "created_at": flag.created_at,
        "updated_at": flag.updated_at,
    }


def _resources(session: Session, cond: Condition) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(``resources`` previews, ``plan_versions``) for a condition's resource ids."""
    kind, ids = cond.condition_type, cond.resource_ids
    if kind in ("plan", "base_plan"):
        plans = {p.id: p for p in session.exec(select(Plan).where(col(Plan.id).in_(ids)))}
        return [preview(i, plans[i].name if i in plans else i) for i in ids], None
    if kind in ("company", "user"):
        model: Any = Company if kind == "company" else User
        found = {r.id: r for r in session.exec(select(model).where(col(model.id).in_(ids)))}
        return [preview(i, found[i].name if i in found else i) for i in ids], None
    if kind == "plan_version":
        rows = session.exec(
            select(PlanVersion, Plan)
            .join(Plan, col(Plan.id) == PlanVersion.plan_id)
            .where(col(PlanVersion.id).in_(ids))
        ).all()
        previews = [preview(v.id, f"{p.name} v{v.version}") for v, p in rows]
        versions = [
            {"id": v.id, "name": f"{p.name} v{v.version}", "status": v.status, "version": v.version}
            for v, p in rows
        ]
        return previews, versions
    return [preview(i, i) for i in ids], None


def _condition(session: Session, cond: Condition, rule: Rule) -> dict[str, Any]:
    """``RuleConditionDetailResponseData`` (credit conditions add ``credit_id``/``consumption_rate``)."""
    resources, plan_versions = _resources(session, cond)
    trait = session.get(TraitDefinition, cond.trait_definition_id) if cond.trait_definition_id else None
    comparison = (
        session.get(TraitDefinition, cond.comparison_trait_definition_id)
        if cond.comparison_trait_definition_id
        else None
    )
    return {
        "id": cond.id,
        "rule_id": rule.id,
        "flag_id": rule.flag_id,
        "condition_group_id": cond.group_id,
        "condition_type": cond.condition_type,
        "operator": cond.operator,
        "resource_ids": list(cond.resource_ids),
        "resources": resources,
        "plan_versions": plan_versions,
        "event_subtype": cond.event_subtype,
        "metric_value": cond.metric_value,
        "metric_period": cond.metric_period,
        "metric_period_month_reset": cond.metric_period_month_reset,
        "trait_id": cond.trait_definition_id,
        "trait": trait_definition(trait) if trait else None,
        "trait_entity_type": trait.entity_type if trait else None,
        "trait_value": cond.trait_value,
        "comparison_trait_id": cond.comparison_trait_definition_id,
        "comparison_trait": trait_definition(comparison) if comparison else None,
        "credit_id": cond.credit_id,
        "consumption_rate": cond.consumption_rate,
        "environment_id": ENVIRONMENT_ID,
        "created_at": rule.created_at,
        "updated_at": rule.created_at,
    }


def rule_detail(session: Session, rule: Rule) -> dict[str, Any]:
    """``RuleDetailResponseData``."""
    conditions = session.exec(
        select(Condition).where(col(Condition.rule_id) == rule.id).order_by(col(Condition.position))
    ).all()
    groups = session.exec(
        select(ConditionGroup)
        .where(col(ConditionGroup.rule_id) == rule.id)
        .order_by(col(ConditionGroup.position))
    ).all()
    return {
        "id": rule.id,
        "flag_id": rule.flag_id,
        "name": rule.name,
        "priority": rule.priority,
        "rule_type": rule.rule_type,
        "value": rule.value,
        "conditions": [_condition(session, c, rule) for c in conditions if c.group_id is None],
        "condition_groups": [
            {
                "id": group.id,
                "rule_id": rule.id,
                "flag_id": rule.flag_id,
                "conditions": [_condition(session, c, rule) for c in conditions if c.group_id == group.id],
                "environment_id": ENVIRONMENT_ID,
                "created_at": rule.created_at,
                "updated_at": rule.created_at,
            }
            for group in groups
        ],
        "environment_id": ENVIRONMENT_ID,
        "created_at": rule.created_at,
        "updated_at": rule.created_at,
    }


def flag_detail(session: Session, flag: Flag) -> dict[str, Any]:
    """``FlagDetailResponseData``."""
    feature = session.get(Feature, flag.feature_id) if flag.feature_id else None
    return {
        **flag_response(flag),
        "feature": feature_response(feature) if feature else None,
        "rules": [rule_detail(session, r) for r in flag_rules(session, flag.id)],
        "last_checked_at": None,
    }


def feature_plans(session: Session, feature_id: str) -> list[dict[str, Any]]:
    """Previews of the plans whose published version grants the feature."""
    rows = session.exec(
        select(Plan)
        .join(PlanEntitlement, col(PlanEntitlement.plan_id) == Plan.id)
        .join(PlanVersion, col(PlanVersion.id) == PlanEntitlement.plan_version_id)
        .where(col(PlanEntitlement.feature_id) == feature_id, col(PlanVersion.status) == "published")
        .order_by(col(Plan.name))
    ).all()
    unique = {p.id: p for p in rows}
    return [preview(p.id, p.name, p.description) for p in unique.values()]


def feature_detail(session: Session, feature: Feature) -> dict[str, Any]:
    """``FeatureDetailResponseData``."""
    flag = flag_of(session, feature.id)
    trait = session.get(TraitDefinition, feature.trait_id) if feature.trait_id else None
    return {
        **feature_response(feature),
        "flags": [flag_detail(session, flag)] if flag else [],
        "plans": feature_plans(session, feature.id),
        "trait": trait_definition(trait) if trait else None,
    }


def rules_detail(session: Session, flag: Flag, rules: list[Rule]) -> dict[str, Any]:
    """``RulesDetailResponseData``."""
    return {"flag": flag_response(flag), "rules": [rule_detail(session, r) for r in rules]}
