"""Apply a catalog to the database: the writes behind a :class:`~syncd.catalog.diff.CatalogDiff`.

``apply_catalog`` works inside the caller's session and transaction (use
``syncd.db.session_scope``): it flushes but never commits, so the whole apply commits or rolls
back as one. On Postgres it first takes a transaction-scoped advisory lock, so replicas starting
at the same time apply the catalog one after the other (the second finds nothing to do).

Unchanged rows are never written, so ids stay stable and a second apply writes nothing.
Stripe links are left alone: a plan's ``stripe_product_id`` changes only when the file sets
``stripe_product``, and a price's ``stripe_price_id`` is cleared only when its amount changes
(the Stripe sync then creates the new price).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, text, update
from sqlmodel import Session, col, select

from syncd.models import (
    CatalogSettingsRow,
    CompanyOverride,
    CompanyPlan,
    Condition,
    ConditionGroup,
    CreditType,
    Feature,
    Flag,
    OverrideNote,
    Plan,
    PlanCreditGrant,
    PlanEntitlement,
    PlanPrice,
    PlanVersion,
    Rule,
    ScheduledDowngrade,
    TraitDefinition,
    new_id,
    utcnow,
)
from syncd.services.audit import SYSTEM, Actor, record
from syncd.services.changes import ALL, catalog_changed, entitlements_changed

from ._state import INTERVALS, DbState
from .diff import (
    Action,
    CatalogDiff,
    CreateCreditType,
    CreateFeature,
    CreateFlag,
    CreatePlan,
    CreateTrait,
    CreateVersion,
    DeleteCreditType,
    DeleteFeature,
    DeleteFlag,
    DeletePlan,
    DeleteTrait,
    SetAudience,
    SetSettings,
    UpdateCreditType,
    UpdateFeature,
    UpdateFlag,
    UpdatePlan,
    UpdateTrait,
    UpdateVersion,
    compute_diff,
)
from .schema import (
    COMPARABLE_TYPES,
    BooleanEntitlement,
    Catalog,
    ConditionSpec,
    CreditEntitlement,
    CreditGrantSpec,
    FlagSpec,
    NumericEntitlement,
    PlanSpec,
    RuleSpec,
    TraitEntitlement,
    UnlimitedEntitlement,
)

#: Arbitrary constant for pg_advisory_xact_lock: "syncd catalog apply".
_ADVISORY_LOCK_KEY = 0x5C_A7_A1_06


def apply_catalog(
    session: Session,
    catalog: Catalog,
    *,
    dry_run: bool = False,
    prune: bool = False,
    actor: Actor = SYSTEM,
) -> CatalogDiff:
    """Make the database match ``catalog`` and return what changed.

    ``dry_run`` only computes the changes. ``prune`` deletes catalog objects that are in the
    database but not in the file (except what companies still use); otherwise they are
    reported in ``diff.kept``. The caller commits (or rolls back) the session.

    An apply that changes something writes one ``catalog.applied`` audit row (by ``actor``)
    and records that every company's entitlements may have changed
    (:func:`syncd.services.changes.entitlements_changed`).
    """
    if not dry_run:
        _lock(session)
    diff = compute_diff(session, catalog, prune=prune)
    diff.dry_run = dry_run
    if dry_run or diff.is_empty:
        return diff
    assert diff.state is not None
    writer = _Writer(session, diff.state, catalog)
    try:
        for action in diff.actions:
            writer.run(action)
        session.flush()
        _audit(session, diff, actor, prune=prune)
        _record_changes(session, diff)
    except BaseException:
        session.rollback()
        raise
    return diff


def _record_changes(session: Session, diff: CatalogDiff) -> None:
    """Only publishing plan versions (the common case): new plan rules, and only the companies
    that moved to a new version have new entitlements (a version changed in place has no
    companies, grandfathered ones keep theirs). Anything else: every company."""
    if all(isinstance(a, CreateVersion | UpdateVersion) for a in diff.actions):
        catalog_changed(session)
        moved = {c for m in diff.migrations if m.strategy == "immediate" for c in m.company_ids}
        entitlements_changed(session, moved)
    else:
        entitlements_changed(session, ALL)
    _enqueue_stripe_migrations(session, diff)


def _enqueue_stripe_migrations(session: Session, diff: CatalogDiff) -> None:
    """Migrated companies' Stripe subscriptions must follow: a durable intent for the push."""
    from syncd.stripe_push.outbox import enqueue_migrations

    moved = [(m.plan, m.to_version, m.company_ids) for m in diff.migrations if m.strategy == "immediate"]
    if moved:
        enqueue_migrations(session, moved)


