"""Pacing of calls to the CRM: one moving-window limit shared by every process via Redis.

Tourwell allows 60 requests per minute per token. Web processes and queue workers all
count against the same window (the ``limits`` library's moving window, stored in the
bridge's Redis), and a caller that finds the window full waits for a slot instead of
earning a 429, up to ``max_wait`` seconds. Calls that waited, and calls refused for want of
a slot, are counted (``bridge_crm_rate_limit_total``): the limit's saturation.
"""

from __future__ import annotations

import redis

from bridge.errors import CrmUnavailable
from bridge.integrations.moving_window import MovingWindow
from bridge.observability.metrics import CRM_RATE_LIMIT


class CrmRateLimiter:
    def __init__(self, connection: redis.Redis, per_minute: int, token_id: str) -> None:
        # token_id: a digest of the CRM token: the limit is per token
        self._window = MovingWindow(connection, per_minute, token_id)

    def acquire(self, max_wait: float) -> None:
        """Take one slot, waiting up to ``max_wait`` s; else raise ``CrmUnavailable``."""
        try:
            waited = self._window.acquire(max_wait, _refusal)
        except CrmUnavailable:
            CRM_RATE_LIMIT.labels("refused").inc()
            raise
        if waited:  # counted once per call that had to wait, when it got its slot
            CRM_RATE_LIMIT.labels("waited").inc()


def _refusal(retry_after: int) -> CrmUnavailable:
    return CrmUnavailable(
        "the CRM's rate limit is reached; try again shortly", retry_after=retry_after
    )
