"""The client addresses that presented a correct token or logged in lately: the overall
limit on failed authentications spares them (bridge/web/auth_limits.py)."""

from __future__ import annotations

import time
from collections import OrderedDict

import redis

from bridge.store.connection import authenticated_client_key

REMEMBERED_SECONDS = 24 * 3600  # a client that authenticated within a day is known
# Each process remembers what it wrote for this long, so a busy client costs Redis one
# write per ten minutes and no read.
LOCAL_SECONDS = 600
# ...and at most this many addresses: past it, the entries written longest ago are
# forgotten (their next request writes Redis again). Memory is bounded per process.
LOCAL_MAX = 10_000


class AuthenticatedClients:
    def __init__(self, connection: redis.Redis, local_max: int = LOCAL_MAX) -> None:
        self._redis = connection
        self.local_max = local_max
        # address -> monotonic time to write it again, in the order they were written
        self._seen: OrderedDict[str, float] = OrderedDict()

    def mark(self, address: str) -> None:
        now = time.monotonic()
        if self._seen.get(address, 0.0) > now:
            return
        self._redis.set(authenticated_client_key(address), 1, ex=REMEMBERED_SECONDS)
        self._seen[address] = now + LOCAL_SECONDS
        self._seen.move_to_end(address)
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop the expired entries (the oldest written come first), then the oldest
        while there are too many."""
        while self._seen:
            address, until = next(iter(self._seen.items()))
            if until > now and len(self._seen) <= self.local_max:
                return
            del self._seen[address]

    def cached(self) -> int:
        """How many addresses this process remembers (bounded by ``local_max``)."""
        return len(self._seen)

    def known(self, address: str) -> bool:
        if self._seen.get(address, 0.0) > time.monotonic():
            return True
        return bool(self._redis.exists(authenticated_client_key(address)))
