"""Bracketed form decoding is the inverse of stripe-python's encoder."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode

from syncd.stripe_emulator.forms import decode_pairs, parse_key

keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
leaves = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)
values: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3) | st.dictionaries(keys, inner, min_size=1, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(keys, values, max_size=5))
def test_decode_inverts_the_sdk_encoding(params: dict[str, Any]) -> None:
    pairs = [(k, str(v)) for k, v in _api_encode(params)]
    assert decode_pairs(pairs) == params


def test_subscription_style_params() -> None:
    pairs = [
        ("items[0][price]", "price_a"),
        ("items[0][quantity]", "2"),
        ("items[1][id]", "si_1"),
        ("items[1][deleted]", "true"),
        ("expand[]", "latest_invoice"),
        ("expand[]", "customer"),
        ("metadata[k]", ""),
    ]
    assert decode_pairs(pairs) == {
        "items": [{"price": "price_a", "quantity": "2"}, {"id": "si_1", "deleted": "true"}],
        "expand": ["latest_invoice", "customer"],
        "metadata": {"k": ""},
    }


def test_parse_key() -> None:
    assert parse_key("a") == ["a"]
    assert parse_key("a[b][0][]") == ["a", "b", "0", ""]
