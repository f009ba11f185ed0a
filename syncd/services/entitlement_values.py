"""Validation shared by plan entitlements and company overrides: what a value type needs."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from ..exceptions import ValidationError
from ..models import CreditType, TraitDefinition, new_id
from .common import check_choice, require
from .flags import METRIC_PERIODS, MONTH_RESETS
from .inputs import EntitlementValue

VALUE_TYPES = ("boolean", "numeric", "unlimited", "trait", "credit")
METERED = ("numeric", "trait", "unlimited")


def needs_usage_rule(value_type: str) -> bool:
    """Numeric, trait and credit values get a second, usage-exceeded rule id."""
    return value_type in ("numeric", "trait", "credit")


def usage_rule_id(value_type: str, current: str | None) -> str | None:
    if not needs_usage_rule(value_type):
        return None
    return current or new_id("rule")


def normalize(session: Session, value: EntitlementValue) -> dict[str, Any]:
    """The row columns for ``value``; fields that do not apply to the value type are cleared."""
    vt = value.value_type
    check_choice(vt, VALUE_TYPES, "value_type")
    check_choice(value.metric_period, METRIC_PERIODS, "metric_period")
    check_choice(value.metric_period_month_reset, MONTH_RESETS, "metric_period_month_reset")
    out: dict[str, Any] = {
        "value_type": vt,
        "value_bool": None,
        "value_numeric": None,
        "value_trait_id": None,
        "value_credit_id": None,
        "credit_consumption_rate": None,
        "metric_period": None,
        "metric_period_month_reset": None,
        "soft_limit": None,
    }
    if value.metric_period is not None and vt not in METERED:
        raise ValidationError(f"metric_period does not apply to {vt} values", code="invalid_value")
    if value.metric_period_month_reset is not None and value.metric_period != "current_month":
        raise ValidationError(
            "metric_period_month_reset only applies to metric_period current_month", code="invalid_value"
        )
    if value.soft_limit is not None:
        if vt not in METERED or value.soft_limit < 0:
            raise ValidationError(
                "soft_limit must be a non-negative limit on a metered value", code="invalid_value"
            )
        out["soft_limit"] = value.soft_limit
    if vt in METERED:
        out["metric_period"] = value.metric_period
        reset = value.metric_period_month_reset
        out["metric_period_month_reset"] = reset or (
            "first_of_month" if value.metric_period == "current_month" else None
        )
    if vt == "boolean":
        out["value_bool"] = True if value.value_bool is None else value.value_bool
    elif vt == "numeric":
        if value.value_numeric is None or value.value_numeric < 0:
            raise ValidationError("numeric values need a non-negative value_numeric", code="missing_value")
        out["value_numeric"] = value.value_numeric
    elif vt == "trait":
        if value.value_trait_id is None:
            raise ValidationError("trait values need a value_trait_id", code="missing_value")
        out["value_trait_id"] = require(session, TraitDefinition, value.value_trait_id, "trait").id
    elif vt == "credit":
        if value.value_credit_id is None:
            raise ValidationError("credit values need a value_credit_id", code="missing_value")
        out["value_credit_id"] = require(session, CreditType, value.value_credit_id, "credit").id
        rate = 1.0 if value.credit_consumption_rate is None else value.credit_consumption_rate
        if rate <= 0:
            raise ValidationError("credit_consumption_rate must be positive", code="invalid_value")
        out["credit_consumption_rate"] = rate
    return out
