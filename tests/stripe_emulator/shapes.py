"""Comparing emulator objects with Stripe's own example objects (fixtures3.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path("/work/shared/stripe/fixtures3.json")


@cache
def fixtures() -> dict[str, Any]:
    data = json.loads(FIXTURES.read_text())
    resources = data["resources"]
    assert isinstance(resources, dict)
    return resources


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def shape_errors(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Keys of ``actual`` missing from ``expected`` and type mismatches (null matches all)."""
    errors: list[str] = []
    if actual is None or expected is None:
        return errors
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key, value in actual.items():
            if key not in expected:
                errors.append(f"{path}.{key}: not in the Stripe fixture")
                continue
            errors += shape_errors(value, expected[key], f"{path}.{key}")
        return errors
    if isinstance(actual, list) and isinstance(expected, list):
        if actual and expected:
            for n, item in enumerate(actual):
                errors += shape_errors(item, expected[0], f"{path}[{n}]")
        return errors
    if _kind(actual) != _kind(expected):
        errors.append(f"{path}: {_kind(actual)} where Stripe has {_kind(expected)}")
    return errors


def missing_keys(actual: dict[str, Any], expected: dict[str, Any]) -> set[str]:
    return set(expected) - set(actual)
