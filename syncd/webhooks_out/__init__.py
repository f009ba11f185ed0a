"""Outbound webhooks: change-log events turned into signed, retried, ordered HTTP deliveries.

::

    change_log --syncd_publish--> events.py (render envelopes, limit thresholds in limits.py)
               --enqueue.py-----> webhook_delivery rows (one per endpoint and event; stable ids)
               --delivery.py----> claim due rows, POST them signed (signing.py), record results,
                                  back off, dead-letter, auto-disable failing endpoints
    worker.py runs delivery rounds in a background thread of the daemon.

The webhook adapter (``syncd_webhook``) only wires these into the plugin hooks; the HTTP API
(``POST /webhooks/{id}/test``) and the CLI (``syncd webhooks replay``) use them directly.
"""

from __future__ import annotations
