"""Upgrade or downgrade, as Schematic documents it (catalog/management.mdx).

Both sides paid: it is an upgrade if the billing period gets longer, the base price gets
higher (an equal base price counts as an upgrade), an add-on is added or pay-in-advance
units grow; otherwise a downgrade. From nothing paid it is a subscribe.
"""

from __future__ import annotations

from dataclasses import dataclass

INTERVAL_MONTHS = {"month": 1, "year": 12}


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a change: the base price (minor units per interval), add-ons, quantity."""

    amount: int
    interval: str
    add_ons: frozenset[str]
    quantity: int = 1

    @property
    def monthly(self) -> float:
        return self.amount * self.quantity / INTERVAL_MONTHS.get(self.interval, 1)


def classify(current: Side | None, target: Side, *, base_changed: bool) -> str:
    """subscribe | upgrade | downgrade | unchanged."""
    if current is None or current.amount <= 0:
        return "subscribe" if target.amount > 0 or target.add_ons else "unchanged"
    added = target.add_ons - current.add_ons
    removed = current.add_ons - target.add_ons
    if not base_changed and not added and not removed and target.quantity == current.quantity:
        return "unchanged"
    if INTERVAL_MONTHS.get(target.interval, 1) > INTERVAL_MONTHS.get(current.interval, 1):
        return "upgrade"
    if INTERVAL_MONTHS.get(target.interval, 1) < INTERVAL_MONTHS.get(current.interval, 1):
        return "downgrade"
    if base_changed and target.amount != current.amount:
        return "upgrade" if target.amount > current.amount else "downgrade"
    if added or target.quantity > current.quantity:
        return "upgrade"
    if removed or target.quantity < current.quantity:
        return "downgrade"
    return "upgrade"  # same base price, different plan: documented as an upgrade
