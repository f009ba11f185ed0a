"""Request signatures: Standard Webhooks (default) and Schematic's own scheme.

Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>``
where the key is the base64 part of the ``whsec_`` secret (verifiable with the
``standardwebhooks`` package). Schematic: ``X-Schematic-Webhook-Signature: hex(HMAC-SHA256(
secret, body + "+" + ts))`` keyed with the secret string as is (its SDKs' verifiers).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "==")  # tolerate unpadded secrets, as verifiers do
    except (binascii.Error, ValueError):
        # Not base64 (an imported secret): sign with its bytes, as a verifier given bytes would.
        return encoded.encode()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_standard_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def schematic_signature(secret: str, timestamp: int, body: bytes) -> str:
    message = body + b"+" + str(timestamp).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(scheme: str, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers for ``scheme`` (standard | schematic | both)."""
    headers: dict[str, str] = {}
    if scheme in ("standard", "both"):
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = standard_signature(secret, msg_id, timestamp, body)
    if scheme in ("schematic", "both"):
        headers["X-Schematic-Webhook-Signature"] = schematic_signature(secret, timestamp, body)
        headers["X-Schematic-Webhook-Signature-Version"] = "v1"
        headers["X-Schematic-Webhook-Timestamp"] = str(timestamp)
    return headers
