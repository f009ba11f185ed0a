"""Compare a catalog file with the database: human-readable changes plus the actions to apply them.

Change lines start with ``+`` (create), ``~`` (change) or ``-`` (delete, prune only); indented
lines under a plan detail its entitlement, price and credit-grant changes. Objects that are in
the database but not in the file go to :attr:`CatalogDiff.kept` (``=`` lines) unless pruned.

Plans are versioned: when the entitlements, prices or credit grants of a plan's published
version change, the version is updated in place if no company is on it; otherwise a new
version is published, the old one archived, and companies move with ``migration = "immediate"``
or stay (grandfathered) with ``"leave"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from syncd.exceptions import CatalogError
from syncd.models import (
    CompanyOverride,
    CompanyTrait,
    Condition,
    CreditGrant,
    CreditLedgerEntry,
    ScheduledDowngrade,
    UserTrait,
)

from ._state import DbState, EntitlementSpec, load_state
from .schema import (
    BooleanEntitlement,
    Catalog,
    ConditionSpec,
    CreditEntitlement,
    CreditGrantSpec,
    CreditTypeSpec,
    FeatureSpec,
    FlagSpec,
    NumericEntitlement,
    PlanSpec,
    PricesSpec,
    RuleSpec,
    SettingsSpec,
    TraitEntitlement,
    TraitSpec,
    UnlimitedEntitlement,
    catalog_keys_hint,
)

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class CreateTrait:
    key: str
    name: str
    spec: TraitSpec


@dataclass(frozen=True)
class UpdateTrait:
    trait_id: str
    trait_type: str


@dataclass(frozen=True)
class CreateCreditType:
    spec: CreditTypeSpec


@dataclass(frozen=True)
class UpdateCreditType:
    credit_id: str
    spec: CreditTypeSpec


@dataclass(frozen=True)
class CreateFeature:
    spec: FeatureSpec


@dataclass(frozen=True)
class UpdateFeature:
    feature_id: str
    spec: FeatureSpec


@dataclass(frozen=True)
class CreatePlan:
    spec: PlanSpec


@dataclass(frozen=True)
class UpdatePlan:
    plan_id: str
    spec: PlanSpec


@dataclass(frozen=True)
class CreateVersion:
    """Publish version ``number`` of a plan; archive ``replaces`` and maybe move its companies."""

    plan_key: str
    spec: PlanSpec
    number: int
    replaces: str | None = None
    migrate: bool = False


@dataclass(frozen=True)
class UpdateVersion:
    version_id: str
    plan_key: str
    spec: PlanSpec


@dataclass(frozen=True)
class SetAudience:
    plan_key: str
    audience: tuple[ConditionSpec, ...]


@dataclass(frozen=True)
class CreateFlag:
    spec: FlagSpec
    feature_key: str | None


@dataclass(frozen=True)
class UpdateFlag:
    flag_id: str
    spec: FlagSpec
    feature_key: str | None
    rules_changed: bool


@dataclass(frozen=True)
class SetSettings:
    spec: SettingsSpec


@dataclass(frozen=True)
class DeleteFlag:
    flag_id: str


@dataclass(frozen=True)
class DeleteFeature:
    feature_id: str
    flag_id: str | None  # its flag, unless the file keeps a flag of that key


@dataclass(frozen=True)
class DeletePlan:
    plan_id: str


@dataclass(frozen=True)
class DeleteCreditType:
    credit_id: str


@dataclass(frozen=True)
class DeleteTrait:
    trait_id: str


Action = (
    CreateTrait
    | UpdateTrait
    | CreateCreditType
    | UpdateCreditType
    | CreateFeature
    | UpdateFeature
    | CreatePlan
    | UpdatePlan
    | CreateVersion
    | UpdateVersion
    | SetAudience
    | CreateFlag
    | UpdateFlag
    | SetSettings
    | DeleteFlag
    | DeleteFeature
    | DeletePlan
    | DeleteCreditType
    | DeleteTrait
)


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class VersionMigration:
    """A plan got a new version while companies were on the old one."""

    plan: str
    from_version: int
    to_version: int
    strategy: Literal["leave", "immediate"]
    company_ids: tuple[str, ...]  # moved (immediate) or left behind (leave)


@dataclass
class CatalogDiff:
    """What applying a catalog changes (``changes``) and what it leaves alone (``kept``)."""

    changes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    migrations: list[VersionMigration] = field(default_factory=list)
    dry_run: bool = True
    actions: list[Action] = field(default_factory=list, repr=False, compare=False)
    state: DbState | None = field(default=None, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        return [*self.changes, *self.kept] or ["no changes"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --------------------------------------------------------------------------- formatting


def fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, BaseModel):
        return str(value.model_dump(exclude_none=True))
    if isinstance(value, list):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return str(value)


def field_changes(old: BaseModel, new: BaseModel, fields: Iterable[str]) -> list[str]:
    return [
        f"{name} {fmt(getattr(old, name))} -> {fmt(getattr(new, name))}"
        for name in fields
        if getattr(old, name) != getattr(new, name)
    ]


def describe_entitlement(ent: EntitlementSpec) -> str:
    if isinstance(ent, BooleanEntitlement):
        text = f"boolean {fmt(ent.value)}"
    elif isinstance(ent, UnlimitedEntitlement):
        text = "unlimited"
    elif isinstance(ent, NumericEntitlement | TraitEntitlement):
        text = f"numeric {ent.value}" if isinstance(ent, NumericEntitlement) else f"trait {ent.trait}"
        if ent.period:
            text += f" per {ent.period}" + (f" ({ent.month_reset})" if ent.month_reset else "")
    elif isinstance(ent, CreditEntitlement):
        text = f"credit {ent.credit} x{ent.rate:g}"
    soft_limit = getattr(ent, "soft_limit", None)
    if soft_limit is not None:
        text += f", soft limit {soft_limit}"
    if ent.price_behavior:
        text += f" [{ent.price_behavior}]"
    return text


def describe_prices(prices: PricesSpec | None) -> str:
    if prices is None:
        return "none"
    parts = [
        f"{name} {getattr(prices, name)}"
        for name in ("month", "year", "one_time")
        if getattr(prices, name) is not None
    ]
    text = ", ".join(parts) + f" {prices.currency}"
    return text + (f" [{prices.behavior}]" if prices.behavior != "flat" else "")


def describe_grant(grant: CreditGrantSpec) -> str:
    text = f"{grant.amount:g} {grant.credit}"
    text += f" {grant.reset_cadence}" if grant.reset_type == "plan_period" else " once"
    if grant.rollover_percentage:
        text += f", rollover {grant.rollover_percentage:g}%"
    if grant.expiry_type:
        text += f", expiry {grant.expiry_type}"
    return text


def describe_rule(rule: RuleSpec | None, index: int) -> str:
    assert rule is not None
    name = repr(rule.name) if rule.name else f"#{index + 1}"
    extra = ""
    if rule.conditions:
        extra += f", {len(rule.conditions)} condition{'s' if len(rule.conditions) != 1 else ''}"
    if rule.condition_groups:
        extra += f", {len(rule.condition_groups)} group{'s' if len(rule.condition_groups) != 1 else ''}"
    return f"{name} ({rule.type}, priority {rule.priority}, value {fmt(rule.value)}{extra})"


def _companies(n: int) -> str:
    return f"{n} compan{'y' if n == 1 else 'ies'}"


# --------------------------------------------------------------------------- planner

_CREDIT_FIELDS = ("name", "singular_name", "plural_name", "burn_strategy", "price", "currency")
_FEATURE_FIELDS = ("name", "description", "event", "trait")
_PLAN_FIELDS = ("name", "description", "type", "icon", "trial_days", "audience_priority")
_SETTINGS_FIELDS = tuple(SettingsSpec.model_fields)


class _Planner:
    def __init__(self, session: Session, catalog: Catalog, *, prune: bool) -> None:
        self.session = session
        self.catalog = catalog
        self.prune = prune
        self.state = load_state(session, catalog_keys_hint(catalog))
        self.diff = CatalogDiff(state=self.state)
        self.version_refs = set(self.state.version_by_ref)
        self.migrated_versions: set[str] = set()  # versions whose companies move away
        self.used_versions: set[str] = set()
        self.kept_feature_ids: set[str] = set()

    def change(self, line: str, action: Action | None = None) -> None:
        self.diff.changes.append(line)
        if action is not None:
            self.diff.actions.append(action)

    def keep(self, kind: str, key: str, reason: str | None = None) -> None:
        why = reason or "use prune to delete"
        self.diff.kept.append(f"= {kind} {key}: not in the catalog file, kept ({why})")

    def run(self) -> CatalogDiff:
        self.traits()
        self.credit_types()
        self.features()
        self.plans()
        self.check_version_refs()
        self.flags()
        self.settings()
        self.leftovers()
        return self.diff

    # ---- sections
    def traits(self) -> None:
        by_name = {(t.entity_type, t.name): t for t in self.state.traits}
        for key, spec in self.catalog.traits.items():
            name = spec.name or key
            row = by_name.get((spec.entity, name))
            if row is None:
                label = key if name == key else f"{key} (name {name!r})"
                self.change(f"+ trait {label}: {spec.entity} {spec.type}", CreateTrait(key, name, spec))
            elif row.trait_type != spec.type:
                self.change(
                    f"~ trait {key}: type {row.trait_type} -> {spec.type}", UpdateTrait(row.id, spec.type)
                )

    def credit_types(self) -> None:
        for spec in self.catalog.credit_types:
            row = self.state.credit_by_key.get(spec.key)
            if row is None:
                self.change(f"+ credit_type {spec.key}", CreateCreditType(spec))
                continue
            diffs = field_changes(self.state.credit_spec(row), spec, _CREDIT_FIELDS)
            if diffs:
                self.change(f"~ credit_type {spec.key}: {'; '.join(diffs)}", UpdateCreditType(row.id, spec))

    def features(self) -> None:
        for spec in self.catalog.features:
            row = self.state.feature_by_key.get(spec.key)
            if row is None:
                detail = {"event": f" (event {spec.event})", "trait": f" (trait {spec.trait})"}.get(
                    spec.type, ""
                )
                self.change(f"+ feature {spec.key}: {spec.type}{detail}", CreateFeature(spec))
                continue
            if row.feature_type != spec.type:
                raise CatalogError(
                    f"feature {spec.key!r}: the type cannot change ({row.feature_type} -> {spec.type}); "
                    "give the feature a new key instead"
                )
            diffs = field_changes(self.state.feature_spec(row), spec, _FEATURE_FIELDS)
            if diffs:
                self.change(f"~ feature {spec.key}: {'; '.join(diffs)}", UpdateFeature(row.id, spec))

    def plans(self) -> None:
        audiences: list[tuple[str | None, SetAudience]] = []  # set once every plan version exists
        for spec in self.catalog.plans:
            row = self.state.plan_by_key.get(spec.key)
            if row is None:
                self.change(f"+ plan {spec.key}: {spec.type}, version 1 published", CreatePlan(spec))
                self.diff.actions.append(CreateVersion(spec.key, spec, 1))
                self.version_refs.add(f"{spec.key}@1")
                self.content_details(spec, {}, None, [])
                if spec.audience:
                    audiences.append((None, SetAudience(spec.key, tuple(spec.audience))))
                continue
            if row.is_custom:
                raise CatalogError(f"plan {spec.key!r}: a custom (company-scoped) plan has this key")
            on_plan = [
                c
                for v in self.state.versions.get(row.id, [])
                for c in self.state.companies_on_version.get(v.id, [])
            ]
            current = PlanSpec.model_construct(
                **{
                    name: getattr(row, attr)
                    for name, attr in (
                        ("name", "name"),
                        ("description", "description"),
                        ("type", "plan_type"),
                        ("icon", "icon"),
                        ("trial_days", "trial_days"),
                        ("audience_priority", "audience_priority"),
                    )
                }
            )
            diffs = field_changes(current, spec, _PLAN_FIELDS)
            if spec.type != row.plan_type and on_plan:
                raise CatalogError(
                    f"plan {spec.key!r}: cannot change type {row.plan_type} -> {spec.type} "
                    f"while {_companies(len(on_plan))} are assigned"
                )
            if spec.stripe_product is not None and (spec.stripe_product or None) != row.stripe_product_id:
                diffs.append(
                    f"stripe_product {fmt(row.stripe_product_id)} -> {fmt(spec.stripe_product or None)}"
                )
            if diffs:
                self.change(f"~ plan {spec.key}: {'; '.join(diffs)}", UpdatePlan(row.id, spec))
            if self.state.audience_specs(row) != spec.audience:
                line = (
                    f"~ plan {spec.key}: audience changed "
                    f"({len(row.audience or [])} -> {len(spec.audience)} conditions)"
                )
                audiences.append((line, SetAudience(spec.key, tuple(spec.audience))))
            self.plan_content(spec, row.id)
        for audience_line, action in audiences:
            if audience_line is None:
                self.diff.actions.append(action)
            else:
                self.change(audience_line, action)

    def plan_content(self, spec: PlanSpec, plan_id: str) -> None:
        state = self.state
        current = state.current_version(plan_id)
        number = state.next_version_number(plan_id)
        if current is None:
            self.change(
                f"~ plan {spec.key}: no published version -> version {number} published",
                CreateVersion(spec.key, spec, number),
            )
            self.version_refs.add(f"{spec.key}@{number}")
            return
        entitlements = state.entitlement_specs(current)
        prices = state.prices_spec(current)
        grants = state.grant_specs(current)
        what = [
            name
            for name, same in (
                ("entitlements", entitlements == spec.entitlements),
                ("prices", prices == spec.prices),
                ("credit grants", grants == spec.sorted_grants()),
            )
            if not same
        ]
        if not what:
            return
        label = f"{', '.join(what)} changed"
        companies = state.companies_on_version.get(current.id, [])
        if not companies:
            self.change(
                f"~ plan {spec.key}: {label} (version {current.version} updated in place, "
                "no companies on it)",
                UpdateVersion(current.id, spec.key, spec),
            )
        else:
            immediate = spec.migration == "immediate"
            excluded = set(spec.migration_exclude) & set(companies) if immediate else set()
            moving = [c for c in companies if c not in excluded]
            n = len(moving) if immediate else len(companies)
            tail = (
                f"{_companies(n)} moved to version {number}"
                if immediate
                else f"{_companies(n)} {'stays' if n == 1 else 'stay'} on version {current.version}"
            )
            if excluded:
                tail += f", {_companies(len(excluded))} excluded"
            self.change(
                f"~ plan {spec.key}: {label} -> version {number} (migration: {spec.migration}, {tail})",
                CreateVersion(spec.key, spec, number, replaces=current.id, migrate=immediate),
            )
            self.version_refs.add(f"{spec.key}@{number}")
            if immediate and not excluded:
                self.migrated_versions.add(current.id)
            self.diff.migrations.append(
                VersionMigration(
                    spec.key,
                    current.version,
                    number,
                    spec.migration,
                    tuple(moving if immediate else companies),
                )
            )
        self.content_details(spec, entitlements, prices, grants)

    def content_details(
        self,
        spec: PlanSpec,
        entitlements: dict[str, EntitlementSpec],
        prices: PricesSpec | None,
        grants: list[CreditGrantSpec],
    ) -> None:
        for key in sorted(set(entitlements) | set(spec.entitlements)):
            old, new = entitlements.get(key), spec.entitlements.get(key)
            if old == new:
                continue
            if old is None:
                assert new is not None
                self.change(f"    + {key}: {describe_entitlement(new)}")
            elif new is None:
                self.change(f"    - {key}: {describe_entitlement(old)}")
            else:
                self.change(f"    ~ {key}: {describe_entitlement(old)} -> {describe_entitlement(new)}")
        if prices != spec.prices:
            self.change(f"    prices: {describe_prices(prices)} -> {describe_prices(spec.prices)}")
        new_grants = spec.sorted_grants()
        if grants != new_grants:
            old_text = "; ".join(describe_grant(g) for g in grants) or "none"
            new_text = "; ".join(describe_grant(g) for g in new_grants) or "none"
            self.change(f"    credit grants: {old_text} -> {new_text}")

    def check_version_refs(self) -> None:
        refs: list[tuple[str, str]] = []
        for plan in self.catalog.plans:
            refs += [(f"plan {plan.key} audience", r) for c in plan.audience for r in c.versions or []]
        for flag in self.catalog.flags:
            for rule in flag.rules:
                conditions = [*rule.conditions, *(c for g in rule.condition_groups for c in g.conditions)]
                refs += [(f"flag {flag.key}", r) for c in conditions for r in c.versions or []]
        missing = [
            f"{where}: plan version {ref!r} does not exist"
            for where, ref in refs
            if ref not in self.version_refs
        ]
        if missing:
            raise CatalogError("; ".join(missing))

    def flags(self) -> None:
        feature_keys = {f.key for f in self.catalog.features}
        for spec in self.catalog.effective_flags():
            row = self.state.flag_by_key.get(spec.key)
            feature_key = spec.key if spec.key in feature_keys else None
            if row is None:
                rules = (
                    f" ({len(spec.rules)} rule{'s' if len(spec.rules) != 1 else ''})" if spec.rules else ""
                )
                default = ", default true" if spec.default else ""
                self.change(f"+ flag {spec.key}{rules}{default}", CreateFlag(spec, feature_key))
                continue
            current = self.state.flag_spec(row)
            diffs = field_changes(current, spec, ("name", "description", "default"))
            linked = (
                self.state.feature_by_id[row.feature_id].key
                if row.feature_id in self.state.feature_by_id
                else None
            )
            if linked != feature_key:
                diffs.append(f"feature {linked or 'none'} -> {feature_key or 'none'}")
            rules_changed = current.rules != spec.rules
            if rules_changed:
                diffs.append(f"rules changed ({len(current.rules)} -> {len(spec.rules)})")
            if diffs:
                self.change(
                    f"~ flag {spec.key}: {'; '.join(diffs)}",
                    UpdateFlag(row.id, spec, feature_key, rules_changed),
                )
            if rules_changed:
                for i in range(max(len(current.rules), len(spec.rules))):
                    old = current.rules[i] if i < len(current.rules) else None
                    new = spec.rules[i] if i < len(spec.rules) else None
                    if old == new:
                        continue
                    if old is None:
                        self.change(f"    + rule {describe_rule(new, i)}")
                    elif new is None:
                        self.change(f"    - rule {describe_rule(old, i)}")
                    else:
                        before, after = describe_rule(old, i), describe_rule(new, i)
                        self.change(f"    ~ rule {before}" + (f" -> {after}" if after != before else ""))

    def settings(self) -> None:
        spec = self.catalog.settings
        fallback = spec.fallback_plan
        if fallback is not None:
            plan_spec = next(p for p in self.catalog.plans if p.key == fallback)
            row = self.state.plan_by_key.get(fallback)
            link = (
                plan_spec.stripe_product
                if plan_spec.stripe_product is not None
                else (row.stripe_product_id if row else None)
            )
            if link:
                raise CatalogError(
                    f"settings.fallback_plan: plan {fallback!r} is linked to Stripe product "
                    f"{link!r}; a fallback plan must not be billing-linked "
                    '(set stripe_product = "" to unlink)'
                )
        current = self.state.settings_spec()
        if current is None:
            defaults = SettingsSpec()
            diffs = [
                f"{name} {fmt(getattr(spec, name))}"
                for name in _SETTINGS_FIELDS
                if getattr(spec, name) != getattr(defaults, name)
            ]
            self.change("+ settings" + (f": {'; '.join(diffs)}" if diffs else ""), SetSettings(spec))
            return
        diffs = field_changes(current, spec, _SETTINGS_FIELDS)
        if diffs:
            self.change(f"~ settings: {'; '.join(diffs)}", SetSettings(spec))

    # ---- objects in the database, not in the file
    def leftovers(self) -> None:
        """Report (or, with prune, delete) what the file lacks; never what companies still use."""
        state, catalog = self.state, self.catalog
        # versions companies will be on after this apply: their rows must keep their references
        self.used_versions = {
            vid for vid, companies in state.companies_on_version.items() if companies
        } - self.migrated_versions
        flag_keys = {f.key for f in catalog.effective_flags()}
        feature_keys = {f.key for f in catalog.features}
        dropped_features = [f for f in state.features if f.key not in feature_keys]
        dropped_feature_ids = {f.id for f in dropped_features}
        for flag in state.flags:
            if flag.key in flag_keys or flag.feature_id in dropped_feature_ids:
                continue
            if self.prune:
                self.change(f"- flag {flag.key}", DeleteFlag(flag.id))
            else:
                self.keep("flag", flag.key)
        kept_features: list[str] = []
        for feature in dropped_features:
            if not self.prune:
                self.keep("feature", feature.key)
                continue
            in_use = self.feature_in_use(feature.id)
            if in_use:
                kept_features.append(feature.id)
                self.keep("feature", feature.key, f"not pruned: {in_use}")
                continue
            own_flag = next(
                (f for f in state.flags if f.feature_id == feature.id and f.key not in flag_keys), None
            )
            self.change(
                f"- feature {feature.key}", DeleteFeature(feature.id, own_flag.id if own_flag else None)
            )
        self.kept_feature_ids = set(kept_features)

        plan_keys = {p.key for p in catalog.plans}
        for plan in state.plans:
            if plan.key in plan_keys or plan.is_custom:
                continue
            if not self.prune:
                self.keep("plan", plan.key)
                continue
            companies = sum(
                len(state.companies_on_version.get(v.id, [])) for v in state.versions.get(plan.id, [])
            )
            downgrades = self.count_pending_downgrades(plan.id)
            if companies or downgrades:
                reason = (
                    f"{_companies(companies)} assigned"
                    if companies
                    else f"{downgrades} pending scheduled downgrade(s)"
                )
                self.keep("plan", plan.key, f"not pruned: {reason}")
                continue
            self.change(f"- plan {plan.key}", DeletePlan(plan.id))

        credit_keys = {c.key for c in catalog.credit_types}
        for credit in state.credit_types:
            if credit.key in credit_keys:
                continue
            if not self.prune:
                self.keep("credit_type", credit.key)
                continue
            in_use = self.credit_in_use(credit.id)
            if in_use:
                self.keep("credit_type", credit.key, f"not pruned: {in_use}")
            else:
                self.change(f"- credit_type {credit.key}", DeleteCreditType(credit.id))
        hint = catalog_keys_hint(catalog)
        for trait in state.traits:
            if (trait.entity_type, trait.name) in hint:
                continue
            key = state.trait_keys[trait.id]
            if not self.prune:
                self.keep("trait", key)
                continue
            in_use = self.trait_in_use(trait.id)
            if in_use:
                self.keep("trait", key, f"not pruned: {in_use}")
            else:
                self.change(f"- trait {key}", DeleteTrait(trait.id))

    def count(self, model: type[Any], column: Any, values: Sequence[str]) -> int:
        if not values:
            return 0
        stmt = select(func.count()).select_from(model).where(col(column).in_(values))
        return int(self.session.exec(stmt).one())

    def count_pending_downgrades(self, plan_id: str) -> int:
        stmt = (
            select(func.count())
            .select_from(ScheduledDowngrade)
            .where(
                ScheduledDowngrade.status == "pending",
                (col(ScheduledDowngrade.from_plan_id) == plan_id)
                | (col(ScheduledDowngrade.to_plan_id) == plan_id),
            )
        )
        return int(self.session.exec(stmt).one())

    def used_by_version(self, matches: Callable[[str], bool]) -> str | None:
        """The first version companies are on whose catalog rows reference the object."""
        state = self.state
        for version_id in sorted(self.used_versions, key=state.version_key):
            if matches(version_id):
                return f"used by plan version {state.version_key(version_id)}"
        return None

    def used_by_kept_flag(self, matches: Callable[[Condition], bool]) -> str | None:
        state = self.state
        for flag in state.flags:
            if flag.feature_id not in self.kept_feature_ids:
                continue
            for rule in state.rules.get(flag.id, []):
                if any(matches(c) for c in state.conditions.get(rule.id, [])):
                    return f"used by flag {flag.key}"
        return None

    def feature_in_use(self, feature_id: str) -> str | None:
        state = self.state
        reason = self.used_by_version(
            lambda vid: any(e.feature_id == feature_id for e in state.entitlements.get(vid, []))
        )
        if reason:
            return reason
        overrides = self.count(CompanyOverride, CompanyOverride.feature_id, [feature_id])
        if overrides:
            return f"{overrides} company override{'s' if overrides != 1 else ''}"
        return None

    def credit_in_use(self, credit_id: str) -> str | None:
        state = self.state
        if self.count(CreditGrant, CreditGrant.credit_type_id, [credit_id]) or self.count(
            CreditLedgerEntry, CreditLedgerEntry.credit_type_id, [credit_id]
        ):
            return "companies hold or used these credits"
        if self.count(CompanyOverride, CompanyOverride.value_credit_id, [credit_id]):
            return "used by company overrides"
        return self.used_by_version(
            lambda vid: (
                any(e.value_credit_id == credit_id for e in state.entitlements.get(vid, []))
                or any(g.credit_type_id == credit_id for g in state.grants.get(vid, []))
            )
        ) or self.used_by_kept_flag(lambda c: c.credit_id == credit_id)

    def trait_in_use(self, trait_id: str) -> str | None:
        state = self.state
        if self.count(CompanyTrait, CompanyTrait.trait_definition_id, [trait_id]) or self.count(
            UserTrait, UserTrait.trait_definition_id, [trait_id]
        ):
            return "companies or users have values for it"
        if self.count(CompanyOverride, CompanyOverride.value_trait_id, [trait_id]):
            return "used by company overrides"
        for feature in state.features:
            if feature.id in self.kept_feature_ids and feature.trait_id == trait_id:
                return f"used by feature {feature.key}"
        return self.used_by_version(
            lambda vid: any(e.value_trait_id == trait_id for e in state.entitlements.get(vid, []))
        ) or self.used_by_kept_flag(
            lambda c: trait_id in (c.trait_definition_id, c.comparison_trait_definition_id)
        )


def compute_diff(session: Session, catalog: Catalog, *, prune: bool = False) -> CatalogDiff:
    """The changes (and actions) that would make the database match ``catalog``."""
    return _Planner(session, catalog, prune=prune).run()


def plan_changes(session: Session, catalog: Catalog, *, prune: bool = False) -> CatalogDiff:
    """What :func:`~syncd.catalog.apply_catalog` would change; reads only, writes nothing."""
    return compute_diff(session, catalog, prune=prune)


__all__ = ["Action", "CatalogDiff", "VersionMigration", "compute_diff", "plan_changes"]
