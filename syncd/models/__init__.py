"""All table models. Importing this package completes ``metadata`` (Alembic relies on it)."""

from __future__ import annotations

from sqlmodel import SQLModel

from .assignments import CompanyOverride, CompanyPlan, OverrideNote, PlanChange, ScheduledDowngrade
from .base import new_id, utcnow
from .catalog import (
    CatalogSettingsRow,
    CatalogStamp,
    Condition,
    ConditionGroup,
    Feature,
    Flag,
    Plan,
    PlanEntitlement,
    PlanPrice,
    PlanVersion,
    Rule,
)
from .companies import (
    Company,
    CompanyKey,
    CompanyMembership,
    CompanyTrait,
    TraitDefinition,
    User,
    UserKey,
    UserTrait,
)
from .ops import (
    ApiKey,
    AuditLog,
    ChangeLog,
    InboxEvent,
    Lease,
    OutboxMessage,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookLimitState,
)
from .scheduling import BoundaryMark, SchedulerRun
from .stripe_mirror import (
    StripeCustomer,
    StripeInvoice,
    StripeMeter,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionSchedule,
    SyncCursor,
)
from .stripe_push import StripeMeterBatch
from .usage import (
    CompanyMetric,
    CreditGrant,
    CreditLedgerEntry,
    CreditType,
    EventIdempotency,
    PlanCreditGrant,
    UsageEvent,
)

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditLog",
    "BoundaryMark",
    "CatalogSettingsRow",
    "CatalogStamp",
    "ChangeLog",
    "Company",
    "CompanyKey",
    "CompanyMembership",
    "CompanyMetric",
    "CompanyOverride",
    "CompanyPlan",
    "CompanyTrait",
    "Condition",
    "ConditionGroup",
    "CreditGrant",
    "CreditLedgerEntry",
    "CreditType",
    "EventIdempotency",
    "Feature",
    "Flag",
    "InboxEvent",
    "Lease",
    "OutboxMessage",
    "OverrideNote",
    "Plan",
    "PlanChange",
    "PlanCreditGrant",
    "PlanEntitlement",
    "PlanPrice",
    "PlanVersion",
    "Rule",
    "ScheduledDowngrade",
    "SchedulerRun",
    "StripeCustomer",
    "StripeInvoice",
    "StripeMeter",
    "StripeMeterBatch",
    "StripePrice",
    "StripeProduct",
    "StripeSubscription",
    "StripeSubscriptionSchedule",
    "SyncCursor",
    "TraitDefinition",
    "UsageEvent",
    "User",
    "UserKey",
    "UserTrait",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookLimitState",
    "metadata",
    "new_id",
    "utcnow",
]
