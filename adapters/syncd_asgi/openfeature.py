"""OpenFeature provider backed by a syncd replica: boolean flags evaluated in process.

Context mapping: ``targeting_key`` is the company's value for the ``targeting_key`` key name
given to the provider (default "id"); attributes ``company`` and ``user`` (mappings of key ->
value) add company and user keys. Results carry the engine's verdict: reason TARGETING_MATCH
when a rule matched, DEFAULT when the flag's default applied, STALE when the replica is cut off
from syncd and answers from last-known state; variant "on"/"off"; metadata with the rule, the
engine's reason text and usage/allocation when metered. Errors map to OpenFeature codes:
PROVIDER_NOT_READY (no data yet), FLAG_NOT_FOUND, INVALID_CONTEXT (bad or conflicting keys),
TYPE_MISMATCH (syncd flags are boolean only). ``track`` forwards to a ``UsageTracker``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from .metering import UsageTracker
from .replica import REASON_KEY_CONFLICT, Keys, Source

T = TypeVar("T")
FlagMetadata = dict[str, bool | int | float | str]


class _BadContext(Exception):
    pass


def _keys(value: Any, what: str) -> Keys | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise _BadContext(f"attribute {what!r} must map key names to string values")
    return {k: str(v) for k, v in value.items()}


class SyncdProvider(AbstractProvider):
    """Resolve boolean flags from ``replica`` (a ``Replica`` or ``RedisReplica``)."""

    def __init__(
        self,
        replica: Source,
        *,
        targeting_key: str = "id",
        tracker: UsageTracker | None = None,
        ready_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.replica, self.tracker = replica, tracker
        self._targeting_key, self._ready_timeout = targeting_key, ready_timeout

    def get_metadata(self) -> Metadata:
        return Metadata(name="syncd")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start the replica; raise (provider in error) when no data arrives in time, and
        announce readiness later if it does."""
        if self.replica.wait_ready(self._ready_timeout):
            return

        def announce() -> None:
            if self.replica.wait_ready(3600 * 24 * 365):
                self.emit_provider_ready(ProviderEventDetails(message="entitlement data loaded"))

        threading.Thread(target=announce, name="syncd-openfeature-ready", daemon=True).start()
        raise ProviderNotReadyError(f"no entitlement data within {self._ready_timeout}s")

    def shutdown(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        self.replica.close()

    def _context(self, ctx: EvaluationContext | None) -> tuple[Keys | None, Keys | None]:
        if ctx is None:
            return None, None
        company = dict(_keys(ctx.attributes.get("company"), "company") or {})
        if ctx.targeting_key:
            company.setdefault(self._targeting_key, ctx.targeting_key)
        return company or None, _keys(ctx.attributes.get("user"), "user")

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        try:
            company, user = self._context(evaluation_context)
        except _BadContext as exc:
            return _error(default_value, ErrorCode.INVALID_CONTEXT, str(exc))
        result = self.replica.check(company, user, flag_key)
        if result is None:
            return _error(default_value, ErrorCode.PROVIDER_NOT_READY, "no entitlement data loaded yet")
        if result.err is not None:
            if result.reason == REASON_KEY_CONFLICT:
                return _error(default_value, ErrorCode.INVALID_CONTEXT, "the keys match different entities")
            if not self.replica.has_flag(flag_key):
                return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"flag {flag_key!r} not found")
            return _error(default_value, ErrorCode.GENERAL, result.err)
        meta: FlagMetadata = {"reason": result.reason, "stale": self.replica.stale}
        for name in ("flag_id", "rule_id", "rule_type", "company_id", "user_id"):
            value = getattr(result, name)
            if value is not None:
                meta[name] = value
        if result.feature_usage is not None:
            meta["usage"] = result.feature_usage
        if result.feature_allocation is not None:
            meta["allocation"] = result.feature_allocation
        if self.replica.stale:
            reason: str = Reason.STALE
        else:
            reason = Reason.DEFAULT if result.rule_id is None else Reason.TARGETING_MATCH
        return FlagResolutionDetails(
            value=result.value, reason=reason, variant="on" if result.value else "off", flag_metadata=meta
        )

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Report usage of ``tracking_event_name`` (quantity: the details' value, default 1)."""
        if self.tracker is None:
            return
        company, user = self._context(evaluation_context)
        value = None if tracking_event_details is None else tracking_event_details.value
        quantity = 1 if value is None else int(value)
        self.tracker.track(company, user, tracking_event_name, quantity)

    # syncd flags are booleans: every other type is a type mismatch.
    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return _mismatch(default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return _mismatch(default_value)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return _mismatch(default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return _mismatch(default_value)


def _error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(value=default, reason=Reason.ERROR, error_code=code, error_message=message)


def _mismatch(default: T) -> FlagResolutionDetails[T]:
    return _error(default, ErrorCode.TYPE_MISMATCH, "syncd flags are boolean")
