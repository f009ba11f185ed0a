"""The company-independent part of the engine's input, read from the database in one pass.

Flags get their hand-written rules plus the compiled plan/add-on entitlement rules; plan
entitlements become ``EntitlementSpec``s that company loading reuses for the entitlement
summaries. Everything here is a handful of whole-table reads: the catalog is small.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from ..engine import wire
from ..engine.compile import EntitlementSpec, compile_plan_rules
from ..models import (
    CatalogSettingsRow,
    Condition,
    ConditionGroup,
    Feature,
    Flag,
    Plan,
    PlanEntitlement,
    PlanVersion,
    Rule,
    TraitDefinition,
)

# DB trait types -> the engine's comparable types.
COMPARABLE = {"boolean": "bool", "number": "int", "string": "string", "date": "date"}


def wire_trait(defn: TraitDefinition) -> wire.TraitDefinition:
    return wire.TraitDefinition(defn.id, COMPARABLE.get(defn.trait_type, "string"), defn.entity_type)


@dataclass(slots=True)
class CatalogView:
    flags: list[wire.Flag]
    plan_specs: list[EntitlementSpec]
    features: dict[str, Feature]  # by id
    flag_by_feature: dict[str, Flag]
    traits: dict[str, wire.TraitDefinition]  # by id
    plan_types: dict[str, str]  # plan id -> plan | add_on
    plan_products: dict[str, str]  # plan id -> Stripe product id
    published: dict[str, str]  # plan id -> published version id
    fallback_plan_id: str | None = None
    trial_expiry_plan_id: str | None = None
    plan_names: dict[str, str] = field(default_factory=dict)
    by_version: dict[str, list[EntitlementSpec]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.plan_specs:
            self.by_version.setdefault(spec.plan_version_id or "", []).append(spec)

    def specs_for(self, company: wire.Company) -> list[EntitlementSpec]:
        """The plan entitlements that can apply to a company (those of its plan versions)."""
        return [s for v in company.plan_version_ids for s in self.by_version.get(v, ())]

    def published_version(self, plan_id: str | None) -> tuple[str, str] | None:
        if plan_id is None or plan_id not in self.published:
            return None
        return plan_id, self.published[plan_id]


def _wire_condition(row: Condition, traits: dict[str, wire.TraitDefinition]) -> wire.Condition:
    return wire.Condition(
        row.condition_type,
        row.operator,
        id=row.id,
        resource_ids=list(row.resource_ids),
        event_subtype=row.event_subtype,
        metric_value=row.metric_value,
        metric_period=row.metric_period,
        metric_period_month_reset=row.metric_period_month_reset,
        credit_id=row.credit_id,
        consumption_rate=row.consumption_rate,
        trait_definition=traits.get(row.trait_definition_id or ""),
        trait_value=row.trait_value,
        comparison_trait_definition=traits.get(row.comparison_trait_definition_id or ""),
    )


def _hand_written_rules(
    session: Session, traits: dict[str, wire.TraitDefinition]
) -> dict[str, list[wire.Rule]]:
    groups: dict[str, list[ConditionGroup]] = defaultdict(list)
    for g in session.exec(select(ConditionGroup).order_by(col(ConditionGroup.position))).all():
        groups[g.rule_id].append(g)
    conds: dict[str, list[Condition]] = defaultdict(list)
    for c in session.exec(select(Condition).order_by(col(Condition.position), col(Condition.id))).all():
        conds[c.rule_id].append(c)
    by_flag: dict[str, list[wire.Rule]] = defaultdict(list)
    for r in session.exec(
        select(Rule).order_by(col(Rule.priority), col(Rule.created_at), col(Rule.id))
    ).all():
        rule_conds = conds.get(r.id, [])
        top = [_wire_condition(c, traits) for c in rule_conds if c.group_id is None]
        wire_groups = [
            wire.ConditionGroup([_wire_condition(c, traits) for c in rule_conds if c.group_id == g.id])
            for g in groups.get(r.id, [])
        ]
        by_flag[r.flag_id].append(
            wire.Rule(r.id, r.rule_type, r.value, r.name, r.priority, top, wire_groups, flag_id=r.flag_id)
        )
    return by_flag


def entitlement_spec(
    row: Any,
    feature: Feature,
    flag: Flag,
    traits: dict[str, wire.TraitDefinition],
    name: str,
    *,
    is_override: bool,
) -> EntitlementSpec:
    """One plan entitlement or company override row (ORM or plain) as the compiler's input."""
    return EntitlementSpec(
        id=row.id,
        feature_id=feature.id,
        feature_key=feature.key,
        flag_id=flag.id,
        value_type=row.value_type,
        value_bool=row.value_bool,
        value_numeric=row.value_numeric,
        value_trait=traits.get(row.value_trait_id or ""),
        usage_trait=traits.get(feature.trait_id or "") if feature.feature_type == "trait" else None,
        event_subtype=feature.event_subtype if feature.feature_type == "event" else None,
        metric_period=row.metric_period,
        metric_period_month_reset=row.metric_period_month_reset,
        credit_id=row.value_credit_id,
        consumption_rate=row.credit_consumption_rate,
        plan_id=None if is_override else row.plan_id,
        plan_version_id=None if is_override else row.plan_version_id,
        company_id=row.company_id if is_override else None,
        expires_at=row.expiration_date if is_override else None,
        name=name,
        rule_id=row.rule_id,
        rule_id_usage_exceeded=row.rule_id_usage_exceeded,
        soft_limit=None if is_override else row.soft_limit,
    )


def load_catalog_view(session: Session, now: dt.datetime) -> CatalogView:
    traits = {t.id: wire_trait(t) for t in session.exec(select(TraitDefinition)).all()}
    features = {f.id: f for f in session.exec(select(Feature)).all()}
    db_flags = list(session.exec(select(Flag).order_by(col(Flag.key))).all())
    flag_by_feature = {f.feature_id: f for f in db_flags if f.feature_id}
    plans = {p.id: p for p in session.exec(select(Plan)).all()}
    published: dict[str, tuple[int, str]] = {}
    for v in session.exec(select(PlanVersion).where(col(PlanVersion.status) == "published")).all():
        if v.plan_id not in published or v.version > published[v.plan_id][0]:
            published[v.plan_id] = (v.version, v.id)
    specs: list[EntitlementSpec] = []
    for row in session.exec(select(PlanEntitlement).order_by(col(PlanEntitlement.created_at))).all():
        feature = features.get(row.feature_id)
        flag = flag_by_feature.get(row.feature_id)
        if feature is None or flag is None:
            continue  # a feature without a flag gates nothing
        specs.append(entitlement_spec(row, feature, flag, traits, plans[row.plan_id].name, is_override=False))
    hand = _hand_written_rules(session, traits)
    flags = [
        wire.Flag(
            f.id,
            f.key,
            f.default_value,
            [*hand.get(f.id, []), *compile_plan_rules(specs, f.id, now)],
        )
        for f in db_flags
    ]
    settings = session.get(CatalogSettingsRow, 1)
    return CatalogView(
        flags=flags,
        plan_specs=specs,
        features=features,
        flag_by_feature=flag_by_feature,
        traits=traits,
        plan_types={p.id: p.plan_type for p in plans.values()},
        plan_products={p.id: p.stripe_product_id for p in plans.values() if p.stripe_product_id},
        published={pid: vid for pid, (_, vid) in published.items()},
        fallback_plan_id=settings.fallback_plan_id if settings else None,
        trial_expiry_plan_id=settings.trial_expiry_plan_id if settings else None,
        plan_names={p.id: p.name for p in plans.values()},
    )
