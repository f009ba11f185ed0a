"""syncd -> Stripe billing: customers, plan changes (upgrades, immediate and scheduled
downgrades) and the scheduled-downgrade bookkeeping shared with the inbound sync."""
