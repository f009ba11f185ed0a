"""Shared pieces of the Schematic response shapes."""

from __future__ import annotations

from typing import Any

from ...models import CreditType, Plan, TraitDefinition

ACCOUNT_ID = "acct_syncd"
ENVIRONMENT_ID = "env_syncd"
DEFAULT_ICON = "gray"


def preview(entity_id: str, name: str, description: str | None = None) -> dict[str, Any]:
    return {"id": entity_id, "name": name, "description": description, "image_url": None}


def trait_definition(definition: TraitDefinition) -> dict[str, Any]:
    """``EntityTraitDefinitionResponseData``."""
    return {
        "id": definition.id,
        "display_name": definition.name,
        "entity_type": definition.entity_type,
        "hierarchy": [definition.name],
        "trait_type": definition.trait_type,
        "created_at": definition.created_at,
        "updated_at": definition.created_at,
    }


def plan_response(plan: Plan) -> dict[str, Any]:
    """``PlanResponseData``."""
    return {
        "id": plan.id,
        "name": plan.name,
        "description": plan.description,
        "plan_type": plan.plan_type,
        "icon": plan.icon or DEFAULT_ICON,
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
    }


def credit_view(credit: CreditType) -> dict[str, Any]:
    """``BillingCreditResponseData`` for a credit type (syncd keeps the ledger itself)."""
    return {
        "id": credit.id,
        "name": credit.name,
        "description": "",
        "singular_name": credit.singular_name,
        "plural_name": credit.plural_name,
        "icon": None,
        "burn_strategy": credit.burn_strategy,
        "cost_editable": False,
        "currency_prices": [],
        "default_expiry_unit": "days",
        "default_expiry_unit_count": None,
        "default_rollover_policy": "none",
        "ledger_authority": "schematic_authoritative",
        "created_at": credit.created_at,
        "updated_at": credit.created_at,
    }
