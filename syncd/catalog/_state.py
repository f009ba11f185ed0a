"""A snapshot of the catalog tables, and conversions from rows to catalog-file specs.

Both the diff (file vs database) and the export read the database through here, so an
exported catalog compares equal to the database it came from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlmodel import Session, select

from syncd.exceptions import CatalogError
from syncd.models import (
    CatalogSettingsRow,
    CompanyPlan,
    Condition,
    ConditionGroup,
    CreditType,
    Feature,
    Flag,
    Plan,
    PlanCreditGrant,
    PlanEntitlement,
    PlanPrice,
    PlanVersion,
    Rule,
    TraitDefinition,
)

from .schema import (
    RULE_TYPE_ORDER,
    BooleanEntitlement,
    ConditionSpec,
    CreditEntitlement,
    CreditGrantSpec,
    CreditTypeSpec,
    FeatureSpec,
    FlagSpec,
    NumericEntitlement,
    PricesSpec,
    RuleSpec,
    SettingsSpec,
    TraitEntitlement,
    TraitSpec,
    UnlimitedEntitlement,
)

M = TypeVar("M", bound=BaseModel)
EntitlementSpec = (
    BooleanEntitlement | UnlimitedEntitlement | NumericEntitlement | TraitEntitlement | CreditEntitlement
)

INTERVALS = ("month", "year", "one_time")


def build(cls: type[M], what: str, **values: Any) -> M:
    """Validate database values into a spec; CatalogError when the file format cannot express them."""
    try:
        return cls.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise CatalogError(
            f"{what} in the database cannot be expressed in a catalog file ({problems})"
        ) from None


def _group(rows: Sequence[Any], attr: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        out[getattr(row, attr)].append(row)
    return out


@dataclass
class DbState:
    """Everything the catalog owns, loaded once."""

    traits: list[TraitDefinition]
    credit_types: list[CreditType]
    features: list[Feature]
    flags: list[Flag]
    rules: dict[str, list[Rule]]  # flag id -> rules in evaluation order
    groups: dict[str, list[ConditionGroup]]  # rule id -> groups by position
    conditions: dict[str, list[Condition]]  # rule id -> conditions by position
    plans: list[Plan]
    versions: dict[str, list[PlanVersion]]  # plan id -> versions by number
    prices: dict[str, list[PlanPrice]]
    entitlements: dict[str, list[PlanEntitlement]]
    grants: dict[str, list[PlanCreditGrant]]
    settings: CatalogSettingsRow | None
    companies_on_version: dict[str, list[str]]  # version id -> company ids
    trait_keys: dict[str, str] = field(default_factory=dict)  # trait id -> catalog key

    # ---- lookups
    def __post_init__(self) -> None:
        self.trait_by_id = {t.id: t for t in self.traits}
        self.credit_by_id = {c.id: c for c in self.credit_types}
        self.credit_by_key = {c.key: c for c in self.credit_types}
        self.feature_by_id = {f.id: f for f in self.features}
        self.feature_by_key = {f.key: f for f in self.features}
        self.flag_by_key = {f.key: f for f in self.flags}
        self.plan_by_id = {p.id: p for p in self.plans}
        self.plan_by_key = {p.key: p for p in self.plans}
        self.version_by_id = {v.id: v for vs in self.versions.values() for v in vs}
        self.version_by_ref = {self.version_ref(v): v for v in self.version_by_id.values()}

    def version_ref(self, version: PlanVersion) -> str:
        return f"{self.plan_by_id[version.plan_id].key}@{version.version}"

    def current_version(self, plan_id: str) -> PlanVersion | None:
        """The published version (the newest, should there be several)."""
        published = [v for v in self.versions.get(plan_id, []) if v.status == "published"]
        return published[-1] if published else None

    def export_version(self, plan_id: str) -> PlanVersion | None:
        versions = self.versions.get(plan_id, [])
        return self.current_version(plan_id) or (versions[-1] if versions else None)

    def next_version_number(self, plan_id: str) -> int:
        versions = self.versions.get(plan_id, [])
        return (versions[-1].version + 1) if versions else 1

    def trait_key(self, trait_id: str | None) -> str | None:
        if trait_id is None:
            return None
        return self.trait_keys.get(trait_id, trait_id)

    def credit_key(self, credit_id: str | None) -> str | None:
        if credit_id is None:
            return None
        credit = self.credit_by_id.get(credit_id)
        return credit.key if credit else credit_id

    def plan_key(self, plan_id: str) -> str:
        plan = self.plan_by_id.get(plan_id)
        return plan.key if plan else plan_id

    def version_key(self, version_id: str) -> str:
        version = self.version_by_id.get(version_id)
        return self.version_ref(version) if version else version_id

    # ---- rows -> specs
    def trait_spec(self, trait: TraitDefinition) -> TraitSpec:
        key = self.trait_keys[trait.id]
        return build(
            TraitSpec,
            f"trait {trait.name!r}",
            entity=trait.entity_type,
            type=trait.trait_type,
            name=None if key == trait.name else trait.name,
        )

    def credit_spec(self, credit: CreditType) -> CreditTypeSpec:
        return build(
            CreditTypeSpec,
            f"credit type {credit.key!r}",
            key=credit.key,
            name=credit.name,
            singular_name=credit.singular_name,
            plural_name=credit.plural_name,
            burn_strategy=credit.burn_strategy,
            price=credit.price_amount,
            currency=credit.currency,
        )

    def feature_spec(self, feature: Feature) -> FeatureSpec:
        return build(
            FeatureSpec,
            f"feature {feature.key!r}",
            key=feature.key,
            name=feature.name,
            description=feature.description,
            type=feature.feature_type,
            event=feature.event_subtype if feature.feature_type == "event" else None,
            trait=self.trait_key(feature.trait_id) if feature.feature_type == "trait" else None,
        )

    def condition_spec(self, values: Mapping[str, Any], what: str) -> ConditionSpec:
        """A condition from row-like values (Condition columns, or the wire dict of an audience)."""
        ctype = values.get("condition_type")
        resource_ids = list(values.get("resource_ids") or [])
        spec: dict[str, Any] = {"type": ctype, "operator": values.get("operator") or "eq"}
        if ctype in ("company", "user", "billing_product"):
            spec["ids"] = resource_ids
        elif ctype in ("plan", "base_plan"):
            spec["plans"] = [self.plan_key(i) for i in resource_ids]
        elif ctype == "plan_version":
            spec["versions"] = [self.version_key(i) for i in resource_ids]
        elif ctype == "trait":
            spec["trait"] = self.trait_key(values.get("trait_definition_id"))
            spec["value"] = values.get("trait_value") or ""
            spec["comparison_trait"] = self.trait_key(values.get("comparison_trait_definition_id"))
        elif ctype == "metric":
            spec["event"] = values.get("event_subtype")
            spec["value"] = values.get("metric_value")
            spec["period"] = values.get("metric_period")
            spec["month_reset"] = values.get("metric_period_month_reset")
            spec["comparison_trait"] = self.trait_key(values.get("comparison_trait_definition_id"))
        elif ctype == "credit":
            spec["credit"] = self.credit_key(values.get("credit_id"))
            spec["rate"] = values.get("consumption_rate")
        return build(ConditionSpec, what, **spec)

    def row_condition_spec(self, cond: Condition, what: str) -> ConditionSpec:
        return self.condition_spec(cond.model_dump(), what)

    def wire_condition_spec(self, wire: Mapping[str, Any], what: str) -> ConditionSpec:
        values = dict(wire)
        for name in ("trait_definition", "comparison_trait_definition"):
            td = wire.get(name)
            values[f"{name}_id"] = td.get("id") if isinstance(td, Mapping) else None
        return self.condition_spec(values, what)

    def rule_specs(self, flag: Flag) -> list[RuleSpec]:
        out = []
        for rule in self.rules.get(flag.id, []):
            what = f"rule {rule.name or rule.id!r} of flag {flag.key!r}"
            conditions = self.conditions.get(rule.id, [])

            def dicts(
                group_id: str | None, conditions: list[Condition] = conditions, what: str = what
            ) -> list[dict[str, Any]]:
                return [
                    self.row_condition_spec(c, what).model_dump(exclude_none=True)
                    for c in conditions
                    if c.group_id == group_id
                ]

            out.append(
                build(
                    RuleSpec,
                    what,
                    type=rule.rule_type,
                    name=rule.name,
                    priority=rule.priority,
                    value=rule.value,
                    conditions=dicts(None),
                    condition_groups=[{"conditions": dicts(g.id)} for g in self.groups.get(rule.id, [])],
                )
            )
        return out

    def flag_spec(self, flag: Flag) -> FlagSpec:
        """The flag as an effective spec (name and description always set)."""
        return FlagSpec(
            key=flag.key,
            name=flag.name,
            description=flag.description,
            default=flag.default_value,
            rules=self.rule_specs(flag),
        )

    def entitlement_spec(self, ent: PlanEntitlement, what: str) -> EntitlementSpec:
        common: dict[str, Any] = {"type": ent.value_type, "price_behavior": ent.price_behavior}
        metered = {
            "period": ent.metric_period,
            "month_reset": ent.metric_period_month_reset,
            "soft_limit": ent.soft_limit,
        }
        if ent.value_type == "boolean":
            return build(BooleanEntitlement, what, value=bool(ent.value_bool), **common)
        if ent.value_type == "unlimited":
            return build(UnlimitedEntitlement, what, soft_limit=ent.soft_limit, **common)
        if ent.value_type == "numeric":
            return build(NumericEntitlement, what, value=ent.value_numeric or 0, **metered, **common)
        if ent.value_type == "trait":
            return build(
                TraitEntitlement, what, trait=self.trait_key(ent.value_trait_id), **metered, **common
            )
        if ent.value_type == "credit":
            rate = ent.credit_consumption_rate
            return build(
                CreditEntitlement,
                what,
                credit=self.credit_key(ent.value_credit_id),
                rate=1.0 if rate is None else float(rate),
                **common,
            )
        raise CatalogError(f"{what}: value type {ent.value_type!r} cannot be expressed in a catalog file")

    def entitlement_specs(self, version: PlanVersion) -> dict[str, EntitlementSpec]:
        plan_key = self.plan_by_id[version.plan_id].key
        out: dict[str, EntitlementSpec] = {}
        rows = sorted(self.entitlements.get(version.id, []), key=lambda e: self._feature_key(e.feature_id))
        for ent in rows:
            feature_key = self._feature_key(ent.feature_id)
            out[feature_key] = self.entitlement_spec(ent, f"entitlement {feature_key!r} of plan {plan_key!r}")
        return out

    def _feature_key(self, feature_id: str) -> str:
        feature = self.feature_by_id.get(feature_id)
        return feature.key if feature else feature_id

    def prices_spec(self, version: PlanVersion) -> PricesSpec | None:
        """The active prices as one spec; CatalogError when they cannot be expressed as one."""
        active = [p for p in self.prices.get(version.id, []) if p.active]
        if not active:
            return None
        plan_key = self.plan_by_id[version.plan_id].key
        currencies = {p.currency for p in active}
        behaviors = {p.price_behavior for p in active}
        intervals = [p.interval for p in active]
        if len(currencies) > 1 or len(behaviors) > 1 or len(set(intervals)) != len(intervals):
            raise CatalogError(
                f"plan {plan_key!r}: prices in several currencies or behaviors "
                "cannot be expressed in a catalog file"
            )
        values: dict[str, Any] = {"currency": currencies.pop(), "behavior": behaviors.pop()}
        for price in active:
            if price.interval not in INTERVALS:
                raise CatalogError(
                    f"plan {plan_key!r}: price interval {price.interval!r} is not month|year|one_time"
                )
            values[price.interval] = price.amount
        return build(PricesSpec, f"prices of plan {plan_key!r}", **values)

    def grant_specs(self, version: PlanVersion) -> list[CreditGrantSpec]:
        plan_key = self.plan_by_id[version.plan_id].key
        return sorted(
            (self.grant_spec(g, plan_key) for g in self.grants.get(version.id, [])),
            key=CreditGrantSpec.sort_key,
        )

    def grant_spec(self, grant: PlanCreditGrant, plan_key: str) -> CreditGrantSpec:
        return build(
            CreditGrantSpec,
            f"credit grant of plan {plan_key!r}",
            credit=self.credit_key(grant.credit_type_id),
            amount=float(grant.credit_amount),
            reset_type=grant.reset_type,
            reset_cadence=grant.reset_cadence,
            reset_start=grant.reset_start,
            rollover_percentage=float(grant.rollover_percentage),
            expiry_type=grant.expiry_type,
            expiry_unit=grant.expiry_unit,
            expiry_unit_count=grant.expiry_unit_count,
        )

    def audience_specs(self, plan: Plan) -> list[ConditionSpec]:
        return [self.wire_condition_spec(c, f"audience of plan {plan.key!r}") for c in plan.audience or []]

    def settings_spec(self) -> SettingsSpec | None:
        row = self.settings
        if row is None:
            return None

        def key(plan_id: str | None) -> str | None:
            return None if plan_id is None else self.plan_key(plan_id)

        return build(
            SettingsSpec,
            "catalog settings",
            initial_plan=key(row.initial_plan_id),
            fallback_plan=key(row.fallback_plan_id),
            trial_expiry_plan=key(row.trial_expiry_plan_id),
            trial_payment_method_required=row.trial_payment_method_required,
            prevent_downgrades_when_over_limit=row.prevent_downgrades_when_over_limit,
            prevent_self_service_downgrade=row.prevent_self_service_downgrade,
            self_service_downgrade_url=row.self_service_downgrade_url,
            scheduled_downgrade_behavior=row.scheduled_downgrade_behavior,
            proration_behavior=row.proration_behavior,
        )


def _rule_order(rule: Rule) -> tuple[int, int, Any, str]:
    return (RULE_TYPE_ORDER.get(rule.rule_type, 99), rule.priority, rule.created_at, rule.id)


def _all(session: Session, model: type[Any], *order: Any) -> list[Any]:
    return list(session.exec(select(model).order_by(*order)).all())


def load_state(session: Session, trait_hint: Mapping[tuple[str, str], str] | None = None) -> DbState:
    """Read the catalog tables. ``trait_hint`` maps (entity, name) to the key a catalog file uses."""
    traits: list[TraitDefinition] = _all(
        session, TraitDefinition, TraitDefinition.created_at, TraitDefinition.id
    )
    rules: list[Rule] = _all(session, Rule)
    flag_rules: dict[str, list[Rule]] = {
        k: sorted(v, key=_rule_order) for k, v in _group(rules, "flag_id").items()
    }
    groups = {
        k: sorted(v, key=lambda g: (g.position, g.id))
        for k, v in _group(_all(session, ConditionGroup), "rule_id").items()
    }
    conditions = {
        k: sorted(v, key=lambda c: (c.position, c.id))
        for k, v in _group(_all(session, Condition), "rule_id").items()
    }
    versions = {
        k: sorted(v, key=lambda x: x.version)
        for k, v in _group(_all(session, PlanVersion), "plan_id").items()
    }
    on_version: dict[str, list[str]] = defaultdict(list)
    for version_id, company_id in session.exec(
        select(CompanyPlan.plan_version_id, CompanyPlan.company_id).order_by(CompanyPlan.company_id)
    ).all():
        on_version[version_id].append(company_id)
    state = DbState(
        traits=traits,
        credit_types=_all(session, CreditType, CreditType.created_at, CreditType.key),
        features=_all(session, Feature, Feature.created_at, Feature.key),
        flags=_all(session, Flag, Flag.created_at, Flag.key),
        rules=flag_rules,
        groups=groups,
        conditions=conditions,
        plans=_all(session, Plan, Plan.created_at, Plan.key),
        versions=versions,
        prices=_group(_all(session, PlanPrice), "plan_version_id"),
        entitlements=_group(_all(session, PlanEntitlement), "plan_version_id"),
        grants=_group(_all(session, PlanCreditGrant), "plan_version_id"),
        settings=session.get(CatalogSettingsRow, 1),
        companies_on_version=dict(on_version),
    )
    state.trait_keys = assign_trait_keys(traits, trait_hint or {})
    return state


def assign_trait_keys(
    traits: Sequence[TraitDefinition], hint: Mapping[tuple[str, str], str]
) -> dict[str, str]:
    """A unique catalog key per trait definition: the hinted key, else its name, else ``entity:name``."""
    keys: dict[str, str] = {}
    taken = set(hint.values())
    name_count: dict[str, int] = defaultdict(int)
    for trait in traits:
        name_count[trait.name] += 1
    for trait in traits:
        hinted = hint.get((trait.entity_type, trait.name))
        if hinted is not None:
            keys[trait.id] = hinted
    for trait in traits:
        if trait.id in keys:
            continue
        candidates = [trait.name] if name_count[trait.name] == 1 else []
        candidates.append(f"{trait.entity_type}:{trait.name}")
        key = next((c for c in candidates if c not in taken), None)
        n = 2
        while key is None:
            candidate = f"{trait.entity_type}:{trait.name}:{n}"
            key = candidate if candidate not in taken else None
            n += 1
        keys[trait.id] = key
        taken.add(key)
    return keys
