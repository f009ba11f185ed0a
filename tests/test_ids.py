"""Generated ids: Schematic's shape, and every base62 character equally likely."""

from __future__ import annotations

import re
from collections import Counter

from syncd.models.base import new_id


def test_shape_and_uniqueness() -> None:
    ids = {new_id("comp") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"comp_[A-Za-z0-9]{22}", i) for i in ids)


def test_characters_are_uniform() -> None:
    counts = Counter(ch for _ in range(20_000) for ch in new_id("x")[2:])
    assert len(counts) == 62
    expected = 20_000 * 22 / 62
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 120  # 61 degrees of freedom: p < 1e-5 above this; a biased mapping is far above
