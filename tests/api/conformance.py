"""A stricter reading of the SDK's response types than the SDK itself applies.

The generated types accept ``Union[Literal[...], Any]`` and extra keys, so a typo such as
``"one_time"`` for ``"one-time"`` or a misspelt field would still parse. :func:`problems`
walks a raw JSON response against the type and reports enum values outside the literal
set, missing required fields and keys the type does not declare.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

# Keys syncd adds on purpose (not in the SDK types): kept so they round-trip.
INTENTIONAL_EXTRAS = {
    ("RuleConditionDetailResponseData", "credit_id"),
    ("RuleConditionDetailResponseData", "consumption_rate"),
    ("PlanEntitlementResponseData", "plan_version_id"),
    ("WebhookResponseData", "signature_scheme"),
}


def _literals(annotation: Any) -> set[Any] | None:
    found: set[Any] = set()
    for arg in typing.get_args(annotation) or ():
        if typing.get_origin(arg) is Literal:
            found.update(typing.get_args(arg))
    return found or None


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_optional(args[0])
    return annotation


def problems(annotation: Any, value: Any, path: str = "$") -> list[str]:
    if value is None:
        return []
    literals = _literals(annotation)
    if literals is not None:
        return [] if value in literals else [f"{path}: {value!r} not in {sorted(map(str, literals))}"]
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        out: list[str] = []
        for i, element in enumerate(value):
            out += problems(item, element, f"{path}[{i}]")
        return out
    if origin is dict or annotation is Any:
        return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {annotation.__name__}"]
        out = []
        declared = {f.alias or name: (name, f) for name, f in annotation.model_fields.items()}
        for key in value:
            if key not in declared and (annotation.__name__, key) not in INTENTIONAL_EXTRAS:
                out.append(f"{path}.{key}: not declared by {annotation.__name__}")
        for key, (_, field) in declared.items():
            if key not in value:
                if field.is_required():
                    out.append(f"{path}.{key}: required by {annotation.__name__}")
                continue
            out += problems(field.annotation, value[key], f"{path}.{key}")
        return out
    if annotation is dt.datetime and not isinstance(value, str):
        return [f"{path}: datetime must be a string"]
    return []
