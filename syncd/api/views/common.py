"""Shared pieces of the Schematic response shapes."""

from __future__ import annotations

from typing import Any

from ...models import Plan, TraitDefinition

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
