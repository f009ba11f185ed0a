"""API resources: one module per Stripe resource family, each exporting ``ROUTES``."""
