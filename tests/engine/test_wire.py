"""Wire model: exact snake_case JSON, [] never null, accepted by the official models."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from schematic.types.rulesengine_company import RulesengineCompany
from schematic.types.rulesengine_flag import RulesengineFlag
from schematic.types.rulesengine_user import RulesengineUser

from syncd.engine.wire import (
    ENGINE_VERSION_KEY,
    CheckFlagResult,
    Company,
    Flag,
    Rule,
    User,
    format_ts,
    parse_ts,
)
from tests.engine._wasm import WasmOracle
from tests.engine.strategies import companies, flags, users


def _no_nulls(obj: object) -> bool:
    if isinstance(obj, dict):
        return all(v is not None and _no_nulls(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nulls(v) for v in obj)
    return True


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(flags(), companies(), users())
def test_round_trip_and_official_models_accept(flag: Flag, company: Company, user: User) -> None:
    for obj, model in ((flag, RulesengineFlag), (company, RulesengineCompany), (user, RulesengineUser)):
        wire = obj.to_wire()
        assert _no_nulls(wire)
        assert type(obj).from_wire(json.loads(json.dumps(wire))) == obj
        model(**wire)  # the SDK's own pydantic model parses our JSON


def test_empty_collections_serialize_as_lists() -> None:
    wire = Company("co").to_wire()
    for key in (
        "plan_ids",
        "plan_version_ids",
        "billing_product_ids",
        "entitlements",
        "metrics",
        "rules",
        "traits",
    ):
        assert wire[key] == []
    assert "base_plan_id" not in wire and "subscription" not in wire
    rule = Rule("r", "standard", True).to_wire()
    assert rule["conditions"] == [] and rule["condition_groups"] == []


def test_timestamps_are_rfc3339_utc() -> None:
    ts = dt.datetime(2025, 3, 31, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_ts(ts) == "2025-03-31T10:00:00Z"
    assert parse_ts("2025-03-31T10:00:00+00:00") == parse_ts("2025-03-31T10:00:00Z")
    assert format_ts(dt.datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)).endswith(".5Z")


def test_result_round_trip() -> None:
    result = CheckFlagResult("k", True, "reason", feature_usage_reset_at=parse_ts("2025-01-01T00:00:00Z"))
    assert CheckFlagResult.from_wire(result.to_wire()) == result


def test_version_key_matches_wasm(wasm: WasmOracle) -> None:
    # Cache keys embed this (schematic:company:{version}:...); it must track the engine's model.
    assert wasm.version_key == ENGINE_VERSION_KEY
