"""Security tests reuse the API suite's live server fixtures (SQLite and Postgres)."""

from tests.api.conftest import api, http, sdk  # noqa: F401 (fixtures)
