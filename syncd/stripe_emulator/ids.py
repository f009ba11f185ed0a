"""Stripe-style object ids (``cus_…``, ``sub_…``), reproducible under a seed."""

from __future__ import annotations

import random
import string

__all__ = ["IdGenerator"]

_ALPHABET = string.ascii_letters + string.digits


class IdGenerator:
    """Generates ids like ``cus_Qx81fP0aZ2kLm3`` from a (seeded) RNG.

    Not thread-safe by itself: the emulator calls it under its state lock.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def token(self, length: int = 24) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def new(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_{self.token(length)}"
