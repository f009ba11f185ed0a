"""Request parsing and response helpers shared by the route modules.

Bodies are validated strictly against pydantic models (malformed JSON, wrong types -> 400
with ``details.errors``); query strings leniently (``"10"`` is an int). Database work runs
in the threadpool with one session per request, committed on success; entitlement changes
recorded by the services are handed to ``app.state.entitlements_listeners`` after commit.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any, TypeVar

import pydantic
import structlog
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..exceptions import ValidationError
from ..services.changes import Changed, take_entitlement_changes

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")
EntitlementsListener = Callable[[Changed], None]


class ApiResponse(JSONResponse):
    """JSON with datetimes as ISO 8601 strings."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def ok(data: Any, params: dict[str, Any] | None = None, status: int = 200) -> Response:
    """Schematic's envelope: ``{"data": ..., "params": {...}}``."""
    return ApiResponse({"data": data, "params": params or {}}, status_code=status)


def _errors(exc: pydantic.ValidationError) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(p) for p in err["loc"]) or "body", "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def read_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except pydantic.ValidationError as exc:
        errors = _errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ValidationError("request body is not valid JSON", code="invalid_json") from None
        raise ValidationError("invalid request body", code="invalid_body", errors=errors) from None


@cache
def _list_fields(model: type[pydantic.BaseModel]) -> frozenset[str]:
    def is_list(annotation: Any) -> bool:
        if typing.get_origin(annotation) is list:
            return True
        return any(is_list(arg) for arg in typing.get_args(annotation))

    return frozenset(name for name, f in model.model_fields.items() if is_list(f.annotation))


def read_query(request: Request, model: type[M]) -> M:
    """Query parameters into ``model``: repeated keys (or list fields) become lists."""
    lists = _list_fields(model)
    params = request.query_params
    data: dict[str, Any] = {}
    for name in params:
        values = params.getlist(name)
        data[name] = values if name in lists else values[-1]
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError("invalid query parameters", code="invalid_query", errors=_errors(exc)) from None


def echo(query: pydantic.BaseModel) -> dict[str, Any]:
    """The ``params`` of a list response: the parsed query, unset values left out."""
    return query.model_dump(mode="json", exclude_none=True)


async def run_db(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in the threadpool in its own session; commit, then notify entitlement listeners."""
    daemon = request.app.state.daemon
    listeners: list[EntitlementsListener] = getattr(request.app.state, "entitlements_listeners", [])

    def call() -> T:
        with Session(daemon.engine, expire_on_commit=False) as session:
            try:
                result = work(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            changed = take_entitlement_changes(session)
        if changed is not None:
            for listener in listeners:
                try:
                    listener(changed)
                except Exception:  # committed already: a listener must not fail the request
                    log.exception("entitlements_listener_failed")
        return result

    return await run_in_threadpool(call)


def lookup_keys(request: Request) -> dict[str, str]:
    """Keys of a lookup, in any of Schematic's three encodings.

    ``?keys={"foo":"bar"}`` (JSON), ``?keys[foo]=bar`` or plain ``?foo=bar``.
    """
    params = request.query_params
    bracketed = {
        name[5:-1]: params[name] for name in params if name.startswith("keys[") and name.endswith("]")
    }
    if bracketed:
        return bracketed
    if "keys" in params:
        try:
            parsed = json.loads(params["keys"])
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ValidationError(
                'keys must be a JSON object of strings, e.g. keys={"id":"..."}', code="invalid_keys"
            )
        return parsed
    return {name: params[name] for name in params}
