"""One moving-window limit of calls a minute, shared by every process through Redis (the
``limits`` library's moving window, in the bridge's Redis): the CRM's rate limit
(``tourwell/ratelimit.py``) and the pace of background calls to Finan (``finan/pacing.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from bridge.store.connection import RATE_LIMIT_PREFIX


class MovingWindow:
    def __init__(self, connection: redis.Redis, per_minute: int, window_id: str) -> None:
        storage = RedisStorage(
            "redis://", connection_pool=connection.connection_pool, key_prefix=RATE_LIMIT_PREFIX
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute)
        self._window_id = window_id

    def acquire(self, max_wait: float, refusal: Callable[[int], Exception]) -> bool:
        """Take one slot, waiting up to ``max_wait`` s for it: True if it had to wait. When
        no slot frees up in time, raise ``refusal(seconds until one does)``."""
        deadline = time.monotonic() + max_wait
        waited = False
        while not self._limiter.hit(self._item, self._window_id):
            reset_at = self._limiter.get_window_stats(self._item, self._window_id).reset_time
            wait = max(reset_at - time.time(), 0.05)
            if time.monotonic() + wait > deadline:
                raise refusal(max(1, round(wait)))
            waited = True
            time.sleep(wait)
        return waited
