"""syncd -> Stripe: catalog push (products, prices), migrated subscriptions, usage to meters.

Everything written carries an idempotency key from :func:`syncd.stripe_api.idempotency_key`
(prefix ``syncd-``) and ``metadata["syncd_origin"]``, so the webhooks it causes are recognised
as echoes by the inbound apply, and a re-run after a crash finds (by id, lookup key or
metadata) what the interrupted run created instead of creating it again.
"""
