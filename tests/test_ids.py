"""Generated ids: Schematic's shape, and every base62 character equally likely."""

from __future__ import annotations

import os
import re
import threading
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


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """Ids come from a per-thread buffer of random bytes; a child must not inherit it."""
    new_id("x")  # the buffer is filled and partly used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, and never back into pytest
        try:
            os.write(write, " ".join(new_id("x") for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        childs = set(pipe.read().split())
    parents = {new_id("x") for _ in range(50)}
    assert len(childs) == 50 and not childs & parents


def test_threads_draw_their_own_ids() -> None:
    seen: list[str] = []

    def draw() -> None:
        seen.extend(new_id("x") for _ in range(2_000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 8_000
