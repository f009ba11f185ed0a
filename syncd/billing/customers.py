"""A Stripe customer for each company that needs billing, linked by the company key."""

from __future__ import annotations

from typing import Any

import stripe
from sqlmodel import Session, col, select

from ..models import Company, CompanyKey, StripeCustomer
from ..services import keys as entity_keys
from ..services.common import require
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key
from ..stripe_sync import mirror
from ..stripe_sync.mapping import CUSTOMER_KEY
from ..stripe_sync.normalize import plain
from .errors import translate

COMPANY_METADATA_KEY = "syncd_company_id"


def customer_id_of(session: Session, company_id: str) -> str | None:
    """The company's linked Stripe customer (company key ``stripe_customer_id``)."""
    return session.exec(
        select(CompanyKey.value).where(
            col(CompanyKey.company_id) == company_id, col(CompanyKey.key) == CUSTOMER_KEY
        )
    ).first()


def ensure_customer(session: Session, client: stripe.StripeClient, company_id: str) -> str:
    """The company's Stripe customer, created once (a retry replays the same idempotent request)."""
    existing = customer_id_of(session, company_id)
    if existing:
        return existing
    company = require(session, Company, company_id, "company")
    params: dict[str, Any] = {
        "name": company.name or company.id,
        "metadata": {METADATA_ORIGIN_KEY: "syncd", COMPANY_METADATA_KEY: company.id},
    }
    try:
        customer = client.v1.customers.create(
            params,  # type: ignore[arg-type]
            {"idempotency_key": idempotency_key("customer", company.id)},
        )
    except stripe.StripeError as exc:
        raise translate(exc) from exc
    entity_keys.set_keys(session, entity_keys.COMPANY_KEYS, company.id, {CUSTOMER_KEY: customer.id})
    row = mirror.store(session, "customer", plain(customer), created=0, source_id="syncd:customer")
    assert isinstance(row, StripeCustomer)
    row.company_id = company.id
    session.add(row)
    session.flush()
    return str(customer.id)
