"""Pacing of calls to the CRM: one moving-window limit shared by every process via Redis.

Tourwell allows 60 requests per minute per token. Web processes and queue workers all
count against the same window (the ``limits`` library's moving window, stored in the
bridge's Redis), and a caller that finds the window full waits for a slot instead of
earning a 429, up to ``max_wait`` seconds. Calls that waited, and calls refused for want of
a slot, are counted (``bridge_crm_rate_limit_total``): the limit's saturation.
"""

from __future__ import annotations

import time

import redis
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from bridge.errors import CrmUnavailable
from bridge.observability.metrics import CRM_RATE_LIMIT

KEY_PREFIX = "bridge:ratelimit"


class CrmRateLimiter:
    def __init__(self, connection: redis.Redis, per_minute: int, token_id: str) -> None:
        storage = RedisStorage(
            "redis://", connection_pool=connection.connection_pool, key_prefix=KEY_PREFIX
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute)
        self._token_id = token_id  # a digest of the CRM token: the limit is per token

    def acquire(self, max_wait: float) -> None:
        """Take one slot, waiting up to ``max_wait`` s; else raise ``CrmUnavailable``."""
        deadline = time.monotonic() + max_wait
        waited = False
        while not self._limiter.hit(self._item, self._token_id):
            reset_at = self._limiter.get_window_stats(self._item, self._token_id).reset_time
            wait = max(reset_at - time.time(), 0.05)
            if time.monotonic() + wait > deadline:
                CRM_RATE_LIMIT.labels("refused").inc()
                raise CrmUnavailable(
                    "the CRM's rate limit is reached; try again shortly",
                    retry_after=max(1, round(wait)),
                )
            waited = True
            time.sleep(wait)
        if waited:  # counted once per call that had to wait, when it got its slot
            CRM_RATE_LIMIT.labels("waited").inc()
