"""syncd's ASGI adapter: entitlement enforcement inside a host application.

A ``Replica`` (in-process) or ``RedisReplica`` (fed from syncd's Redis) holds the state;
``EntitlementMiddleware`` gates routes from it; ``UsageTracker`` reports metered usage to
syncd; ``syncd_asgi.openfeature.SyncdProvider`` answers OpenFeature boolean flags from it.
"""

from typing import TYPE_CHECKING, Any

from .gates import Gate, GateRule, requires_feature
from .identity import Identity, IdentityError, api_key_identity, header_identity, jwt_claim_identity
from .metering import UsageTracker
from .middleware import STATE_HEADER, EntitlementMiddleware
from .replica import FrozenKeys, Replica

if TYPE_CHECKING:
    from .redis_replica import RedisReplica


def __getattr__(name: str) -> Any:
    # RedisReplica needs the optional ``redis`` package: import it only when asked for.
    if name == "RedisReplica":
        from .redis_replica import RedisReplica

        return RedisReplica
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "STATE_HEADER",
    "EntitlementMiddleware",
    "FrozenKeys",
    "Gate",
    "GateRule",
    "Identity",
    "IdentityError",
    "RedisReplica",
    "Replica",
    "UsageTracker",
    "api_key_identity",
    "header_identity",
    "jwt_claim_identity",
    "requires_feature",
]
