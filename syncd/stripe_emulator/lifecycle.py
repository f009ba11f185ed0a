"""Everything that happens when emulator time passes.

:func:`run_until` moves the clock to a target instant in steps: it repeatedly finds
the earliest due transition, sets the clock to that instant, runs it, and goes on.
Events therefore carry the instant at which Stripe would have produced them. At equal
instants the order is: schedule phases, ``cancel_at``, trial-will-end, renewals (which
also end trials and honour ``cancel_at_period_end``), dunning retries, expiry of
``incomplete`` subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from . import billing, metering, scheduling
from .clock import period_boundary
from .payments import payment_method_for
from .store import JSON
from .subscribing import cancel_now, is_metered, items_of, period_lines

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["LIVE", "run_until", "usage_lines"]

Due = tuple[int, int, int, Callable[[], None]]
MAX_STEPS = 100_000
LIVE = ("active", "trialing", "past_due", "unpaid")


def _due(emu: Emulator) -> list[Due]:
    out: list[Due] = []
    seq = 0

    def add(ts: int | None, prio: int, fn: Callable[[], None]) -> None:
        nonlocal seq
        if ts is not None:
            seq += 1
            out.append((ts, prio, seq, fn))

    for sched in emu.store.all("subscription_schedule"):
        add(scheduling.next_transition(sched), 0, partial(scheduling.transition, emu, sched))
    for sub in emu.store.all("subscription"):
        status = sub["status"]
        if status == "incomplete":
            add(sub.get("_expires_at"), 6, partial(expire, emu, sub))
            continue
        if status not in LIVE:
            continue
        add(sub["cancel_at"], 1, partial(cancel_now, emu, sub, "cancellation_requested"))
        add(sub.get("_trial_will_end_at"), 2, partial(trial_will_end, emu, sub))
        add(sub["_period_end"], 3, partial(renew, emu, sub))
    for invoice in emu.store.all("invoice"):
        if invoice["status"] == "open" and invoice["auto_advance"]:
            add(invoice["next_payment_attempt"], 5, partial(retry, emu, invoice))
    return out


def run_until(emu: Emulator, target: int) -> None:
    for _ in range(MAX_STEPS):
        due = _due(emu)
        if not due:
            break
        ts, _prio, _seq, fn = min(due, key=lambda d: d[:3])
        if ts > target:
            break
        if ts > emu.now():
            emu.clock.set(ts)
        fn()
    else:  # pragma: no cover - a transition that never clears itself
        raise RuntimeError("clock advance did not settle")
    if target > emu.now():
        emu.clock.set(target)


def trial_will_end(emu: Emulator, sub: JSON) -> None:
    sub["_trial_will_end_at"] = None
    emu.emit("customer.subscription.trial_will_end", sub)


def expire(emu: Emulator, sub: JSON) -> None:
    sub["_expires_at"] = None
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = emu.now()
    for invoice in billing.open_invoices(emu, sub["id"]):
        billing.void_invoice(emu, invoice)
    emu.emit("customer.subscription.deleted", sub)


def usage_lines(emu: Emulator, sub: JSON, start: int, end: int) -> list[JSON]:
    lines: list[JSON] = []
    for item in items_of(emu, sub):
        price = emu.store.objects[item["price"]]
        if not is_metered(price):
            continue
        meter_id = price["recurring"].get("meter")
        usage = metering.usage(emu, meter_id, sub["customer"], start, end) if meter_id else 0.0
        quantity = round(usage)
        lines.append(
            billing.subscription_line(
                emu,
                sub,
                item,
                start=start,
                end=end,
                quantity=quantity,
                amount=round(usage * int(price["unit_amount"] or 0)),
            )
        )
    return lines


def renew(emu: Emulator, sub: JSON) -> None:
    """The end of a period: cancel at period end, end a trial, or renew and invoice."""
    before = emu.render(sub)
    if sub["cancel_at_period_end"]:
        cancel_now(emu, sub, "cancellation_requested")
        return
    old_start, old_end = sub["_period_start"], sub["_period_end"]
    was_trial = sub["status"] == "trialing"
    if was_trial:
        customer = emu.store.objects[sub["customer"]]
        missing = payment_method_for(emu, customer, sub) is None
        behavior = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
        if missing and behavior == "cancel":
            cancel_now(emu, sub, "cancellation_requested")
            return
        if missing and behavior == "pause":
            sub["status"] = "paused"
            sub["_trial_will_end_at"] = None
            emu.emit_update("customer.subscription.updated", sub, before)
            emu.emit("customer.subscription.paused", sub)
            return
        sub["_anchor"] = old_end
        sub["_cycle"] = 0
        sub["billing_cycle_anchor"] = old_end
    else:
        sub["_cycle"] += 1
    sub["_period_start"] = old_end
    sub["_period_end"] = period_boundary(
        sub["_anchor"], sub["_interval"], sub["_interval_count"], sub["_cycle"] + 1
    )
    lines = period_lines(emu, sub) + usage_lines(emu, sub, old_start, old_end)
    invoice = billing.create_invoice(
        emu, sub, lines, reason="subscription_cycle", period=(old_start, old_end)
    )
    if sub["status"] == "unpaid":
        invoice["auto_advance"] = False  # invoices of unpaid subscriptions stay open
    elif billing.attempt_payment(emu, invoice):
        if sub["status"] == "trialing" or not billing.open_invoices(emu, sub["id"]):
            sub["status"] = "active"
    else:
        sub["status"] = "past_due"
    emu.emit_update("customer.subscription.updated", sub, before)


def retry(emu: Emulator, invoice: JSON) -> None:
    """A dunning retry of an open invoice; exhausting retries applies the final action."""
    sub = emu.store.find(invoice["subscription"]) if invoice.get("subscription") else None
    before = emu.render(sub) if sub is not None else None
    ok = billing.attempt_payment(emu, invoice)
    if sub is None or before is None:
        return
    if ok:
        if sub["status"] in ("past_due", "unpaid") and not billing.open_invoices(emu, sub["id"]):
            sub["status"] = "active"
    elif invoice["next_payment_attempt"] is None and sub["status"] == "past_due":
        invoice["auto_advance"] = False
        action = emu.config.dunning_final_action
        if action == "cancel":
            cancel_now(emu, sub, "payment_failed")
            return
        if action == "unpaid":
            sub["status"] = "unpaid"
    emu.emit_update("customer.subscription.updated", sub, before)
