"""The index of batches (bulk re-syncs and reconciliations), newest first.

One sorted set, ``bridge:batches:by_time``: batch id -> the Unix time it started. A batch's
own keys expire ``ttl`` seconds after its last step, never sooner than ``ttl`` after it
started; so an entry older than ``ttl`` is dropped whenever the index is written or read
(``ZREMRANGEBYSCORE``), and an entry whose batch is gone anyway is dropped by the reader
that finds it gone (``forget``). The index never names an expired batch for long, and
its size stays that of one ``ttl`` of batches.
"""

from __future__ import annotations

import time

import redis

from bridge.store.connection import batch_index_key


def _trim(pipe: redis.client.Pipeline | redis.Redis, ttl: int, now: float) -> None:
    pipe.zremrangebyscore(batch_index_key(), "-inf", f"({now - ttl}")


def add_step(
    pipe: redis.client.Pipeline, batch_id: str, ttl: int, now: float | None = None
) -> None:
    """A step for the transaction that creates a batch: index it, and drop the expired."""
    now = time.time() if now is None else now
    pipe.zadd(batch_index_key(), {batch_id: now})
    _trim(pipe, ttl, now)


class BatchIndex:
    def __init__(self, connection: redis.Redis, ttl: int) -> None:
        self._redis = connection
        self._ttl = ttl

    def page(self, offset: int, limit: int) -> tuple[int, list[str]]:
        """(how many batches are indexed, ``limit`` batch ids from ``offset``), newest
        first; the expired are dropped first."""
        with self._redis.pipeline(transaction=True) as pipe:
            _trim(pipe, self._ttl, time.time())
            pipe.zcard(batch_index_key())
            pipe.zrevrange(batch_index_key(), offset, offset + limit - 1)
            _trimmed, total, members = pipe.execute()
        return int(total), [member.decode() for member in members]

    def forget(self, batch_ids: list[str]) -> None:
        """Drop batches found gone (their keys expired or were deleted)."""
        if batch_ids:
            self._redis.zrem(batch_index_key(), *batch_ids)
