"""Subscription schedules: phases, and what happens at their boundaries.

A schedule's phases are contiguous ``[start_date, end_date)`` spans, each with its
own items. When the clock crosses a boundary the subscription takes the next phase's
items (prorating as the phase says); after the last phase, ``end_behavior`` either
releases the subscription (status ``released``) or cancels it (status
``completed``). A ``not_started`` schedule creates its subscription when its first
phase starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .store import JSON
from .subscribing import ItemSpec, apply_item_changes, cancel_now, items_of

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["current_index", "next_transition", "sync_current_phase", "transition"]


def current_index(sched: JSON, now: int) -> int | None:
    for n, phase in enumerate(sched["phases"]):
        end = phase["end_date"]
        if phase["start_date"] <= now and (end is None or now < end):
            return n
    return None


def next_transition(sched: JSON) -> int | None:
    if sched["status"] == "not_started":
        return int(sched["phases"][0]["start_date"])
    if sched["status"] == "active":
        idx = sched["_phase"]
        end = sched["phases"][idx]["end_date"]
        return None if end is None else int(end)
    return None


def _set_current(sched: JSON, idx: int | None) -> None:
    sched["_phase"] = idx
    if idx is None:
        sched["current_phase"] = None
    else:
        phase = sched["phases"][idx]
        sched["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}


def phase_specs(phase: JSON) -> list[ItemSpec]:
    return [
        ItemSpec(None, item["price"], item["quantity"], False, dict(item["metadata"]))
        for item in phase["items"]
    ]


def sync_current_phase(emu: Emulator, sched: JSON, idx: int) -> None:
    """Make the subscription's items match phase ``idx`` (emits the update)."""
    sub = emu.store.objects[sched["subscription"]]
    phase = sched["phases"][idx]
    wanted = sorted((i["price"], i["quantity"]) for i in phase["items"])
    have = sorted((i["price"], i["quantity"]) for i in items_of(emu, sub))
    before = emu.render(sub)
    if wanted != have:
        apply_item_changes(
            emu,
            sub,
            phase_specs(phase),
            proration_behavior=phase["proration_behavior"],
            replace=True,
        )
    if phase["metadata"]:
        sub["metadata"].update(phase["metadata"])
    emu.emit_update("customer.subscription.updated", sub, before)


def _start(emu: Emulator, sched: JSON) -> None:
    from .resources.subscriptions import create_from_phase

    before = emu.render(sched)
    phase = sched["phases"][0]
    sub = create_from_phase(emu, sched, phase)
    sched["subscription"] = sub["id"]
    sched["status"] = "active"
    _set_current(sched, 0)
    emu.emit_update("subscription_schedule.updated", sched, before)


def transition(emu: Emulator, sched: JSON) -> None:
    if sched["status"] == "not_started":
        _start(emu, sched)
        return
    before = emu.render(sched)
    idx = sched["_phase"] + 1
    sub = emu.store.objects[sched["subscription"]]
    if idx < len(sched["phases"]):
        _set_current(sched, idx)
        sync_current_phase(emu, sched, idx)
        emu.emit_update("subscription_schedule.updated", sched, before)
        return
    _set_current(sched, None)
    now = emu.now()
    if sched["end_behavior"] == "cancel":
        sched["status"] = "completed"
        sched["completed_at"] = now
        sub["schedule"] = None
        emu.emit("subscription_schedule.completed", sched)
        cancel_now(emu, sub, "cancellation_requested")
        return
    release(emu, sched)


def release(emu: Emulator, sched: JSON) -> None:
    sub_id = sched["subscription"]
    sched["status"] = "released"
    sched["released_at"] = emu.now()
    sched["released_subscription"] = sub_id
    sched["subscription"] = None
    _set_current(sched, None)
    emu.emit("subscription_schedule.released", sched)
    sub = emu.store.find(sub_id) if sub_id else None
    if sub is not None:
        before = emu.render(sub)
        sub["schedule"] = None
        emu.emit_update("customer.subscription.updated", sub, before)