def _audit(session: Session, diff: CatalogDiff, actor: Actor, *, prune: bool) -> None:
    migrations = [
        {
            "plan": m.plan,
            "from_version": m.from_version,
            "to_version": m.to_version,
            "strategy": m.strategy,
            "company_ids": list(m.company_ids),
        }
        for m in diff.migrations
    ]
    summary = {"changes": diff.changes, "kept": diff.kept, "migrations": migrations, "prune": prune}
    count = sum(1 for line in diff.changes if not line.startswith(" "))
    record(session, actor, "catalog.applied", "catalog", None, after=summary, note=f"{count} change(s)")


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def _set(row: Any, values: dict[str, Any]) -> bool:
    """Assign only the values that differ; True when something changed."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _needs_usage_rule(value_type: str) -> bool:
    return value_type in ("numeric", "trait", "credit")


class _Writer:
    def __init__(self, session: Session, state: DbState, catalog: Catalog) -> None:
        self.s = session
        self.state = state
        self.catalog = catalog
        self.now = utcnow()
        self.trait_ids = {state.trait_keys[t.id]: t.id for t in state.traits}
        self.credit_ids = {c.key: c.id for c in state.credit_types}
        self.feature_ids = {f.key: f.id for f in state.features}
        self.plan_ids = {p.key: p.id for p in state.plans}
        self.version_ids = {ref: v.id for ref, v in state.version_by_ref.items()}

    def run(self, action: Action) -> None:
        match action:
            case CreateTrait(key, name, spec):
                trait = TraitDefinition(entity_type=spec.entity, name=name, trait_type=spec.type)
                self.s.add(trait)
                self.trait_ids[key] = trait.id
            case UpdateTrait(trait_id, trait_type):
                self.state.trait_by_id[trait_id].trait_type = trait_type
            case CreateCreditType(spec):
                credit = CreditType(key=spec.key, **self._credit_values(spec))
                self.s.add(credit)
                self.credit_ids[spec.key] = credit.id
            case UpdateCreditType(credit_id, spec):
                _set(self.state.credit_by_id[credit_id], self._credit_values(spec))
            case CreateFeature(spec):
                feature = Feature(key=spec.key, **self._feature_values(spec))
                self.s.add(feature)
                self.feature_ids[spec.key] = feature.id
            case UpdateFeature(feature_id, spec):
                row = self.state.feature_by_id[feature_id]
                if _set(row, self._feature_values(spec)):
                    row.updated_at = self.now
            case CreatePlan(spec):
                plan = Plan(key=spec.key, audience=[], **self._plan_values(spec))
                self.s.add(plan)
                self.plan_ids[spec.key] = plan.id
            case UpdatePlan(plan_id, spec):
                plan = self.state.plan_by_id[plan_id]
                if _set(plan, self._plan_values(spec)):
                    plan.updated_at = self.now
            case CreateVersion():
                self._create_version(action)
            case UpdateVersion(version_id, plan_key, spec):
                self._write_content(
                    self.state.version_by_id[version_id], self.plan_ids[plan_key], spec, fresh=False
                )
            case SetAudience(plan_key, audience):
                plan_id = self.plan_ids[plan_key]
                target = self.state.plan_by_id.get(plan_id) or self.s.get(Plan, plan_id)
                assert target is not None
                target.audience = [self._wire_condition(c) for c in audience]
                target.updated_at = self.now
            case CreateFlag(spec, feature_key):
                flag = Flag(key=spec.key, flag_type="boolean", **self._flag_values(spec, feature_key))
                self.s.add(flag)
                self.s.flush()
                self._write_rules(flag.id, spec, [], [])
            case UpdateFlag(flag_id, spec, feature_key, rules_changed):
                flag = next(f for f in self.state.flags if f.id == flag_id)
                if _set(flag, self._flag_values(spec, feature_key)):
                    flag.updated_at = self.now
                if rules_changed:
                    existing = self.state.rules.get(flag_id, [])
                    self._write_rules(flag_id, spec, existing, self.state.rule_specs(flag))
            case SetSettings(spec):
                self._write_settings(spec)
            case DeleteFlag(flag_id):
                self._delete_flags([flag_id])
            case DeleteFeature(feature_id, flag_id):
                self._delete_feature(feature_id, flag_id)
            case DeletePlan(plan_id):
                self._delete_plan(plan_id)
            case DeleteCreditType(credit_id):
                self._delete(PlanEntitlement, PlanEntitlement.value_credit_id, [credit_id])
                self._delete(PlanCreditGrant, PlanCreditGrant.credit_type_id, [credit_id])
                self._delete(CreditType, CreditType.id, [credit_id])
            case DeleteTrait(trait_id):
                self.s.flush()
                self.s.execute(
                    update(Feature).where(col(Feature.trait_id) == trait_id).values(trait_id=None),
                    execution_options={"synchronize_session": False},
                )
                self._delete(TraitDefinition, TraitDefinition.id, [trait_id])
        self.s.flush()

    # ---- values
    def _credit_values(self, spec: Any) -> dict[str, Any]:
        return {
            "name": spec.name,
            "singular_name": spec.singular_name,
            "plural_name": spec.plural_name,
            "burn_strategy": spec.burn_strategy,
            "price_amount": spec.price,
            "currency": spec.currency,
        }

    def _feature_values(self, spec: Any) -> dict[str, Any]:
        return {
            "name": spec.name,
            "description": spec.description,
            "feature_type": spec.type,
            "event_subtype": spec.event,
            "trait_id": self.trait_ids[spec.trait] if spec.trait else None,
        }

    def _plan_values(self, spec: PlanSpec) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "plan_type": spec.type,
            "icon": spec.icon,
            "trial_days": spec.trial_days,
            "audience_priority": spec.audience_priority,
        }
        if spec.stripe_product is not None:
            values["stripe_product_id"] = spec.stripe_product or None
        return values

    def _flag_values(self, spec: FlagSpec, feature_key: str | None) -> dict[str, Any]:
        return {
            "name": spec.name,
            "description": spec.description or "",
            "default_value": spec.default,
            "feature_id": self.feature_ids[feature_key] if feature_key else None,
        }

    # ---- plans
    def _create_version(self, action: CreateVersion) -> None:
        plan_id = self.plan_ids[action.plan_key]
        version = PlanVersion(
            plan_id=plan_id,
            version=action.number,
            status="published",
            created_at=self.now,
            published_at=self.now,
        )
        if action.replaces is not None:
            old = self.state.version_by_id[action.replaces]
            old.status = "archived"
            old.archived_at = self.now
            for price in self.state.prices.get(old.id, []):
                price.active = False
        self.s.add(version)
        self.s.flush()
        self.version_ids[f"{action.plan_key}@{action.number}"] = version.id
        self._write_content(version, plan_id, action.spec, fresh=True)
        if action.replaces is not None and action.migrate:
            self.s.flush()
            # One statement however many companies move (100k on a big plan).
            self.s.execute(
                update(CompanyPlan)
                .where(
                    col(CompanyPlan.plan_version_id) == action.replaces,
                    col(CompanyPlan.company_id).not_in(action.spec.migration_exclude),
                )
                .values(plan_version_id=version.id, updated_at=self.now)
                .execution_options(synchronize_session=False)
            )

    def _write_content(self, version: PlanVersion, plan_id: str, spec: PlanSpec, *, fresh: bool) -> None:
        state = self.state
        # entitlements, matched by feature
        existing = {} if fresh else {e.feature_id: e for e in state.entitlements.get(version.id, [])}
        for feature_key, ent in spec.entitlements.items():
            feature_id = self.feature_ids[feature_key]
            values = self._entitlement_values(ent)
            row = existing.pop(feature_id, None)
            if row is None:
                row = PlanEntitlement(
                    plan_id=plan_id,
                    plan_version_id=version.id,
                    feature_id=feature_id,
                    created_at=self.now,
                    **values,
                )
                row.rule_id_usage_exceeded = new_id("rule") if _needs_usage_rule(ent.type) else None
                self.s.add(row)
                continue
            changed = _set(row, values)
            if _needs_usage_rule(ent.type) and row.rule_id_usage_exceeded is None:
                row.rule_id_usage_exceeded, changed = new_id("rule"), True
            elif not _needs_usage_rule(ent.type) and row.rule_id_usage_exceeded is not None:
                row.rule_id_usage_exceeded, changed = None, True
            if changed:
                row.updated_at = self.now
        for row in existing.values():
            self.s.delete(row)

        # prices, matched by (interval, currency); dropped ones are deactivated
        prices = {} if fresh else {(p.interval, p.currency): p for p in state.prices.get(version.id, [])}
        if spec.prices is not None:
            for interval in INTERVALS:
                amount = getattr(spec.prices, interval)
                if amount is None:
                    continue
                price = prices.pop((interval, spec.prices.currency), None)
                if price is None:
                    self.s.add(
                        PlanPrice(
                            plan_version_id=version.id,
                            interval=interval,
                            amount=amount,
                            currency=spec.prices.currency,
                            price_behavior=spec.prices.behavior,
                        )
                    )
                    continue
                if price.amount != amount:
                    price.amount, price.stripe_price_id = amount, None
                _set(price, {"active": True, "price_behavior": spec.prices.behavior})
        for price in prices.values():
            price.active = False

        # credit grants, matched by position in canonical order
        grants = [] if fresh else list(state.grants.get(version.id, []))
        plan_key = state.plan_by_id[plan_id].key if plan_id in state.plan_by_id else spec.key
        grants.sort(key=lambda g: state.grant_spec(g, plan_key).sort_key())
        for i, grant_spec in enumerate(spec.sorted_grants()):
            values = self._grant_values(grant_spec)
            if i < len(grants):
                _set(grants[i], values)
            else:
                self.s.add(PlanCreditGrant(plan_version_id=version.id, **values))
        for grant in grants[len(spec.credit_grants) :]:
            self.s.delete(grant)

    def _entitlement_values(self, ent: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "value_type": ent.type,
            "value_bool": None,
            "value_numeric": None,
            "value_trait_id": None,
            "value_credit_id": None,
            "credit_consumption_rate": None,
            "metric_period": None,
            "metric_period_month_reset": None,
            "soft_limit": None,
            "price_behavior": ent.price_behavior,
        }
        if isinstance(ent, BooleanEntitlement):
            values["value_bool"] = ent.value
        elif isinstance(ent, UnlimitedEntitlement):
            values["soft_limit"] = ent.soft_limit
        elif isinstance(ent, NumericEntitlement | TraitEntitlement):
            values["metric_period"] = ent.period
            values["metric_period_month_reset"] = ent.month_reset
            values["soft_limit"] = ent.soft_limit
            if isinstance(ent, NumericEntitlement):
                values["value_numeric"] = ent.value
            else:
                values["value_trait_id"] = self.trait_ids[ent.trait]
        elif isinstance(ent, CreditEntitlement):
            values["value_credit_id"] = self.credit_ids[ent.credit]
            values["credit_consumption_rate"] = ent.rate
        return values

    def _grant_values(self, grant: CreditGrantSpec) -> dict[str, Any]:
        return {
            "credit_type_id": self.credit_ids[grant.credit],
            "credit_amount": grant.amount,
            "reset_type": grant.reset_type,
            "reset_cadence": grant.reset_cadence,
            "reset_start": grant.reset_start,
            "rollover_percentage": grant.rollover_percentage,
            "expiry_type": grant.expiry_type,
            "expiry_unit": grant.expiry_unit,
            "expiry_unit_count": grant.expiry_unit_count,
        }

    # ---- conditions and rules
    def _condition_values(self, spec: ConditionSpec) -> dict[str, Any]:
        if spec.type in ("plan", "base_plan"):
            resource_ids = [self.plan_ids[k] for k in spec.plans or []]
        elif spec.type == "plan_version":
            resource_ids = [self.version_ids[r] for r in spec.versions or []]
        else:
            resource_ids = list(spec.ids or [])
        return {
            "condition_type": spec.type,
            "operator": spec.operator,
            "resource_ids": resource_ids,
            "event_subtype": spec.event,
            "metric_value": spec.value if spec.type == "metric" else None,
            "metric_period": spec.period,
            "metric_period_month_reset": spec.month_reset,
            "credit_id": self.credit_ids[spec.credit] if spec.credit else None,
            "consumption_rate": spec.rate,
            "trait_definition_id": self.trait_ids[spec.trait] if spec.trait else None,
            "trait_value": str(spec.value) if spec.type == "trait" and spec.value is not None else "",
            "comparison_trait_definition_id": (
                self.trait_ids[spec.comparison_trait] if spec.comparison_trait else None
            ),
        }

    def _trait_wire(self, key: str) -> dict[str, str]:
        spec = self.catalog.traits[key]
        return {
            "id": self.trait_ids[key],
            "comparable_type": COMPARABLE_TYPES[spec.type],
            "entity_type": spec.entity,
        }

    def _wire_condition(self, spec: ConditionSpec) -> dict[str, Any]:
        """An audience condition in the rules-engine wire shape (optional scalars omitted)."""
        values = self._condition_values(spec)
        wire: dict[str, Any] = {
            "id": new_id("cond"),
            "condition_type": values["condition_type"],
            "operator": values["operator"],
            "resource_ids": values["resource_ids"],
            "trait_value": values["trait_value"],
        }
        for name in ("event_subtype", "metric_value", "metric_period", "metric_period_month_reset"):
            if values[name] is not None:
                wire[name] = values[name]
        if values["credit_id"] is not None:
            wire["credit_id"] = values["credit_id"]
        if values["consumption_rate"] is not None:
            wire["consumption_rate"] = values["consumption_rate"]
        if spec.trait:
            wire["trait_definition"] = self._trait_wire(spec.trait)
        if spec.comparison_trait:
            wire["comparison_trait_definition"] = self._trait_wire(spec.comparison_trait)
        return wire

    def _write_rules(
        self, flag_id: str, spec: FlagSpec, existing: Sequence[Rule], existing_specs: Sequence[RuleSpec]
    ) -> None:
        """Reuse rule rows by position (an equal rule keeps its conditions).

        Creation times are reassigned, so the stored order ties break in file order.
        """
        for i, rule_spec in enumerate(spec.rules):
            values: dict[str, Any] = {
                "rule_type": rule_spec.type,
                "name": rule_spec.name,
                "priority": rule_spec.priority,
                "value": rule_spec.value,
                "created_at": self.now + timedelta(microseconds=i),
            }
            if i < len(existing):
                rule = existing[i]
                _set(rule, values)
                if existing_specs[i] == rule_spec:
                    continue
                self._delete_conditions([rule.id])
            else:
                rule = Rule(flag_id=flag_id, **values)
                self.s.add(rule)
                self.s.flush()
            for position, cond in enumerate(rule_spec.conditions):
                self.s.add(Condition(rule_id=rule.id, position=position, **self._condition_values(cond)))
            for g, group_spec in enumerate(rule_spec.condition_groups):
                group = ConditionGroup(rule_id=rule.id, position=g)
                self.s.add(group)
                self.s.flush()
                for position, cond in enumerate(group_spec.conditions):
                    self.s.add(
                        Condition(
                            rule_id=rule.id,
                            group_id=group.id,
                            position=position,
                            **self._condition_values(cond),
                        )
                    )
        surplus = [r.id for r in existing[len(spec.rules) :]]
        if surplus:
            self._delete_conditions(surplus)
            self._delete(Rule, Rule.id, surplus)

    # ---- settings
    def _write_settings(self, spec: Any) -> None:
        row = self.state.settings or self.s.get(CatalogSettingsRow, 1)
        if row is None:
            row = CatalogSettingsRow(id=1)
            self.s.add(row)

        def plan_id(key: str | None) -> str | None:
            return None if key is None else self.plan_ids[key]

        values = {
            "initial_plan_id": plan_id(spec.initial_plan),
            "fallback_plan_id": plan_id(spec.fallback_plan),
            "trial_expiry_plan_id": plan_id(spec.trial_expiry_plan),
            "trial_payment_method_required": spec.trial_payment_method_required,
            "prevent_downgrades_when_over_limit": spec.prevent_downgrades_when_over_limit,
            "prevent_self_service_downgrade": spec.prevent_self_service_downgrade,
            "self_service_downgrade_url": spec.self_service_downgrade_url,
            "scheduled_downgrade_behavior": spec.scheduled_downgrade_behavior,
            "proration_behavior": spec.proration_behavior,
        }
        if _set(row, values):
            row.updated_at = self.now

    # ---- deletes (explicit, children first: no reliance on ON DELETE CASCADE)
    def _delete(self, model: type[Any], column: Any, values: Iterable[str]) -> None:
        values = list(values)
        if values:
            self.s.flush()
            self.s.execute(delete(model).where(col(column).in_(values)))

    def _ids(self, column: Any, where: Any, values: Sequence[str]) -> list[str]:
        if not values:
            return []
        return list(self.s.exec(select(column).where(col(where).in_(values))).all())

    def _delete_conditions(self, rule_ids: Sequence[str]) -> None:
        self._delete(Condition, Condition.rule_id, rule_ids)
        self._delete(ConditionGroup, ConditionGroup.rule_id, rule_ids)

    def _delete_flags(self, flag_ids: Sequence[str]) -> None:
        rule_ids = self._ids(Rule.id, Rule.flag_id, flag_ids)
        self._delete_conditions(rule_ids)
        self._delete(Rule, Rule.id, rule_ids)
        self._delete(Flag, Flag.id, flag_ids)

    def _delete_feature(self, feature_id: str, flag_id: str | None) -> None:
        if flag_id is not None:
            self._delete_flags([flag_id])
        self.s.flush()
        self.s.execute(
            update(Flag).where(col(Flag.feature_id) == feature_id).values(feature_id=None),
            execution_options={"synchronize_session": False},
        )
        self._delete(PlanEntitlement, PlanEntitlement.feature_id, [feature_id])
        override_ids = self._ids(CompanyOverride.id, CompanyOverride.feature_id, [feature_id])
        self._delete(OverrideNote, OverrideNote.override_id, override_ids)
        self._delete(CompanyOverride, CompanyOverride.id, override_ids)
        self._delete(Feature, Feature.id, [feature_id])

    def _delete_plan(self, plan_id: str) -> None:
        version_ids = [v.id for v in self.state.versions.get(plan_id, [])]
        for model, column in (
            (PlanCreditGrant, PlanCreditGrant.plan_version_id),
            (PlanPrice, PlanPrice.plan_version_id),
            (PlanEntitlement, PlanEntitlement.plan_version_id),
        ):
            self._delete(model, column, version_ids)
        self._delete(ScheduledDowngrade, ScheduledDowngrade.from_plan_id, [plan_id])
        self._delete(ScheduledDowngrade, ScheduledDowngrade.to_plan_id, [plan_id])
        self._delete(PlanVersion, PlanVersion.id, version_ids)
        self._delete(Plan, Plan.id, [plan_id])


__all__ = ["apply_catalog"]
