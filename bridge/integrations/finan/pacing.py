"""Pacing of the bridge's background calls to Finan (reconciliation): one moving window of
``PROVIDER_RATE_LIMIT_PER_MIN`` calls, shared by every process through Redis.

Finan documents no rate limit; this keeps a reconciliation of thousands of invoices from
bursting at it. Calls made for a waiting caller (the CRM's operations, an operator's check
of one invoice) are not paced: they are one at a time and someone is waiting.
"""

from __future__ import annotations

import redis

from bridge.errors import ProviderUnavailable
from bridge.integrations.moving_window import MovingWindow

WINDOW_ID = "finan-background"


class FinanPacer:
    def __init__(self, connection: redis.Redis, per_minute: int) -> None:
        self._window = MovingWindow(connection, max(1, per_minute), WINDOW_ID)

    def acquire(self, max_wait: float) -> None:
        """Take one slot, waiting up to ``max_wait`` s; else raise ``ProviderUnavailable``
        (with the seconds until a slot frees up as its ``retry_after``)."""
        self._window.acquire(max_wait, _refusal)


def _refusal(retry_after: int) -> ProviderUnavailable:
    return ProviderUnavailable(
        "the pace of background calls to Finan (PROVIDER_RATE_LIMIT_PER_MIN) is reached; "
        "try again shortly",
        retry_after=retry_after,
    )
