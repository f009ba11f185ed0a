"""syncd -> Stripe billing: customers, plan changes (upgrades, immediate and scheduled
downgrades) and the scheduled-downgrade bookkeeping shared with the inbound sync.

Who owns what:

* syncd owns the catalog (plans, versions, prices, limits), the choice of a company's plan
  when it is changed through syncd (API, CLI), and pending downgrades (``ScheduledDowngrade``).
* Stripe owns customers' payment state: subscription status, items actually billed,
  periods, invoices, and what a schedule does at its phase boundary. The local plan of a
  billed company is always derived from Stripe's answer (``stripe_sync.mapping``), never
  written ahead of it.
* Every write carries an idempotency key ``syncd-...`` and ``syncd_origin`` metadata where
  the object takes metadata; the webhooks those writes cause are recognised as echoes.
  Changes Stripe makes on its own clock (schedule phases, renewals) carry no request and
  are applied like any foreign change.
"""
