"""Pydantic v2 models of the request bodies and query strings the API accepts.

Bodies mirror the SDK's request bodies (field names and types) and are validated strictly;
unknown fields are ignored. Fields syncd accepts but cannot honour are listed per model in
``UNSUPPORTED`` and refused with 400 when set (see :func:`reject_unsupported`).
"""
