"""A bounded schemathesis run against a live syncd (SQLite, secret key) from its own /openapi.json.

Every generated request, valid or deliberately invalid, must get a non-5xx answer that
conforms to the document; every refused request (4xx) must leave the database exactly as
it was (a content fingerprint of every table before and after).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy import select
from sqlmodel import SQLModel

from syncd.api.app import all_routes
from syncd.api.openapi import document

from .conftest import ApiServer, start_server

EXAMPLES_PER_OPERATION = 6
# Not checked: positive_data_acceptance (a schema-valid request may still break a business rule the
# document does not encode, e.g. "exactly one of set and incr"), and negative_data_rejection for
# query-only operations (a query string has no types: `ids=1` is a valid list of one string).


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('schemathesis')) / 'syncd.db'}"
    server, stop = start_server(url, "sqlite")
    try:
        yield server
    finally:
        stop()


def fingerprint(server: ApiServer) -> str:
    """A digest of every row of every table."""
    digest = hashlib.sha256()
    with server.daemon.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            digest.update(f"{table.name}:{sorted(map(repr, rows))}".encode())
    return digest.hexdigest()


# The document the server serves (test_openapi checks they are equal), built without a server so
# that collection stays cheap.
schema = schemathesis.openapi.from_dict(document(all_routes(), "test"))
schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION)
# Fuzzing (valid and invalid data) only: the coverage phase alone sends ~100 requests per operation.
schema.config.phases.update(phases=["fuzzing"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_conforms(case: Any, live: ApiServer) -> None:
    # The document's security scheme makes schemathesis send a made-up key; use the real one.
    headers = {"X-Schematic-Api-Key": live.keys["secret"]}
    case.headers = {**(case.headers or {}), **headers}
    before = fingerprint(live)
    response = case.call(base_url=live.base_url)
    after = fingerprint(live)
    excluded = [] if case.operation.body else [negative_data_rejection]
    case.validate_response(response, headers=headers, excluded_checks=[positive_data_acceptance, *excluded])
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        assert before == after, f"a refused {case.method} {case.path} ({response.status_code}) wrote data"
