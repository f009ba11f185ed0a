"""Company credit grants."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime

from .base import Body, ListQuery


class GrantCreditsBody(Body):
    company_id: str
    credit_id: str
    quantity: int
    reason: str
    expires_at: AwareDatetime | None = None
    # bundles, currencies and renewals are not supported yet
    billing_periods_count: int | None = None
    credit_bundle_id: str | None = None
    currency: str | None = None
    expiry_type: str | None = None
    expiry_unit: str | None = None
    expiry_unit_count: int | None = None
    renewal_enabled: bool | None = None
    renewal_period: str | None = None
    UNSUPPORTED: ClassVar[tuple[str, ...]] = (
        "billing_periods_count",
        "credit_bundle_id",
        "expiry_unit",
        "expiry_unit_count",
        "renewal_enabled",
        "renewal_period",
    )


class ZeroOutGrantBody(Body):
    reason: str | None = None


class ListCompanyGrantsQuery(ListQuery):
    company_id: str
    order: str | None = None
    dir: str | None = None
