"""Stripe -> syncd: the inbound webhook endpoint, the durable inbox, and applying events."""
