"""Migration pushes bill the price change as asked, end to end on the emulator.

A company on Pro v1 ($49/month) is migrated to v2 ($59/month) ten days into its January
period; the push swaps its subscription item with each ``proration_behavior``:

* ``create_prorations``: two pending proration invoice items (unused time on v1, remaining
  time on v2); no invoice now; the next invoice (preview, then the renewal) carries them;
* ``always_invoice``: an invoice of just those prorations, created and paid at once (with a
  failing card it stays open and the subscription goes ``past_due``; the swap stands);
* ``none``: no proration anywhere; the renewal bills v2's full price.

The behaviour comes from the push argument, or else the catalog's ``proration_behavior``
setting; all three sources are used below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from tests.stripe_sync.harness import World

from .helpers import catalog, item_price, price_of, run, subscribe, version_of

V1, V2 = 4900, 5900
DAYS_IN = 10


@dataclass
class Migrated:
    customer: str
    sub: str
    item: str
    at: int
    period: tuple[int, int]
    invoices_before: list[str]

    def prorations(self) -> list[int]:
        """Stripe's amounts for this swap: credit unused v1 time, charge remaining v2 time."""
        start, end = self.period
        fraction = (end - self.at) / (end - start)
        return sorted([-round(V1 * fraction), round(V2 * fraction)])


def migrate(
    world: World, *, proration: str = "create_prorations", card: str | None = None, **push: Any
) -> Migrated:
    catalog(world, proration=proration)
    run(world)
    customer, sub_id = subscribe(world, "A", price_of(world, 1))
    world.sync()
    if card is not None:
        world.set_payment_method(customer, card)
    item = world.client.v1.subscriptions.retrieve(sub_id)["items"].data[0]
    period = (int(item.current_period_start), int(item.current_period_end))
    invoices = [i.id for i in world.client.v1.invoices.list({"subscription": sub_id}).data]
    world.advance(DAYS_IN)
    catalog(world, pro_month=V2, migration="immediate", proration=proration)
    assert version_of(world, customer) == 2
    at = world.now
    result = run(world, **push)
    assert [op.action for op in result.ops if op.action == "swap"] == ["swap"]
    assert item_price(world, sub_id) == price_of(world, 2)
    return Migrated(customer, sub_id, str(item.id), at, period, invoices)


def pending_items(world: World, customer: str) -> list[stripe.InvoiceItem]:
    return list(world.client.v1.invoice_items.list({"customer": customer, "pending": True}).data)


def proration_lines(lines: list[stripe.InvoiceLineItem]) -> list[int]:
    """Stripe's recommended filter: ``parent.subscription_item_details.proration``."""
    return sorted(
        line.amount
        for line in lines
        if line.parent is not None
        and line.parent.subscription_item_details is not None
        and line.parent.subscription_item_details.proration
    )


def new_invoices(world: World, m: Migrated) -> list[stripe.Invoice]:
    listed = world.client.v1.invoices.list({"subscription": m.sub}).data
    return [i for i in listed if i.id not in m.invoices_before]


def renew(world: World, m: Migrated) -> stripe.Invoice:
    world.advance((m.period[1] - world.now) / 86400 + 0.01)
    renewal = new_invoices(world, m)[0]  # newest first
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    return renewal


def settles_on_v2(world: World, m: Migrated) -> None:
    """The webhooks the swap and its invoices caused leave the company on v2."""
    world.sync()
    assert version_of(world, m.customer) == 2
    assert run(world).ops == []


def test_create_prorations_puts_pending_items_on_the_next_invoice(world: World) -> None:
    m = migrate(world)  # the catalog's default: create_prorations
    pending = pending_items(world, m.customer)
    assert sorted(ii.amount for ii in pending) == m.prorations()
    assert all(ii.proration for ii in pending)
    assert {ii.parent.subscription_details.subscription_item for ii in pending if ii.parent} == {m.item}
    assert new_invoices(world, m) == []  # nothing billed now

    preview = world.client.v1.invoices.create_preview({"subscription": m.sub})
    assert proration_lines(preview.lines.data) == m.prorations()
    assert preview.amount_due == V2 + sum(m.prorations())

    renewal = renew(world, m)
    assert proration_lines(renewal.lines.data) == m.prorations()
    assert renewal.amount_paid == V2 + sum(m.prorations())
    assert pending_items(world, m.customer) == []
    settles_on_v2(world, m)


def test_always_invoice_bills_and_collects_the_proration_at_once(world: World) -> None:
    m = migrate(world, proration_behavior="always_invoice")
    (invoice,) = new_invoices(world, m)
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid" and invoice.amount_paid == sum(m.prorations()) > 0
    assert proration_lines(invoice.lines.data) == m.prorations()
    assert len(invoice.lines.data) == 2
    assert world.client.v1.subscriptions.retrieve(m.sub).latest_invoice == invoice.id
    assert pending_items(world, m.customer) == []

    preview = world.client.v1.invoices.create_preview({"subscription": m.sub})
    assert proration_lines(preview.lines.data) == [] and preview.amount_due == V2
    assert renew(world, m).amount_paid == V2
    settles_on_v2(world, m)


def test_always_invoice_with_a_failing_card_still_swaps_and_leaves_the_invoice_open(world: World) -> None:
    """Stripe applies the update and the subscription goes past_due (payment_behavior
    allow_incomplete, the default): the migration stands, dunning takes over."""
    m = migrate(world, proration_behavior="always_invoice", card="pm_card_chargeCustomerFail")
    (invoice,) = new_invoices(world, m)
    assert invoice.status == "open" and invoice.amount_due == sum(m.prorations())
    assert invoice.attempt_count == 1 and invoice.amount_paid == 0
    assert world.client.v1.subscriptions.retrieve(m.sub).status == "past_due"
    settles_on_v2(world, m)  # not swapped again, not moved back


def test_none_bills_no_proration(world: World) -> None:
    m = migrate(world, proration="none")  # from the catalog setting
    assert world.client.v1.invoice_items.list({"customer": m.customer}).data == []
    assert new_invoices(world, m) == []
    preview = world.client.v1.invoices.create_preview({"subscription": m.sub})
    assert proration_lines(preview.lines.data) == [] and preview.amount_due == V2
    renewal = renew(world, m)
    assert renewal.amount_paid == V2 and proration_lines(renewal.lines.data) == []
    settles_on_v2(world, m)
