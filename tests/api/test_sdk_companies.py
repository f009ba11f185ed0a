"""Companies, company traits and users through the official SDK."""

from __future__ import annotations

import datetime as dt

import pytest
from schematic.core.api_error import ApiError
from schematic.errors import BadRequestError, NotFoundError
from sqlmodel import Session, col, select

from syncd.models import AuditLog, Company, CompanyKey, CompanyMembership, CompanyPlan, PlanChange

from .conftest import NO_RETRY, ApiServer, unique


def test_upsert_company_creates_then_updates_by_any_key(api: ApiServer) -> None:
    sdk = api.sdk()
    customer = unique("cus")
    created = sdk.companies.upsert_company(
        keys={"customer_id": customer}, name="Acme", traits={"seats": 3, "vip": True, "tier": "gold"}
    ).data
    assert created.id.startswith("comp_") and created.name == "Acme"
    assert created.traits == {"seats": 3, "vip": True, "tier": "gold"}
    assert {k.key: k.value for k in created.keys} == {"customer_id": customer}
    assert {t.definition.trait_type for t in created.entity_traits if t.definition} == {
        "number",
        "boolean",
        "string",
    }
    assert created.environment_id and created.user_count == 0 and created.plan is None

    email = unique("mail")
    updated = sdk.companies.upsert_company(
        keys={"customer_id": customer, "email": email}, name="Acme Inc"
    ).data
    assert updated.id == created.id and updated.name == "Acme Inc"
    assert {k.key: k.value for k in updated.keys} == {"customer_id": customer, "email": email}
    assert updated.traits == {"seats": 3, "vip": True, "tier": "gold"}  # untouched
    assert created.id in api.changes[-1]


def test_get_lookup_and_delete_company(api: ApiServer) -> None:
    sdk = api.sdk()
    customer = unique("cus")
    company = sdk.companies.upsert_company(keys={"customer_id": customer}, name="Lookup Co").data
    assert sdk.companies.get_company(company.id).data.id == company.id
    found = sdk.companies.lookup_company(keys={"customer_id": customer})  # keys[customer_id]=...
    assert found.data.id == company.id and found.params.keys == {"customer_id": customer}
    with api.http() as http:
        as_json = http.get("/companies/lookup", params={"keys": f'{{"customer_id": "{customer}"}}'})
        plain = http.get("/companies/lookup", params={"customer_id": customer})
    assert as_json.json()["data"]["id"] == plain.json()["data"]["id"] == company.id
    assert sdk.companies.lookup_company(keys={"id": company.id}).data.id == company.id

    deleted = sdk.companies.delete_company(company.id)
    assert deleted.data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.companies.get_company(company.id)
    with pytest.raises(NotFoundError):
        sdk.companies.lookup_company(keys={"customer_id": customer})
    with Session(api.daemon.engine) as session:
        assert (
            session.exec(select(CompanyKey).where(col(CompanyKey.company_id) == company.id)).first() is None
        )
        actions = session.exec(select(AuditLog.action).where(col(AuditLog.entity_id) == company.id)).all()
    assert actions == ["company.created", "company.deleted"]


def test_keys_matching_two_companies_conflict(api: ApiServer) -> None:
    sdk = api.sdk()
    a, b = unique("a"), unique("b")
    first = sdk.companies.upsert_company(keys={"k1": a}).data
    sdk.companies.upsert_company(keys={"k2": b})
    # The SDK retries 409s (Fern: 408/409/429/5xx); a conflict is stable, so don't wait for it.
    with pytest.raises(ApiError) as info:
        sdk.companies.upsert_company(keys={"k1": a, "k2": b}, name="merged?", request_options=NO_RETRY)
    assert info.value.status_code == 409 and info.value.body["code"] == "key_conflict"
    with pytest.raises(ApiError) as info:
        sdk.companies.lookup_company(keys={"k1": a, "k2": b}, request_options=NO_RETRY)
    assert info.value.status_code == 409
    assert sdk.companies.get_company(first.id).data.name == ""  # nothing was renamed


def test_reserved_id_key_and_update_only(api: ApiServer) -> None:
    sdk = api.sdk()
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}).data
    renamed = sdk.companies.upsert_company(keys={"id": company.id}, name="By Id").data
    assert renamed.id == company.id and renamed.name == "By Id"
    with_body_id = sdk.companies.upsert_company(id=company.id, keys={"slug": unique()}).data
    assert with_body_id.id == company.id and len(with_body_id.keys) == 2
    with pytest.raises(NotFoundError):
        sdk.companies.upsert_company(keys={"id": "comp_doesnotexist"})
    with pytest.raises(NotFoundError):
        sdk.companies.upsert_company(keys={"customer_id": unique()}, update_only=True)


def test_remove_keys_and_last_seen(api: ApiServer) -> None:
    sdk = api.sdk()
    a = unique()
    seen = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    company = sdk.companies.upsert_company(keys={"a": a, "b": unique()}, last_seen_at=seen).data
    assert company.last_seen_at == seen
    after = sdk.companies.upsert_company(keys={"a": a}, remove_keys=["b"]).data
    assert [k.key for k in after.keys] == ["a"]


