"""Plan entitlements and company overrides."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AwareDatetime

from ...services.inputs import EntitlementValue
from .base import Body, ListQuery


class _Value(Body):
    value_type: str
    value_bool: bool | None = None
    value_numeric: int | None = None
    value_trait_id: str | None = None
    value_credit_id: str | None = None
    credit_consumption_rate: float | None = None
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    quantity_rates: dict[str, float] | None = None

    def to_value(self) -> EntitlementValue:
        return EntitlementValue(
            value_type=self.value_type,
            value_bool=self.value_bool,
            value_numeric=self.value_numeric,
            value_trait_id=self.value_trait_id,
            value_credit_id=self.value_credit_id,
            credit_consumption_rate=self.credit_consumption_rate,
            metric_period=self.metric_period,
            metric_period_month_reset=self.metric_period_month_reset,
            soft_limit=getattr(self, "soft_limit", None),
        )


class _PlanEntitlementFields(_Value):
    soft_limit: int | None = None
    price_behavior: str | None = None
    # usage-based billing (metered prices, tiers) is not supported yet
    billing_product_id: str | None = None
    billing_threshold: int | None = None
    currency: str | None = None
    currency_prices: list[Any] | None = None
    monthly_metered_price_id: str | None = None
    monthly_price_tiers: list[Any] | None = None
    monthly_unit_price: int | None = None
    monthly_unit_price_decimal: str | None = None
    quarterly_metered_price_id: str | None = None
    quarterly_price_tiers: list[Any] | None = None
    quarterly_unit_price: int | None = None
    quarterly_unit_price_decimal: str | None = None
    yearly_metered_price_id: str | None = None
    yearly_price_tiers: list[Any] | None = None
    yearly_unit_price: int | None = None
    yearly_unit_price_decimal: str | None = None
    overage_billing_cadence: str | None = None
    overage_billing_product_id: str | None = None
    overage_invoice_anchor: str | None = None
    price_tiers: list[Any] | None = None
    tier_mode: str | None = None
    usage_quantity: int | None = None
    warning_tiers: list[Any] | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = (
        "billing_product_id",
        "billing_threshold",
        "currency_prices",
        "monthly_metered_price_id",
        "monthly_price_tiers",
        "monthly_unit_price",
        "monthly_unit_price_decimal",
        "quarterly_metered_price_id",
        "quarterly_price_tiers",
        "quarterly_unit_price",
        "quarterly_unit_price_decimal",
        "yearly_metered_price_id",
        "yearly_price_tiers",
        "yearly_unit_price",
        "yearly_unit_price_decimal",
        "overage_billing_cadence",
        "overage_billing_product_id",
        "overage_invoice_anchor",
        "price_tiers",
        "tier_mode",
        "usage_quantity",
        "warning_tiers",
        "quantity_rates",
    )


class CreatePlanEntitlementBody(_PlanEntitlementFields):
    plan_id: str
    feature_id: str
    plan_version_id: str | None = None


class UpdatePlanEntitlementBody(_PlanEntitlementFields):
    pass


class ListPlanEntitlementsQuery(ListQuery):
    ids: list[str] | None = None
    feature_id: str | None = None
    feature_ids: list[str] | None = None
    plan_id: str | None = None
    plan_ids: list[str] | None = None
    plan_version_id: str | None = None
    plan_version_ids: list[str] | None = None
    q: str | None = None
    with_metered_products: bool | None = None


class _OverrideFields(_Value):
    expiration_date: AwareDatetime | None = None
    note: str | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("quantity_rates",)


class CreateCompanyOverrideBody(_OverrideFields):
    company_id: str
    feature_id: str


class UpdateCompanyOverrideBody(_OverrideFields):
    pass


class ListCompanyOverridesQuery(ListQuery):
    ids: list[str] | None = None
    company_id: str | None = None
    company_ids: list[str] | None = None
    feature_id: str | None = None
    feature_ids: list[str] | None = None
    without_expired: bool | None = None
    q: str | None = None
