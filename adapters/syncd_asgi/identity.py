"""Who is calling: resolving a request's company and user keys for the entitlement check.

The middleware takes any ``Identify`` callable ``(scope) -> Identity | None``. The helpers
below cover the usual cases: a header carrying a company (and user) key, an API key mapped to
its owner by the host app, and claims of a JWT that the host's auth layer already verified
and decoded. Raise ``IdentityError`` for a caller that presented something invalid (the
middleware answers 401); return None (or an empty Identity) for an anonymous caller, who is
checked without company or user context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from .replica import FrozenKeys, Keys


@dataclass(frozen=True, slots=True)
class Identity:
    company: Keys | None = None
    user: Keys | None = None


Identify = Callable[[Scope], Identity | None]
_MAX_SEEN = 10_000  # distinct callers remembered by header_identity


class IdentityError(Exception):
    """The request carries an identity that cannot be accepted (answered with 401)."""


def header_value(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case, as ASGI gives them)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def header_identity(
    company_header: str = "x-company-key",
    company_key: str = "id",
    *,
    user_header: str | None = None,
    user_key: str = "id",
) -> Identify:
    """Company (and optionally user) keys from headers: ``{company_key: <header value>}``."""
    cname, uname = (
        company_header.lower().encode(),
        None if user_header is None else user_header.lower().encode(),
    )

    # The same callers come back: reuse their Identity rather than build one per request.
    seen: dict[tuple[bytes | None, bytes | None], Identity] = {}
    by_company: dict[bytes, Identity] = {}

    def identify_company(scope: Scope) -> Identity | None:
        # The usual case, on every gated request: one header, no tuple key. Scanned from the
        # end so a repeated header resolves to its last value, as in ``identify``.
        for key, value in reversed(scope["headers"]):
            if key == cname:
                found = by_company.get(value)
                if found is None:
                    if len(by_company) >= _MAX_SEEN:
                        by_company.clear()
                    found = by_company[value] = Identity(FrozenKeys({company_key: value.decode("latin-1")}))
                return found
        return None

    if uname is None:
        return identify_company

    def identify(scope: Scope) -> Identity | None:
        cval = uval = None
        for key, value in scope["headers"]:
            if key == cname:
                cval = value
            elif key == uname:
                uval = value
        if cval is None and uval is None:
            return None
        found = seen.get((cval, uval))
        if found is None:
            if len(seen) >= _MAX_SEEN:
                seen.clear()
            found = seen[cval, uval] = Identity(
                None if cval is None else FrozenKeys({company_key: cval.decode("latin-1")}),
                None if uval is None else FrozenKeys({user_key: uval.decode("latin-1")}),
            )
        return found

    return identify


def api_key_identity(lookup: Callable[[str], Identity | None], header: str = "x-api-key") -> Identify:
    """An API key header mapped to its owner by the host app's ``lookup`` (keep it in memory:
    it runs on every gated request). An unknown key is an ``IdentityError``."""
    name = header.lower().encode()

    def identify(scope: Scope) -> Identity | None:
        key = header_value(scope, name)
        if key is None:
            return None
        found = lookup(key)
        if found is None:
            raise IdentityError("unknown API key")
        return found

    return identify


def _scope_claims(scope: Scope) -> Mapping[str, Any] | None:
    state = scope.get("state")
    claims = None if state is None else state.get("jwt_claims")
    return claims if isinstance(claims, Mapping) else None


def jwt_claim_identity(
    company_claim: str = "org_id",
    company_key: str = "id",
    *,
    user_claim: str | None = None,
    user_key: str = "id",
    claims: Callable[[Scope], Mapping[str, Any] | None] = _scope_claims,
) -> Identify:
    """Keys from claims of an already verified and decoded JWT.

    ``claims`` finds them in the scope; by default ``scope["state"]["jwt_claims"]`` (what an
    auth middleware sets with ``request.state.jwt_claims = ...``). A claim that is present but
    not a string or number is an ``IdentityError``.
    """

    def one(found: Mapping[str, Any], claim: str | None, key: str) -> Keys | None:
        if claim is None or found.get(claim) is None:
            return None
        value = found[claim]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise IdentityError(f"claim {claim!r} must be a string")
        return {key: str(value)}

    def identify(scope: Scope) -> Identity | None:
        found = claims(scope)
        if found is None:
            return None
        return Identity(one(found, company_claim, company_key), one(found, user_claim, user_key))

    return identify
