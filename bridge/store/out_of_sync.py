"""Invoices whose copy at Finan differs from the last body Finan accepted.

A check of what Finan holds (``bridge.invoices.finan_check``) that finds a difference
remembers the invoice here; a later check that finds it in sync, or Finan accepting a body
for it again (a re-sync), forgets it. One hash, ``bridge:out_of_sync``: invoice id → JSON
``{"checked_at", "fields"}``, the names of the fields that differ and when that was seen.
Only field names are kept (never values: they may be customer data), so the hash needs no
encryption. The status page lists it, and ``bridge_out_of_sync_invoices`` counts it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bridge.store.connection import out_of_sync_key

LISTED = 1000  # the status page shows at most this many


@dataclass(frozen=True)
class OutOfSync:
    invoice_id: int
    checked_at: str
    fields: list[str]


def forget_step(invoice_id: int) -> Callable[[redis.client.Pipeline], None]:
    """A step for ``RecordStore.save``'s transaction: forget ``invoice_id`` (Finan has just
    accepted the body the record keeps, so it holds exactly that)."""
    return lambda pipe: pipe.hdel(out_of_sync_key(), invoice_id)


class OutOfSyncStore:
    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection

    def remember(self, invoice_id: int, checked_at: str, fields: list[str]) -> None:
        entry = json.dumps({"checked_at": checked_at, "fields": fields})
        self._redis.hset(out_of_sync_key(), str(invoice_id), entry)

    def forget(self, invoice_id: int) -> None:
        self._redis.hdel(out_of_sync_key(), str(invoice_id))

    def count(self) -> int:
        return int(self._redis.hlen(out_of_sync_key()))

    def get(self, invoice_id: int) -> OutOfSync | None:
        raw = self._redis.hget(out_of_sync_key(), str(invoice_id))
        return _entry(str(invoice_id).encode(), raw) if raw is not None else None

    def listed(self, limit: int = LISTED) -> list[OutOfSync]:
        """Up to ``limit`` of them, most recently checked first."""
        found = [_entry(k, v) for k, v in self._redis.hgetall(out_of_sync_key()).items()]
        found.sort(key=lambda entry: (entry.checked_at, entry.invoice_id), reverse=True)
        return found[:limit]


def _entry(raw_id: bytes, raw: bytes) -> OutOfSync:
    value = json.loads(raw)
    return OutOfSync(int(raw_id), str(value.get("checked_at", "")), list(value.get("fields", [])))
