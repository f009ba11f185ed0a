"""syncd's ASGI adapter: entitlement enforcement inside a host application.

A ``Replica`` (in-process) or ``RedisReplica`` (fed from syncd's Redis) holds the state;
``EntitlementMiddleware`` gates routes from it; ``UsageTracker`` reports metered usage to
syncd; ``syncd_asgi.openfeature.SyncdProvider`` answers OpenFeature boolean flags from it.
"""

from .gates import Gate, GateRule, requires_feature
from .identity import Identity, IdentityError, api_key_identity, header_identity, jwt_claim_identity
from .metering import UsageTracker
from .middleware import STATE_HEADER, EntitlementMiddleware
from .redis_replica import RedisReplica
from .replica import Replica

__all__ = [
    "STATE_HEADER",
    "EntitlementMiddleware",
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