def test_company_traits_set_and_increment(api: ApiServer) -> None:
    sdk = api.sdk()
    keys = {"customer_id": unique()}
    company = sdk.companies.upsert_company_trait(keys=keys, trait="api_credits", incr=5).data  # creates
    assert company.traits == {"api_credits": 5}
    company = sdk.companies.upsert_company_trait(keys=keys, trait="api_credits", incr=-2).data
    assert company.traits == {"api_credits": 3}
    company = sdk.companies.upsert_company_trait(keys=keys, trait="region", set_="eu").data
    assert company.traits == {"api_credits": 3, "region": "eu"}
    with pytest.raises(BadRequestError):
        sdk.companies.upsert_company_trait(keys=keys, trait="region", incr=1)
    with pytest.raises(NotFoundError):
        sdk.companies.upsert_company_trait(
            keys={"customer_id": unique()}, trait="x", set_="y", update_only=True
        )


def test_list_companies_filters_and_pagination(api: ApiServer) -> None:
    sdk = api.sdk()
    tag = unique("list")
    ids = [
        sdk.companies.upsert_company(keys={"customer_id": f"{tag}-{i}"}, name=f"{tag} {i}").data.id
        for i in range(3)
    ]
    page = sdk.companies.list_companies(q=tag, limit=2)
    assert [c.id for c in page.data] == [ids[2], ids[1]]  # newest first
    assert page.params.limit == 2 and page.params.q == tag
    rest = sdk.companies.list_companies(q=tag, limit=2, offset=2)
    assert [c.id for c in rest.data] == [ids[0]]
    by_ids = sdk.companies.list_companies(ids=[ids[0], ids[2]])
    assert {c.id for c in by_ids.data} == {ids[0], ids[2]} and by_ids.params.ids == [ids[0], ids[2]]
    assert {c.id for c in sdk.companies.list_companies(q=tag, without_plan=True).data} == set(ids)


def test_company_created_with_base_plan(api: ApiServer) -> None:
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("Starter"), plan_type="plan").data
    company = sdk.companies.upsert_company(keys={"customer_id": unique()}, base_plan_id=plan.id).data
    assert company.plan is not None and company.plan.id == plan.id
    assert [p.id for p in company.plans] == [plan.id]
    with Session(api.daemon.engine) as session:
        change = session.exec(select(PlanChange).where(col(PlanChange.company_id) == company.id)).one()
        assert change.action == "company_upsert" and change.base_plan_id == plan.id
        assert (
            session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company.id)).one().role
            == "base"
        )


def test_users_upsert_with_memberships_lookup_get_list(api: ApiServer) -> None:
    sdk = api.sdk()
    customer = unique("cus")
    company = sdk.companies.upsert_company(keys={"customer_id": customer}, name="Team").data
    other = sdk.companies.upsert_company(keys={"customer_id": unique("cus")}).data
    uid = unique("user")
    user = sdk.companies.upsert_user(
        keys={"user_id": uid}, name="Ada", traits={"role": "admin"}, company={"customer_id": customer}
    ).data
    assert user.id.startswith("user_") and user.traits == {"role": "admin"}
    assert [m.company_id for m in user.company_memberships] == [company.id]
    user = sdk.companies.upsert_user(keys={"user_id": uid}, company_ids=[other.id]).data
    assert {m.company_id for m in user.company_memberships} == {company.id, other.id}
    assert sdk.companies.get_user(user.id).data.name == "Ada"
    assert sdk.companies.lookup_user(keys={"user_id": uid}).data.id == user.id
    listed = sdk.companies.list_users(company_id=company.id)
    assert [u.id for u in listed.data] == [user.id] and listed.params.company_id == company.id
    assert sdk.companies.get_company(company.id).data.user_count == 1
    with pytest.raises(NotFoundError):
        sdk.companies.upsert_user(keys={"user_id": unique()}, company_id="comp_missing")
    with pytest.raises(NotFoundError):
        sdk.companies.get_user("user_missing")
    with Session(api.daemon.engine) as session:
        assert (
            len(
                session.exec(select(CompanyMembership).where(col(CompanyMembership.user_id) == user.id)).all()
            )
            == 2
        )
        assert session.get(Company, company.id) is not None


def test_concurrent_upserts_of_a_new_company_converge(api: ApiServer) -> None:
    """Racing creates of the same key: one wins, the others get 409/5xx, retry and find it."""
    from concurrent.futures import ThreadPoolExecutor

    sdk = api.sdk()
    keys = {"customer_id": unique("race")}

    def upsert(i: int) -> str:
        return sdk.companies.upsert_company(keys=keys, name=f"n{i}").data.id

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(upsert, range(6)))
    assert len(set(ids)) == 1
    assert [c.id for c in sdk.companies.list_companies(q=keys["customer_id"]).data] == ids[:1]
