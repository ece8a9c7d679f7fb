"""Pacing of the bridge's background calls to Finan (reconciliation): one moving window of
``PROVIDER_RATE_LIMIT_PER_MIN`` calls, shared by every process through Redis.

Finan documents no rate limit; this keeps a reconciliation of thousands of invoices from
bursting at it. Calls made for a waiting caller (the CRM's operations, an operator's check
of one invoice) are not paced: they are one at a time and someone is waiting.
"""

from __future__ import annotations

import time

import redis
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from bridge.errors import ProviderUnavailable

KEY_PREFIX = "bridge:ratelimit"
WINDOW_ID = "finan-background"


class FinanPacer:
    def __init__(self, connection: redis.Redis, per_minute: int) -> None:
        storage = RedisStorage(
            "redis://", connection_pool=connection.connection_pool, key_prefix=KEY_PREFIX
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(max(1, per_minute))

    def acquire(self, max_wait: float) -> None:
        """Take one slot, waiting up to ``max_wait`` s; else raise ``ProviderUnavailable``
        (with the seconds until a slot frees up as its ``retry_after``)."""
        deadline = time.monotonic() + max_wait
        while not self._limiter.hit(self._item, WINDOW_ID):
            reset_at = self._limiter.get_window_stats(self._item, WINDOW_ID).reset_time
            wait = max(reset_at - time.time(), 0.05)
            if time.monotonic() + wait > deadline:
                raise ProviderUnavailable(
                    "the pace of background calls to Finan (PROVIDER_RATE_LIMIT_PER_MIN) is "
                    "reached; try again shortly",
                    retry_after=max(1, round(wait)),
                )
            time.sleep(wait)
