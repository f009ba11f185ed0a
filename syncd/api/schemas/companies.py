"""Companies, company traits and users."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AwareDatetime

from .base import Body, ListQuery, Query

Scalar = str | int | float | bool


class UpsertCompanyBody(Body):
    keys: dict[str, str]
    id: str | None = None
    name: str | None = None
    traits: dict[str, Any] | None = None
    last_seen_at: AwareDatetime | None = None
    remove_keys: list[str] | None = None
    prevent_key_remap: bool | None = None
    update_only: bool | None = None
    base_plan_id: str | None = None
    base_plan_price_id: str | None = None


class UpsertCompanyTraitBody(Body):
    keys: dict[str, str]
    trait: str
    set: Scalar | None = None
    incr: int | None = None
    update_only: bool | None = None


class ListCompaniesQuery(ListQuery):
    ids: list[str] | None = None
    plan_id: str | None = None
    plan_ids: list[str] | None = None
    plan_version_id: str | None = None
    plan_version_ids: list[str] | None = None
    q: str | None = None
    without_plan: bool | None = None
    with_subscription: bool | None = None
    without_subscription: bool | None = None
    has_scheduled_downgrade: bool | None = None
    with_entitlement_for: str | None = None
    without_feature_override_for: str | None = None
    credit_type_ids: list[str] | None = None
    monetized_subscriptions: bool | None = None
    plan_version_unpublished: bool | None = None
    sort_order_column: str | None = None
    sort_order_direction: str | None = None
    subscription_statuses: list[str] | None = None
    subscription_types: list[str] | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = (
        "credit_type_ids",
        "monetized_subscriptions",
        "plan_version_unpublished",
        "sort_order_column",
        "sort_order_direction",
        "subscription_statuses",
        "subscription_types",
    )


class DeleteCompanyQuery(Query):
    cancel_subscription: bool | None = None
    prorate: bool | None = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("cancel_subscription",)


class UpsertUserBody(Body):
    keys: dict[str, str]
    id: str | None = None
    name: str | None = None
    traits: dict[str, Any] | None = None
    last_seen_at: AwareDatetime | None = None
    remove_keys: list[str] | None = None
    update_only: bool | None = None
    company: dict[str, str] | None = None
    companies: list[dict[str, str]] | None = None
    company_id: str | None = None
    company_ids: list[str] | None = None


class ListUsersQuery(ListQuery):
    company_id: str | None = None
    ids: list[str] | None = None
    plan_id: str | None = None
    q: str | None = None
