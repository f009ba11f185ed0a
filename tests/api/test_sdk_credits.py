"""Company credit grants through the official SDK: purchased and adjustment grants, the list,
zeroing out, and the balance the runtime answers with (demo catalog: Free grants 100 AI credits)."""

from __future__ import annotations

import datetime as dt

import pytest
from schematic.core.api_error import ApiError
from schematic.errors import BadRequestError, NotFoundError
from sqlmodel import Session, select

from syncd.models import CreditType

from .conftest import NO_RETRY, ApiServer, unique


def _credit_id(api: ApiServer) -> str:
    with Session(api.daemon.engine) as session:
        return session.exec(select(CreditType.id).where(CreditType.key == "ai-credits")).one()


def _remaining(api: ApiServer, keys: dict[str, str]) -> float | None:
    data = api.sdk().features.check_flag("ai-assistant", company=keys, request_options=NO_RETRY).data
    assert data.entitlement is not None
    return data.entitlement.credit_remaining


def test_grant_list_zero_out_and_balance(demo_api: ApiServer) -> None:
    sdk = demo_api.sdk()
    keys = {"account": unique("acct")}
    company = sdk.companies.upsert_company(keys=keys, name="Acme", request_options=NO_RETRY).data
    credit = _credit_id(demo_api)
    assert _remaining(demo_api, keys) == 100  # the Free plan's grant

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    granted = sdk.credits.grant_billing_credits_to_company(
        company_id=company.id, credit_id=credit, quantity=500, reason="purchased", expires_at=expires
    ).data
    assert (granted.grant_reason, granted.quantity, granted.quantity_remaining) == ("purchased", 500, 500)
    assert granted.expires_at is not None and abs((granted.expires_at - expires).total_seconds()) < 1
    sdk.credits.grant_billing_credits_to_company(
        company_id=company.id, credit_id=credit, quantity=25, reason="adjustment"
    )
    assert _remaining(demo_api, keys) == 625

    listed = sdk.credits.list_company_grants(company_id=company.id).data
    assert sorted(g.grant_reason for g in listed) == ["adjustment", "plan", "purchased"]
    assert sdk.credits.count_company_grants(company_id=company.id).data.count == 3

    zeroed = sdk.credits.zero_out_grant(granted.id, reason="manual").data
    assert (zeroed.quantity_remaining, zeroed.zeroed_out_reason) == (0, "manual")
    assert zeroed.zeroed_out_date is not None and zeroed.quantity_used == 0
    assert _remaining(demo_api, keys) == 125
    with pytest.raises(ApiError) as again:
        sdk.credits.zero_out_grant(granted.id, request_options=NO_RETRY)
    assert again.value.status_code == 409


def test_bad_grants_are_refused_and_change_nothing(demo_api: ApiServer) -> None:
    sdk = demo_api.sdk()
    keys = {"account": unique("acct")}
    company = sdk.companies.upsert_company(keys=keys, name="Acme", request_options=NO_RETRY).data
    credit = _credit_id(demo_api)
    before = demo_api.table_counts()
    bad = [
        dict(company_id=company.id, credit_id=credit, quantity=10, reason="plan"),
        dict(company_id=company.id, credit_id=credit, quantity=0, reason="purchased"),
        dict(company_id=company.id, credit_id=credit, quantity=-5, reason="adjustment"),
        dict(
            company_id=company.id,
            credit_id=credit,
            quantity=5,
            reason="purchased",
            expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        ),
        dict(company_id=company.id, credit_id=credit, quantity=5, reason="free", renewal_enabled=True),
    ]
    for kwargs in bad:
        with pytest.raises(BadRequestError):
            sdk.credits.grant_billing_credits_to_company(**kwargs, request_options=NO_RETRY)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        sdk.credits.grant_billing_credits_to_company(
            company_id="comp_nope", credit_id=credit, quantity=5, reason="free", request_options=NO_RETRY
        )
    with pytest.raises(NotFoundError):
        sdk.credits.grant_billing_credits_to_company(
            company_id=company.id, credit_id="bcrd_nope", quantity=5, reason="free", request_options=NO_RETRY
        )
    with pytest.raises(NotFoundError):
        sdk.credits.zero_out_grant("bcgr_nope", request_options=NO_RETRY)
    assert demo_api.table_counts() == before
    assert _remaining(demo_api, keys) == 100


def test_read_only_key_can_list_but_not_grant(demo_api: ApiServer) -> None:
    keys = {"account": unique("acct")}
    company = demo_api.sdk().companies.upsert_company(keys=keys, name="Acme", request_options=NO_RETRY).data
    with demo_api.http("readonly") as http:
        listed = http.get("/billing/credits/grants/company/list", params={"company_id": company.id})
        assert listed.status_code == 200 and len(listed.json()["data"]) == 1
        refused = http.post(
            "/billing/credits/grants/company",
            json={
                "company_id": company.id,
                "credit_id": _credit_id(demo_api),
                "quantity": 5,
                "reason": "free",
            },
        )
        assert refused.status_code == 403
