"""Plans, company plans and the Stripe billing link."""

from __future__ import annotations

from typing import Any, ClassVar

from ...services.inputs import BillingLink
from .base import Body, ListQuery, Query


class CreatePlanBody(Body):
    name: str
    plan_type: str
    description: str | None = None
    icon: str | None = None


class UpdatePlanBody(Body):
    name: str
    description: str | None = None
    icon: str | None = None


class GetPlanQuery(Query):
    plan_version_id: str | None = None


class ListPlansQuery(ListQuery):
    ids: list[str] | None = None
    plan_type: str | None = None
    q: str | None = None
    company_id: str | None = None
    has_product_id: bool | None = None
    with_published_version: bool | None = None
    with_entitlements: bool | None = None
    without_entitlement_for: str | None = None
    exclude_unused: bool | None = None
    for_initial_plan: bool | None = None
    for_fallback_plan: bool | None = None
    for_trial_expiry_plan: bool | None = None
    company_scoped_only: bool | None = None
    exclude_company_scoped: bool | None = None
    scoped_to_company_id: str | None = None
    include_draft_versions: bool | None = None
    without_entitlement_for_include_drafts: bool | None = None
    without_paid_product_id: bool | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("without_paid_product_id",)


class UpdateCompanyPlansBody(Body):
    add_on_ids: list[str]
    base_plan_id: str | None = None


class UpsertBillingProductPlanBody(Body):
    charge_type: str
    is_trialable: bool
    billing_product_id: str | None = None
    billing_strategy: str | None = None
    currency: str | None = None
    currency_prices: list[dict[str, Any]] | None = None
    monthly_price: int | None = None
    monthly_price_id: str | None = None
    yearly_price: int | None = None
    yearly_price_id: str | None = None
    one_time_price: int | None = None
    one_time_price_id: str | None = None
    quarterly_price: int | None = None
    quarterly_price_id: str | None = None
    trial_days: int | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("currency_prices", "quarterly_price", "quarterly_price_id")

    def to_input(self) -> BillingLink:
        return BillingLink(
            billing_product_id=self.billing_product_id,
            charge_type=self.charge_type,
            is_trialable=self.is_trialable,
            trial_days=self.trial_days,
            currency=(self.currency or "usd").lower(),
            monthly_price=self.monthly_price,
            monthly_price_id=self.monthly_price_id,
            yearly_price=self.yearly_price,
            yearly_price_id=self.yearly_price_id,
            one_time_price=self.one_time_price,
            one_time_price_id=self.one_time_price_id,
        )
