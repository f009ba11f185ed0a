"""What each endpoint accepts and answers, declared beside the handler for ``/openapi.json``.

Handlers validate with :func:`syncd.api.http.read_body` / ``read_query``; the ``@operation``
decorator names the same pydantic models so the OpenAPI document (``syncd.api.openapi``)
is generated from the route table and those models, never written by hand. A test checks
that every served route carries a declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

# "object" / "list": the {data, params} envelope around one object or a page of them;
# "deleted": the envelope around {"deleted": true}; "raw": no envelope (``schema`` is the body).
ResponseKind = Literal["object", "list", "deleted", "raw"]
SPEC_ATTR = "__syncd_operation__"


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: ResponseKind = "object"
    # The schema of ``data`` (enveloped kinds) or of the whole body ("raw"); None: any object.
    data: type[BaseModel] | Mapping[str, Any] | None = None
    # Free-form query parameters (``?keys[id]=...``) as a deepObject named here.
    lookup_keys: str | None = None
    headers: tuple[str, ...] = ()  # required request headers besides the API key
    content_type: str = "application/json"  # of a successful response
    status: int = 200  # of a successful response
    tag: str | None = None
    extra_statuses: tuple[int, ...] = ()
    raw_body: bool = False  # body is verified as bytes (any JSON object), not a model


def operation(
    *,
    summary: str | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: ResponseKind | None = None,
    data: type[BaseModel] | Mapping[str, Any] | None = None,
    lookup_keys: str | None = None,
    headers: tuple[str, ...] = (),
    content_type: str = "application/json",
    status: int = 200,
    tag: str | None = None,
    extra_statuses: tuple[int, ...] = (),
    raw_body: bool = False,
) -> Callable[[F], F]:
    """Attach an :class:`Operation` to a handler (read by the OpenAPI generator)."""

    def attach(handler: F) -> F:
        kind: ResponseKind = response or _default_kind(query)
        spec = Operation(
            summary=summary,
            body=body,
            query=query,
            response=kind,
            data=data,
            lookup_keys=lookup_keys,
            headers=headers,
            content_type=content_type,
            status=status,
            tag=tag,
            extra_statuses=extra_statuses,
            raw_body=raw_body,
        )
        setattr(handler, SPEC_ATTR, spec)
        return handler

    return attach


def _default_kind(query: type[BaseModel] | None) -> ResponseKind:
    from .schemas.base import ListQuery

    return "list" if query is not None and issubclass(query, ListQuery) else "object"


def spec_of(handler: Callable[..., Any]) -> Operation | None:
    found = getattr(handler, SPEC_ATTR, None)
    return found if isinstance(found, Operation) else None
