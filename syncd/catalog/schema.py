"""The catalog file: pydantic models, parsing and cross-reference validation.

A catalog file (TOML or YAML, same structure) declares traits, credit types, features, flags,
plans and add-ons and the catalog settings. Every model forbids unknown fields and validates
strictly (no silent ``"1000"`` -> ``1000`` coercion). Errors name the path of the bad field,
e.g. ``plans[1].entitlements.api-calls.value: Field required``.

Objects reference each other by key: entitlements by feature key, conditions by plan key,
trait key and credit key, settings by plan key. :func:`validate_references` checks them all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from syncd.exceptions import CatalogError

FeatureType = Literal["boolean", "event", "trait"]
TraitEntity = Literal["company", "user"]
TraitType = Literal["boolean", "number", "string", "date"]
PlanType = Literal["plan", "add_on"]
Migration = Literal["leave", "immediate"]
MetricPeriod = Literal["all_time", "current_day", "current_week", "current_month"]
MonthReset = Literal["first_of_month", "billing_cycle"]
EntitlementPriceBehavior = Literal["pay_in_advance", "pay_as_you_go", "overage", "tier", "credit_burndown"]
PriceBehavior = Literal["flat", "pay_in_advance", "pay_as_you_go", "overage", "tier", "credit_burndown"]
RuleType = Literal["global_override", "standard", "default"]
ConditionType = Literal[
    "company", "user", "plan", "base_plan", "plan_version", "billing_product", "trait", "metric", "credit"
]
Operator = Literal["eq", "ne", "gt", "lt", "gte", "lte", "is_empty", "not_empty"]
DowngradeBehavior = Literal["end_of_billing_period", "none"]
ProrationBehavior = Literal["create_prorations", "invoice_immediately", "always_invoice", "none"]
BurnStrategy = Literal[
    "plan_first_then_credit_bundles_first_in_first_out",
    "first_in_first_out",
    "last_in_first_out",
    "expiration_priority",
]
ResetType = Literal["plan_period", "no_reset"]
ResetCadence = Literal["daily", "weekly", "monthly", "quarterly", "yearly"]
ResetStart = Literal["billing_period", "first_of_month"]
ExpiryType = Literal[
    "duration", "end_of_billing_period", "end_of_next_billing_period", "end_of_trial", "no_expiry"
]
ExpiryUnit = Literal["days", "billing_periods"]

_T = TypeVar("_T")

#: Rule evaluation order of the rule types a catalog may declare (the engine's order).
RULE_TYPE_ORDER: dict[str, int] = {"global_override": 0, "standard": 1, "default": 2}
#: Trait types -> the engine's comparable types.
COMPARABLE_TYPES: dict[str, str] = {"boolean": "bool", "number": "int", "string": "string", "date": "date"}

_KEY_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
Key = Annotated[str, Field(min_length=1, max_length=255, pattern=_KEY_RE)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Description = Annotated[str, Field(max_length=2048)]
Currency = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]
Amount = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- conditions


class ConditionSpec(_Model):
    """One rule or audience condition; which fields apply depends on ``type``.

    ``company``/``user``/``billing_product`` take ``ids`` (resource ids as stored), ``plan`` and
    ``base_plan`` take ``plans`` (plan keys), ``plan_version`` takes ``versions`` (``"pro@2"``),
    ``trait`` takes ``trait`` + ``value`` (or ``comparison_trait``), ``metric`` takes ``event`` +
    ``value`` (+ ``period``, ``month_reset``, ``comparison_trait``), ``credit`` takes ``credit``
    (+ ``rate``).
    """

    type: ConditionType
    operator: Operator = "eq"
    ids: list[str] | None = None
    plans: list[str] | None = None
    versions: list[str] | None = None
    trait: str | None = None
    comparison_trait: str | None = None
    value: str | bool | int | float | dt.datetime | dt.date | None = None
    event: str | None = None
    period: MetricPeriod | None = None
    month_reset: MonthReset | None = None
    credit: str | None = None
    rate: float | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> ConditionSpec:
        for name in ("ids", "plans", "versions"):
            if getattr(self, name) == []:
                setattr(self, name, None)
        allowed = {
            "company": {"ids"},
            "user": {"ids"},
            "billing_product": {"ids"},
            "plan": {"plans"},
            "base_plan": {"plans"},
            "plan_version": {"versions"},
            "trait": {"trait", "value", "comparison_trait"},
            "metric": {"event", "value", "period", "month_reset", "comparison_trait"},
            "credit": {"credit", "rate"},
        }[self.type]
        optional = {
            "ids",
            "plans",
            "versions",
            "trait",
            "comparison_trait",
            "value",
            "event",
            "period",
            "month_reset",
            "credit",
            "rate",
        }
        extra = sorted(f for f in optional - allowed if getattr(self, f) is not None)
        if extra:
            raise ValueError(f"{', '.join(extra)} not allowed in a {self.type!r} condition")
        empty_ok = self.operator in ("is_empty", "not_empty")
        if self.type in ("company", "user", "billing_product") and not self.ids:
            raise ValueError(f"a {self.type!r} condition needs 'ids'")
        if self.type == "plan_version" and not self.versions:
            raise ValueError("a 'plan_version' condition needs 'versions' (e.g. [\"pro@1\"])")
        if self.type == "plan" and not self.plans:
            raise ValueError("a 'plan' condition needs 'plans'")
        if self.type == "base_plan" and not self.plans and not empty_ok:
            raise ValueError(
                "a 'base_plan' condition needs 'plans' unless the operator is is_empty/not_empty"
            )
        if self.type == "trait":
            if not self.trait:
                raise ValueError("a 'trait' condition needs 'trait'")
            self.value = _trait_value(self.value)
        if self.type == "metric":
            if not self.event:
                raise ValueError("a 'metric' condition needs 'event'")
            if self.value is None and self.comparison_trait is None:
                raise ValueError("a 'metric' condition needs 'value' (or 'comparison_trait')")
            if self.value is None:
                self.value = 0
            if isinstance(self.value, bool) or not isinstance(self.value, int):
                raise ValueError("'value' of a 'metric' condition must be an integer")
            _check_month_reset(self.period, self.month_reset)
            if self.period == "current_month" and self.month_reset is None:
                self.month_reset = "first_of_month"
        if self.type == "credit":
            if not self.credit:
                raise ValueError("a 'credit' condition needs 'credit'")
            if self.rate is not None and self.rate <= 0:
                raise ValueError("'rate' must be > 0")
        return self


def _trait_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _check_month_reset(period: str | None, month_reset: str | None) -> None:
    if month_reset is not None and period != "current_month":
        raise ValueError("'month_reset' only applies to period 'current_month'")


class ConditionGroupSpec(_Model):
    """Conditions OR-ed together (groups are AND-ed with each other and the rule's conditions)."""

    conditions: list[ConditionSpec]

    @field_validator("conditions")
    @classmethod
    def _not_empty(cls, value: list[ConditionSpec]) -> list[ConditionSpec]:
        if not value:
            raise ValueError("an empty condition group never matches; remove it or add conditions")
        return value


class RuleSpec(_Model):
    type: RuleType = "standard"
    name: Annotated[str, Field(max_length=255)] = ""
    priority: int = 0
    value: bool = True
    conditions: list[ConditionSpec] = Field(default_factory=list)
    condition_groups: list[ConditionGroupSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_conditions_on_unconditional(self) -> RuleSpec:
        if self.type != "standard" and (self.conditions or self.condition_groups):
            raise ValueError(f"a {self.type!r} rule always matches; it takes no conditions")
        return self


def canonical_rules(rules: Iterable[RuleSpec]) -> list[RuleSpec]:
    """Rules in evaluation order: global overrides, standard by priority, default (stable)."""
    return sorted(rules, key=lambda r: (RULE_TYPE_ORDER[r.type], r.priority))


# --------------------------------------------------------------------------- definitions


class TraitSpec(_Model):
    """A trait definition. The table key is how the file refers to it; ``name`` defaults to it."""

    entity: TraitEntity = "company"
    type: TraitType = "string"
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None


class CreditTypeSpec(_Model):
    key: Key
    name: Name
    singular_name: Name | None = None
    plural_name: Name | None = None
    burn_strategy: BurnStrategy = "plan_first_then_credit_bundles_first_in_first_out"
    price: Amount | None = None  # cost basis per credit, minor units
    currency: Currency = "usd"

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class FeatureSpec(_Model):
    key: Key
    name: Name
    description: Description = ""
    type: FeatureType = "boolean"
    event: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    trait: str | None = None

    @model_validator(mode="after")
    def _check_type(self) -> FeatureSpec:
        if self.type == "event" and not self.event:
            raise ValueError("an 'event' feature needs 'event' (the tracked event name)")
        if self.type != "event" and self.event is not None:
            raise ValueError(f"'event' only applies to event features, not {self.type!r}")
        if self.type == "trait" and not self.trait:
            raise ValueError("a 'trait' feature needs 'trait' (the usage trait, e.g. seats_used)")
        if self.type != "trait" and self.trait is not None:
            raise ValueError(f"'trait' only applies to trait features, not {self.type!r}")
        return self


class FlagSpec(_Model):
    """A flag. A flag whose key is a feature key configures that feature's flag.

    ``name`` and ``description`` default to the feature's (or the key for a standalone flag).
    """

    key: Key
    name: Name | None = None
    description: Description | None = None
    default: bool = False
    rules: list[RuleSpec] = Field(default_factory=list)


# --------------------------------------------------------------------------- plans


class _EntitlementBase(_Model):
    price_behavior: EntitlementPriceBehavior | None = None


class BooleanEntitlement(_EntitlementBase):
    type: Literal["boolean"]
    value: bool = True


class UnlimitedEntitlement(_EntitlementBase):
    type: Literal["unlimited"]
    soft_limit: Annotated[int, Field(ge=0)] | None = None


class _Metered(_EntitlementBase):
    period: MetricPeriod | None = None
    month_reset: MonthReset | None = None
    soft_limit: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _month_reset(self) -> _Metered:
        _check_month_reset(self.period, self.month_reset)
        if self.period == "current_month" and self.month_reset is None:
            self.month_reset = "first_of_month"
        return self


class NumericEntitlement(_Metered):
    type: Literal["numeric"]
    value: Annotated[int, Field(ge=0)]


class TraitEntitlement(_Metered):
    """The allocation is read from a company trait (e.g. ``seats_allocated``)."""

    type: Literal["trait"]
    trait: str


class CreditEntitlement(_EntitlementBase):
    type: Literal["credit"]
    credit: str
    rate: Annotated[float, Field(gt=0)] = 1.0


Entitlement = Annotated[
    BooleanEntitlement | UnlimitedEntitlement | NumericEntitlement | TraitEntitlement | CreditEntitlement,
    Field(discriminator="type"),
]
ENTITLEMENT_TYPES = ("boolean", "unlimited", "numeric", "trait", "credit")


class PricesSpec(_Model):
    """The prices of the plan's current version, in minor units (cents)."""

    currency: Currency = "usd"
    month: Amount | None = None
    year: Amount | None = None
    one_time: Amount | None = None
    behavior: PriceBehavior = "flat"

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    def is_empty(self) -> bool:
        return self.month is None and self.year is None and self.one_time is None

    def is_free(self) -> bool:
        return not any((self.month, self.year, self.one_time))


class CreditGrantSpec(_Model):
    """Credits the plan grants (per reset, or once with ``reset_type = "no_reset"``)."""

    credit: str
    amount: Annotated[float, Field(gt=0)]
    reset_type: ResetType = "plan_period"
    reset_cadence: ResetCadence | None = None
    reset_start: ResetStart = "billing_period"
    rollover_percentage: Annotated[float, Field(ge=0, le=100)] = 0.0
    expiry_type: ExpiryType | None = None
    expiry_unit: ExpiryUnit | None = None
    expiry_unit_count: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> CreditGrantSpec:
        if self.reset_type == "plan_period" and self.reset_cadence is None:
            self.reset_cadence = "monthly"
        if self.reset_type == "no_reset" and self.reset_cadence is not None:
            raise ValueError("'reset_cadence' does not apply with reset_type 'no_reset'")
        if self.rollover_percentage and self.reset_cadence not in ("monthly", "quarterly", "yearly"):
            raise ValueError("'rollover_percentage' needs a monthly, quarterly or yearly reset")
        if self.expiry_type == "duration":
            if self.expiry_unit is None or self.expiry_unit_count is None:
                raise ValueError("expiry_type 'duration' needs 'expiry_unit' and 'expiry_unit_count'")
        elif self.expiry_unit is not None or self.expiry_unit_count is not None:
            raise ValueError("'expiry_unit'/'expiry_unit_count' only apply to expiry_type 'duration'")
        return self

    def sort_key(self) -> str:
        return self.model_dump_json()


class PlanSpec(_Model):
    key: Key
    name: Name
    description: Description = ""
    type: PlanType = "plan"
    icon: Annotated[str, Field(max_length=64)] | None = None
    trial_days: Annotated[int, Field(ge=0)] | None = None
    stripe_product: Annotated[str, Field(max_length=255)] | None = None  # None: keep, "": unlink
    migration: Migration = "leave"
    # With migration "immediate": companies (by id) that stay on their current version.
    migration_exclude: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list)
    prices: PricesSpec | None = None
    entitlements: dict[str, Entitlement] = Field(default_factory=dict)
    credit_grants: list[CreditGrantSpec] = Field(default_factory=list)
    audience: list[ConditionSpec] = Field(default_factory=list)
    audience_priority: int = 0

    @model_validator(mode="after")
    def _canonical(self) -> PlanSpec:
        if self.trial_days == 0:
            self.trial_days = None
        if self.prices is not None and self.prices.is_empty():
            self.prices = None
        if self.type == "add_on" and self.trial_days is not None:
            raise ValueError("'trial_days' applies to base plans, not add-ons")
        if self.type == "plan" and self.prices is not None and self.prices.one_time is not None:
            raise ValueError("'prices.one_time' applies to add-ons only (base plans bill month/year)")
        return self

    def sorted_grants(self) -> list[CreditGrantSpec]:
        return sorted(self.credit_grants, key=CreditGrantSpec.sort_key)


class SettingsSpec(_Model):
    initial_plan: str | None = None
    fallback_plan: str | None = None
    trial_expiry_plan: str | None = None
    trial_payment_method_required: bool = False
    prevent_downgrades_when_over_limit: bool = True
    prevent_self_service_downgrade: bool = False
    self_service_downgrade_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    scheduled_downgrade_behavior: DowngradeBehavior = "none"
    proration_behavior: ProrationBehavior = "create_prorations"


class Catalog(_Model):
    """A whole catalog file."""

    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    traits: dict[Annotated[str, Field(min_length=1, max_length=255)], TraitSpec] = Field(default_factory=dict)
    credit_types: list[CreditTypeSpec] = Field(default_factory=list)
    features: list[FeatureSpec] = Field(default_factory=list)
    flags: list[FlagSpec] = Field(default_factory=list)
    plans: list[PlanSpec] = Field(default_factory=list)

    def trait_name(self, key: str) -> str:
        spec = self.traits[key]
        return spec.name or key

    def effective_flags(self) -> list[FlagSpec]:
        """Every flag the catalog defines: one per feature (configured or default) plus standalone ones."""
        configured = {f.key: f for f in self.flags}
        out: list[FlagSpec] = []
        for feature in self.features:
            flag = configured.pop(feature.key, None)
            out.append(
                FlagSpec(
                    key=feature.key,
                    name=(flag.name if flag and flag.name is not None else feature.name),
                    description=(
                        flag.description if flag and flag.description is not None else feature.description
                    ),
                    default=flag.default if flag else False,
                    rules=canonical_rules(flag.rules) if flag else [],
                )
            )
        for flag in configured.values():
            out.append(
                FlagSpec(
                    key=flag.key,
                    name=flag.name or flag.key,
                    description=flag.description or "",
                    default=flag.default,
                    rules=canonical_rules(flag.rules),
                )
            )
        return out


# --------------------------------------------------------------------------- errors and parsing


class CatalogValidationError(CatalogError):
    """A catalog file failed validation; ``errors`` lists ``"path: problem"`` lines."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        where = f" {source}" if source else ""
        count = len(self.errors)
        head = f"invalid catalog{where} ({count} error{'s' if count != 1 else ''}):"
        super().__init__("\n  ".join([head, *self.errors]))


def format_loc(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a path: ``plans[1].entitlements.api-calls.value``.

    The discriminator tag pydantic inserts after an entitlement key (``numeric``) is dropped.
    """
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if i >= 2 and loc[i - 2] == "entitlements" and item in ENTITLEMENT_TYPES:
            continue
        parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(catalog)"


def _format_pydantic(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{format_loc(err['loc'])}: {msg}")
    return lines


def parse_catalog(data: Mapping[str, Any], *, source: str | None = None) -> Catalog:
    """Validate a parsed catalog document (fields and references); raise CatalogValidationError."""
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogValidationError(_format_pydantic(exc), source) from None
    errors = validate_references(catalog)
    if errors:
        raise CatalogValidationError(errors, source)
    return catalog


def _dupes(keys: Iterable[_T]) -> set[_T]:
    seen: set[_T] = set()
    dupes: set[_T] = set()
    for key in keys:
        (dupes if key in seen else seen).add(key)
    return dupes


def validate_references(catalog: Catalog) -> list[str]:
    """Check every cross reference and business rule; returns ``"path: problem"`` lines."""
    errors: list[str] = []
    err = errors.append

    traits = catalog.traits
    trait_names = _dupes((spec.entity, spec.name or key) for key, spec in traits.items())
    for key, spec in traits.items():
        if (spec.entity, spec.name or key) in trait_names:
            err(f"traits.{key}: {spec.entity} trait {spec.name or key!r} is defined twice")
    credits = {c.key for c in catalog.credit_types}
    features = {f.key: f for f in catalog.features}
    plans = {p.key: p for p in catalog.plans}

    for label, keys in (
        ("credit_types", [c.key for c in catalog.credit_types]),
        ("features", [f.key for f in catalog.features]),
        ("flags", [f.key for f in catalog.flags]),
        ("plans", [p.key for p in catalog.plans]),
    ):
        for i, key in enumerate(keys):
            if keys.index(key) != i:
                err(f"{label}[{i}].key: duplicate key {key!r} (also {label}[{keys.index(key)}])")

    def check_trait(path: str, key: str | None, *, number: bool = False) -> None:
        if key is None:
            return
        if key not in traits:
            err(f"{path}: unknown trait {key!r} (define it under [traits])")
        elif number and traits[key].type != "number":
            err(f"{path}: trait {key!r} must have type 'number', not {traits[key].type!r}")

    def check_conditions(path: str, conditions: Sequence[ConditionSpec]) -> None:
        for j, cond in enumerate(conditions):
            cpath = f"{path}[{j}]"
            for plan_key in cond.plans or []:
                if plan_key not in plans:
                    err(f"{cpath}.plans: unknown plan {plan_key!r}")
            for ref in cond.versions or []:
                plan_key, sep, number = ref.rpartition("@")
                if not sep or not number.isdigit():
                    err(f"{cpath}.versions: {ref!r} is not of the form 'plan-key@N'")
                elif plan_key not in plans:
                    err(f"{cpath}.versions: unknown plan {plan_key!r}")
            check_trait(f"{cpath}.trait", cond.trait)
            check_trait(f"{cpath}.comparison_trait", cond.comparison_trait)
            if cond.credit is not None and cond.credit not in credits:
                err(f"{cpath}.credit: unknown credit type {cond.credit!r}")

    for i, feature in enumerate(catalog.features):
        check_trait(f"features[{i}].trait", feature.trait, number=True)

    for i, flag in enumerate(catalog.flags):
        for r, rule in enumerate(flag.rules):
            check_conditions(f"flags[{i}].rules[{r}].conditions", rule.conditions)
            for g, group in enumerate(rule.condition_groups):
                check_conditions(f"flags[{i}].rules[{r}].condition_groups[{g}].conditions", group.conditions)
        if flag.key not in features and flag.name is None:
            err(f"flags[{i}].name: a flag without a feature of the same key needs a name")

    for i, plan in enumerate(catalog.plans):
        path = f"plans[{i}]"
        check_conditions(f"{path}.audience", plan.audience)
        for g, grant in enumerate(plan.credit_grants):
            if grant.credit not in credits:
                err(f"{path}.credit_grants[{g}].credit: unknown credit type {grant.credit!r}")
        for feature_key, ent in plan.entitlements.items():
            epath = f"{path}.entitlements.{feature_key}"
            entitled = features.get(feature_key)
            if entitled is None:
                err(f"{epath}: unknown feature {feature_key!r}")
                continue
            err_msg = _entitlement_problem(entitled, ent)
            if err_msg:
                err(f"{epath}: {err_msg}")
            if isinstance(ent, TraitEntitlement):
                check_trait(f"{epath}.trait", ent.trait, number=True)
            if isinstance(ent, CreditEntitlement) and ent.credit not in credits:
                err(f"{epath}.credit: unknown credit type {ent.credit!r}")

    settings = catalog.settings
    for field in ("initial_plan", "fallback_plan", "trial_expiry_plan"):
        key = getattr(settings, field)
        if key is None:
            continue
        target = plans.get(key)
        if target is None:
            err(f"settings.{field}: unknown plan {key!r}")
            continue
        if target.type != "plan":
            err(f"settings.{field}: {key!r} is an add-on; it must be a base plan")
        free = target.prices is None or target.prices.is_free()
        if field == "fallback_plan" and (target.stripe_product or not free):
            err(f"settings.fallback_plan: {key!r} must not be billing-linked (no stripe_product, no price)")
        if field == "trial_expiry_plan":
            if not free:
                err(f"settings.trial_expiry_plan: {key!r} must be free (no paid price)")
            if target.trial_days:
                err(f"settings.trial_expiry_plan: {key!r} must not offer a trial")
        if (
            field == "initial_plan"
            and not free
            and not (target.trial_days and not settings.trial_payment_method_required)
        ):
            err(
                f"settings.initial_plan: {key!r} would require a payment method; use a free plan "
                "or a trial plan with trial_payment_method_required = false"
            )
    return errors


def _entitlement_problem(feature: FeatureSpec, ent: Any) -> str | None:
    """Why ``ent`` cannot entitle ``feature`` (None when it can)."""
    kind = feature.type
    if isinstance(ent, BooleanEntitlement) and kind != "boolean":
        return (
            f"boolean entitlement on {kind} feature {feature.key!r}; use numeric, unlimited, trait or credit"
        )
    if isinstance(ent, UnlimitedEntitlement | NumericEntitlement | TraitEntitlement) and kind == "boolean":
        return f'{ent.type} entitlement on boolean feature {feature.key!r}; use type = "boolean"'
    if isinstance(ent, CreditEntitlement) and kind != "event":
        return f"credit entitlement on {kind} feature {feature.key!r}; credits are burned by event features"
    if isinstance(ent, NumericEntitlement | TraitEntitlement) and kind == "trait" and ent.period is not None:
        return "'period' only applies to event features (trait features compare trait values)"
    behavior = ent.price_behavior
    if behavior == "pay_in_advance" and ent.type != "trait":
        return "price_behavior 'pay_in_advance' needs a trait entitlement (the purchased quantity)"
    if behavior == "credit_burndown" and ent.type != "credit":
        return "price_behavior 'credit_burndown' needs a credit entitlement"
    if behavior in ("pay_as_you_go", "overage", "tier") and ent.type not in ("unlimited", "numeric"):
        return f"price_behavior {behavior!r} needs an unlimited or numeric entitlement"
    return None


def catalog_keys_hint(catalog: Catalog) -> dict[tuple[str, str], str]:
    """(entity, trait name) -> the key the catalog uses for it."""
    return {(spec.entity, spec.name or key): key for key, spec in catalog.traits.items()}
