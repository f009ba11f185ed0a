"""The served example app, configured from the environment:

SYNCD_EXAMPLE_REDIS_URL   (redis://127.0.0.1:6379/0)  syncd's Redis
SYNCD_EXAMPLE_PREFIX      (schematic:)                 its key prefix
SYNCD_EXAMPLE_SYNCD_URL   (http://127.0.0.1:8000)      where usage is sent (POST /batch)
SYNCD_EXAMPLE_API_KEY     ("")                         the key sent with usage events

uvicorn examples.host_app.main:app --workers 2
"""

from __future__ import annotations

import os

from syncd_asgi import RedisReplica, UsageTracker, header_identity

from .app import create_app

_env = os.environ.get
replica = RedisReplica(
    _env("SYNCD_EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0"),
    prefix=_env("SYNCD_EXAMPLE_PREFIX", "schematic:"),
)
tracker = UsageTracker(
    _env("SYNCD_EXAMPLE_SYNCD_URL", "http://127.0.0.1:8000"),
    _env("SYNCD_EXAMPLE_API_KEY", ""),
    replica=replica,
)
identify = header_identity("x-company-key", _env("SYNCD_EXAMPLE_COMPANY_KEY", "id"), user_header="x-user-key")
app = create_app(replica, tracker=tracker, identify=identify)
