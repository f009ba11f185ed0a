"""The hand-rolled Stripe-Signature check agrees with the Stripe SDK's ``verify_header``."""

from __future__ import annotations

import hashlib
import hmac
import time

import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.stripe_sync.webhook import verify_signature

SECRETS = ["whsec_current", "whsec_previous"]


def sdk_verifies(raw: bytes, header: str, secrets: list[str], tolerance: int) -> bool:
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(raw.decode(), header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        return True
    return False


def mac(secret: str, timestamp: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + raw, hashlib.sha256).hexdigest()


now = int(time.time())
timestamps = st.one_of(
    st.integers(now - 200, now + 200).map(str),  # fresh (or in the future)
    st.integers(now - 10**6, now - 1000).map(str),  # stale
    st.sampled_from(["", "abc", " 12", "+0", "1_000", "-5", f"0{now}"]),
)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, str]:
    raw = draw(st.text(max_size=40)).encode()
    t = draw(timestamps)
    parts = [f"t={t}"] if draw(st.integers(0, 9)) else []  # sometimes no timestamp at all
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["good", "old", "wrong", "junk", "v0"]))
        if kind in ("good", "old") and t.strip().lstrip("+-").replace("_", "").isdigit():
            secret = SECRETS[0] if kind == "good" else SECRETS[1]
            parts.append(f"v1={mac(secret, t, raw)}")
        elif kind == "wrong":
            parts.append(f"v1={hashlib.sha256(raw).hexdigest()}")
        elif kind == "v0" and t.strip().lstrip("+-").replace("_", "").isdigit():
            parts.append(f"v0={mac(SECRETS[0], t, raw)}")
        else:
            parts.append(draw(ascii_text))
    draw(st.randoms()).shuffle(parts)
    if draw(st.booleans()):
        parts.append(f"t={draw(timestamps)}")  # a second t: the first one counts
    return raw, ",".join(parts)


@settings(max_examples=400, deadline=None)
@given(
    delivery=deliveries(),
    tolerance=st.sampled_from([0, 300]),
    secrets=st.sampled_from([SECRETS, SECRETS[1:], []]),
)
def test_agrees_with_the_sdk(delivery: tuple[bytes, str], tolerance: int, secrets: list[str]) -> None:
    raw, header = delivery
    assert verify_signature(raw, header, secrets, tolerance) is sdk_verifies(raw, header, secrets, tolerance)


def test_any_of_several_v1_signatures_and_any_secret_verifies() -> None:
    now = int(time.time())  # at test time: the module's is from collection, minutes earlier in a full run
    raw, t = b'{"id":"evt_1"}', str(now)
    header = f"t={t},v1={'0' * 64},v1={mac(SECRETS[1], t, raw)}"
    assert verify_signature(raw, header, SECRETS, 300)
    assert not verify_signature(raw, header, SECRETS[:1], 300)
    assert not verify_signature(raw, f"t={now - 301},v1={mac(SECRETS[0], str(now - 301), raw)}", SECRETS, 300)
    assert verify_signature(raw, f"t={now - 301},v1={mac(SECRETS[0], str(now - 301), raw)}", SECRETS, 0)
