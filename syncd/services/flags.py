"""Flags: listing, lookup and the hand-written rules (global override, standard, default).

Plan-entitlement and company-override rules are compiled from their rows by the engine and
are never stored here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, SQLModel, col, select

from ..exceptions import NotFoundError, ValidationError
from ..models import (
    Company,
    Condition,
    ConditionGroup,
    CreditType,
    Flag,
    Plan,
    PlanVersion,
    Rule,
    TraitDefinition,
    User,
    utcnow,
)
from .audit import SYSTEM, Actor, record
from .changes import ALL, entitlements_changed
from .common import FIRST_PAGE, Page, check_choice, require, require_all, text_match
from .inputs import ConditionInput, RuleInput

RULE_TYPES = ("global_override", "standard", "default")
CONDITION_TYPES = (
    "base_plan",
    "billing_product",
    "company",
    "credit",
    "metric",
    "plan",
    "plan_version",
    "trait",
    "user",
)
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "is_empty", "not_empty")
METRIC_PERIODS = ("all_time", "current_day", "current_week", "current_month")
MONTH_RESETS = ("first_of_month", "billing_cycle")
_RESOURCE_MODELS: dict[str, tuple[type[SQLModel], str]] = {
    "plan": (Plan, "plan"),
    "base_plan": (Plan, "plan"),
    "plan_version": (PlanVersion, "plan version"),
    "company": (Company, "company"),
    "user": (User, "user"),
}
_ORDER = {"global_override": 0, "standard": 1, "default": 2}


def get_flag(session: Session, flag_id: str) -> Flag:
    return require(session, Flag, flag_id, "flag")


def list_flags(
    session: Session,
    *,
    feature_id: str | None = None,
    ids: Sequence[str] | None = None,
    q: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[Flag]:
    query = select(Flag)
    if feature_id is not None:
        query = query.where(col(Flag.feature_id) == feature_id)
    if ids is not None:
        query = query.where(col(Flag.id).in_(ids))
    if q:
        query = query.where(text_match(q, Flag.name, Flag.key, Flag.description))
    query = query.order_by(col(Flag.created_at).desc(), col(Flag.id).desc())
    return list(session.exec(page.apply(query)).all())


def flag_rules(session: Session, flag_id: str) -> list[Rule]:
    rules = session.exec(select(Rule).where(col(Rule.flag_id) == flag_id)).all()
    return sorted(rules, key=lambda r: (_ORDER.get(r.rule_type, 1), r.priority, r.created_at, r.id))


def _validate_condition(session: Session, cond: ConditionInput) -> None:
    check_choice(cond.condition_type, CONDITION_TYPES, "condition_type")
    check_choice(cond.operator, OPERATORS, "operator")
    check_choice(cond.metric_period, METRIC_PERIODS, "metric_period")
    check_choice(cond.metric_period_month_reset, MONTH_RESETS, "metric_period_month_reset")
    kind = cond.condition_type
    for trait_id in (cond.trait_id, cond.comparison_trait_id):
        if trait_id is not None:
            require(session, TraitDefinition, trait_id, "trait")
    if kind in _RESOURCE_MODELS or kind == "billing_product":
        if not cond.resource_ids:
            raise ValidationError(f"{kind} conditions need resource_ids", code="missing_resource_ids")
        if kind in _RESOURCE_MODELS:
            model, what = _RESOURCE_MODELS[kind]
            require_all(session, model, cond.resource_ids, what)
    elif kind == "trait" and cond.trait_id is None:
        raise ValidationError("trait conditions need a trait_id", code="missing_trait_id")
    elif kind == "metric":
        if not cond.event_subtype:
            raise ValidationError("metric conditions need an event_subtype", code="missing_event_subtype")
        if cond.metric_value is None and cond.comparison_trait_id is None:
            raise ValidationError("metric conditions need a metric_value", code="missing_metric_value")
    elif kind == "credit":
        if cond.credit_id is None:
            raise ValidationError("credit conditions need a credit_id", code="missing_credit_id")
        require(session, CreditType, cond.credit_id, "credit")
    if cond.metric_period_month_reset is not None and cond.metric_period != "current_month":
        raise ValidationError(
            "metric_period_month_reset only applies to metric_period current_month", code="invalid_value"
        )


def _condition(
    cond: ConditionInput, rule_id: str, group_id: str | None, position: int, reuse: set[str]
) -> Condition:
    month_reset = cond.metric_period_month_reset
    if cond.metric_period == "current_month" and month_reset is None:
        month_reset = "first_of_month"
    row = Condition(
        rule_id=rule_id,
        group_id=group_id,
        position=position,
        condition_type=cond.condition_type,
        operator=cond.operator,
        resource_ids=list(cond.resource_ids),
        event_subtype=cond.event_subtype if cond.condition_type == "metric" else None,
        metric_value=cond.metric_value if cond.condition_type == "metric" else None,
        metric_period=cond.metric_period if cond.condition_type == "metric" else None,
        metric_period_month_reset=month_reset if cond.condition_type == "metric" else None,
        credit_id=cond.credit_id if cond.condition_type == "credit" else None,
        consumption_rate=cond.credit_cost if cond.condition_type == "credit" else None,
        trait_definition_id=cond.trait_id,
        trait_value=cond.trait_value or "",
        comparison_trait_definition_id=cond.comparison_trait_id,
    )
    if cond.id and cond.id in reuse:
        row.id = cond.id
        reuse.discard(cond.id)
    return row


def update_flag_rules(
    session: Session, flag_id: str, rules: Sequence[RuleInput], *, actor: Actor = SYSTEM
) -> list[Rule]:
    """Replace the flag's hand-written rules with ``rules`` (rules given with an ``id`` keep it)."""
    flag = require(session, Flag, flag_id, "flag")
    existing = {r.id: r for r in session.exec(select(Rule).where(col(Rule.flag_id) == flag.id)).all()}
    seen: dict[str, int] = {}
    for spec in rules:
        rule_type = spec.rule_type or "standard"
        if rule_type not in RULE_TYPES:
            raise ValidationError(
                f"rule_type must be one of {', '.join(RULE_TYPES)} (entitlement and override rules "
                "are derived from plan entitlements and company overrides)",
                code="invalid_rule_type",
            )
        seen[rule_type] = seen.get(rule_type, 0) + 1
        if rule_type != "standard" and seen[rule_type] > 1:
            raise ValidationError(f"a flag has at most one {rule_type} rule", code="duplicate_rule_type")
        if not spec.name or len(spec.name) > 255:
            raise ValidationError("rule names must be 1 to 255 characters", code="invalid_name")
        if spec.id is not None and spec.id not in existing:
            raise NotFoundError(f"rule {spec.id!r} not found on flag {flag.id!r}", code="rule_not_found")
        for group in spec.condition_groups:
            if not group.conditions:
                raise ValidationError("condition groups need at least one condition", code="empty_group")
        for cond in [*spec.conditions, *(c for g in spec.condition_groups for c in g.conditions)]:
            _validate_condition(session, cond)

    before = [r.model_dump(mode="json") for r in existing.values()]
    old_conditions = set(session.exec(select(Condition.id).where(col(Condition.rule_id).in_(existing))).all())
    old_groups = set(
        session.exec(select(ConditionGroup.id).where(col(ConditionGroup.rule_id).in_(existing))).all()
    )
    for model in (Condition, ConditionGroup):
        for row in session.exec(select(model).where(col(model.rule_id).in_(existing))).all():
            session.delete(row)
    session.flush()
    kept = {spec.id for spec in rules if spec.id}
    for rule_id, rule in existing.items():
        if rule_id not in kept:
            session.delete(rule)
    session.flush()

    out: list[Rule] = []
    for spec in rules:
        rule = existing[spec.id] if spec.id else Rule(flag_id=flag.id)
        rule.rule_type, rule.name = spec.rule_type or "standard", spec.name
        rule.priority, rule.value = spec.priority, spec.value
        session.add(rule)
        session.flush()
        for position, cond in enumerate(spec.conditions):
            session.add(_condition(cond, rule.id, None, position, old_conditions))
        for g_position, group in enumerate(spec.condition_groups):
            group_row = ConditionGroup(rule_id=rule.id, position=g_position)
            if group.id and group.id in old_groups:
                group_row.id = group.id
                old_groups.discard(group.id)
            session.add(group_row)
            session.flush()
            for position, cond in enumerate(group.conditions):
                session.add(_condition(cond, rule.id, group_row.id, position, old_conditions))
        out.append(rule)
    flag.updated_at = utcnow()
    session.add(flag)
    session.flush()
    record(
        session,
        actor,
        "flag.rules_updated",
        "flag",
        flag.id,
        before={"rules": before},
        after={"rules": [r.model_dump(mode="json") for r in out]},
    )
    entitlements_changed(session, ALL)
    return flag_rules(session, flag.id)
