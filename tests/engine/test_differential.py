"""Differential conformance: syncd's engine against the official WASM rules engine.

Every generated case is evaluated by both engines at the same pinned instant; value, reason,
rule id/type, ids, the attached entitlement and the usage/allocation/period/reset fields must
agree exactly. The WASM engine is the specification.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings

from syncd.engine.flagcheck import check_flag
from syncd.engine.wire import Company, Flag, Preflight, User, parse_ts
from tests.engine._wasm import oracle
from tests.engine.strategies import cases

CASES = int(__import__("os").environ.get("SYNCD_DIFF_CASES", "10000"))

COMPARED = (
    "value",
    "reason",
    "err",
    "rule_id",
    "rule_type",
    "flag_id",
    "flag_key",
    "company_id",
    "user_id",
    "feature_allocation",
    "feature_usage",
    "feature_usage_event",
    "feature_usage_period",
)


def _norm_entitlement(ent: Any) -> Any:
    if ent is None:
        return None
    return {k: v for k, v in ent.items() if v is not None and v != []}


def compare(
    flag: Flag,
    company: Company | None,
    user: User | None,
    preflight: Preflight | None,
    now: dt.datetime,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    ours = check_flag(flag, company, user, preflight, now).to_wire()
    theirs = oracle().check(flag, company, user, preflight, now)
    return ours, theirs


def assert_agree(ours: dict[str, Any], theirs: dict[str, Any] | None) -> None:
    assert theirs is not None, "WASM engine rejected an input syncd accepted"
    for key in COMPARED:
        assert ours.get(key) == theirs.get(key), (key, ours, theirs)
    ours_reset = ours.get("feature_usage_reset_at")
    theirs_reset = theirs.get("feature_usage_reset_at")
    assert (None if ours_reset is None else parse_ts(ours_reset)) == (
        None if theirs_reset is None else parse_ts(theirs_reset)
    ), (ours, theirs)
    ours_ent = _norm_entitlement(ours.get("entitlement"))
    theirs_ent = _norm_entitlement(theirs.get("entitlement"))
    if ours_ent is not None and theirs_ent is not None:
        for key in ("usage", "allocation", "feature_key", "value_type"):
            assert ours_ent.get(key) == theirs_ent.get(key), (key, ours_ent, theirs_ent)
    assert (ours_ent is None) == (theirs_ent is None), (ours, theirs)


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_syncd_agrees_with_wasm_engine(
    case: tuple[Flag, Company | None, User | None, Preflight | None, dt.datetime],
) -> None:
    flag, company, user, preflight, now = case
    ours, theirs = compare(flag, company, user, preflight, now)
    assert_agree(ours, theirs)
