"""The client addresses that presented a correct token or logged in lately: the overall
limit on failed authentications spares them (bridge/web/auth_limits.py)."""

from __future__ import annotations

import time

import redis

from bridge.store.connection import authenticated_client_key

REMEMBERED_SECONDS = 24 * 3600  # a client that authenticated within a day is known
# Each process remembers what it wrote for this long, so a busy client costs Redis one
# write per ten minutes and no read.
LOCAL_SECONDS = 600


class AuthenticatedClients:
    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self._seen: dict[str, float] = {}  # address -> monotonic time to write it again

    def mark(self, address: str) -> None:
        now = time.monotonic()
        if self._seen.get(address, 0.0) > now:
            return
        self._redis.set(authenticated_client_key(address), 1, ex=REMEMBERED_SECONDS)
        self._seen[address] = now + LOCAL_SECONDS

    def known(self, address: str) -> bool:
        if self._seen.get(address, 0.0) > time.monotonic():
            return True
        return bool(self._redis.exists(authenticated_client_key(address)))
