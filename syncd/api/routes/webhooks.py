"""``/webhooks``, ``/webhook-events``: the SDK's ``webhooks`` client."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...models import WebhookEndpoint
from ...services import webhooks
from ...webhooks_out.config import webhook_settings
from ...webhooks_out.delivery import send_now
from ..auth import request_actor
from ..http import echo, ok, read_body, read_query, run_db
from ..schemas.webhooks import (
    CreateWebhookBody,
    ListWebhookEventsQuery,
    ListWebhooksQuery,
    SendTestWebhookBody,
    UpdateWebhookBody,
)
from ..spec import operation
from ..views.common import ACCOUNT_ID, ENVIRONMENT_ID
from ..views.webhooks import delivery_view, webhook_view


@operation(body=CreateWebhookBody)
async def create_webhook(request: Request) -> Response:
    body = await read_body(request, CreateWebhookBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        endpoint = webhooks.create_webhook(
            session,
            name=body.name,
            url=body.url,
            request_types=body.request_types,
            entitlement_trigger_configs=[c.model_dump() for c in body.entitlement_trigger_configs or []],
            credit_trigger_configs=[c.model_dump() for c in body.credit_trigger_configs or []],
            signature_scheme=body.signature_scheme,
            actor=actor,
        )
        return webhook_view(endpoint)

    return ok(await run_db(request, work))


@operation(body=UpdateWebhookBody)
async def update_webhook(request: Request) -> Response:
    webhook_id = request.path_params["webhook_id"]
    body = await read_body(request, UpdateWebhookBody)
    changes = body.model_dump(exclude_none=True)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        return webhook_view(webhooks.update_webhook(session, webhook_id, changes=changes, actor=actor))

    return ok(await run_db(request, work))


@operation()
async def get_webhook(request: Request) -> Response:
    webhook_id = request.path_params["webhook_id"]

    def work(session: Session) -> dict[str, Any]:
        return webhook_view(webhooks.get_webhook(session, webhook_id))

    return ok(await run_db(request, work))


@operation(response="deleted")
async def delete_webhook(request: Request) -> Response:
    webhook_id = request.path_params["webhook_id"]
    actor = request_actor(request)

    def work(session: Session) -> None:
        webhooks.delete_webhook(session, webhook_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True})


@operation(query=ListWebhooksQuery)
async def list_webhooks(request: Request) -> Response:
    query = read_query(request, ListWebhooksQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        return [webhook_view(w) for w in webhooks.list_webhooks(session, q=query.q, page=page)]

    return ok(await run_db(request, work), echo(query))


@operation(query=ListWebhookEventsQuery)
async def list_webhook_events(request: Request) -> Response:
    query = read_query(request, ListWebhookEventsQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = webhooks.list_webhook_events(
            session, webhook_id=query.webhook_id, ids=query.ids, q=query.q, page=page
        )
        endpoints: dict[str, WebhookEndpoint | None] = {}
        out = []
        for row in rows:
            if row.webhook_id not in endpoints:
                endpoints[row.webhook_id] = session.get(WebhookEndpoint, row.webhook_id)
            out.append(delivery_view(row, endpoints[row.webhook_id]))
        return out

    return ok(await run_db(request, work), echo(query))


@operation(body=SendTestWebhookBody)
async def send_test_webhook_action(request: Request) -> Response:
    webhook_id = request.path_params["webhook_id"]
    body = await read_body(request, SendTestWebhookBody)
    actor = request_actor(request)

    def work(session: Session) -> str:
        delivery = webhooks.send_test_webhook_action(
            session,
            webhook_id,
            request_type=body.request_type,
            account_id=ACCOUNT_ID,
            environment_id=ENVIRONMENT_ID,
            actor=actor,
        )
        return delivery.id

    delivery_id = await run_db(request, work)
    daemon = request.app.state.daemon
    # Sent at once, through the same signing and logging path as every delivery, once.
    outcome = await run_in_threadpool(send_now, daemon.engine, webhook_settings(daemon.settings), delivery_id)
    if outcome is None:  # the row vanished meanwhile (its endpoint was deleted)
        return ok({"success": False, "response_code": 0, "failure_reason": "not sent"})
    # response_code is required by the SDK type: 0 when no HTTP response came back.
    code = outcome.status_code or 0
    return ok({"success": outcome.ok, "response_code": code, "failure_reason": outcome.error})


routes = [
    Route("/webhooks", create_webhook, methods=["POST"]),
    Route("/webhooks", list_webhooks, methods=["GET"]),
    Route("/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
    Route("/webhooks/{webhook_id}", update_webhook, methods=["PUT"]),
    Route("/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
    Route("/webhooks/{webhook_id}/test", send_test_webhook_action, methods=["POST"]),
    Route("/webhook-events", list_webhook_events, methods=["GET"]),
]
