"""The bridge's record of each CRM invoice: what Finan last accepted, and the state.

One JSON value per invoice under ``bridge:record:<id>``. The record is the content layer of
idempotency: ``fingerprint`` is the SHA-256 of the exact bytes of the last body Finan
accepted, so an operation whose mapped body is unchanged sends nothing.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis

from bridge.encryption import Cipher
from bridge.redis_connection import record_key

ISSUED = "issued"
CANCELLED = "cancelled"
QUEUED = "queued"
FAILED = "failed"
DEAD = "dead"

_MONEY_FIELDS = ("total_amount", "tax_amount")


def provider_invoice_id(tourwell_base_url: str, invoice_id: int) -> str:
    """The Finan id of a CRM invoice: derived, never stored first (DESIGN.md section 5).

    A repeat after a crash, a lost Redis key or a worker death lands on the same Finan
    invoice, so nothing is ever issued twice.
    """
    name = f"{tourwell_base_url.rstrip('/')}/api/v1/invoices/{invoice_id}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Record:
    invoice_id: int
    provider_invoice_id: str
    state: str | None = None
    code: str | None = None
    provider_order_code: str | None = None
    provider_system_code: str | None = None
    total_amount: Decimal | None = None
    tax_amount: Decimal | None = None
    fingerprint: str | None = None
    last_body: str | None = None  # the exact JSON text of the last accepted body
    last_error: dict[str, Any] | None = None
    cancel_note: str | None = None
    lookup_url: str | None = None
    created_at: str = dataclasses.field(default_factory=now_iso)
    updated_at: str = dataclasses.field(default_factory=now_iso)

    @property
    def accepted(self) -> bool:
        """Finan has accepted a body for this invoice at least once."""
        return self.fingerprint is not None

    def to_json(self) -> str:
        value = dataclasses.asdict(self)
        for name in _MONEY_FIELDS:
            if value[name] is not None:
                value[name] = str(value[name])
        return json.dumps(value, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Record:
        value = json.loads(raw)
        for name in _MONEY_FIELDS:
            if value.get(name) is not None:
                value[name] = Decimal(value[name])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


class RecordStore:
    def __init__(
        self, connection: redis.Redis, tourwell_base_url: str, cipher: Cipher | None = None
    ) -> None:
        self._redis = connection
        self._base_url = tourwell_base_url
        self._cipher = cipher or Cipher(())

    def get(self, invoice_id: int) -> Record | None:
        raw = self._redis.get(record_key(invoice_id))
        return Record.from_json(self._cipher.open(raw)) if raw is not None else None

    def get_or_new(self, invoice_id: int) -> Record:
        return self.get(invoice_id) or Record(
            invoice_id=invoice_id,
            provider_invoice_id=provider_invoice_id(self._base_url, invoice_id),
        )

    def save(self, record: Record) -> None:
        record.updated_at = now_iso()
        self._redis.set(record_key(record.invoice_id), self._cipher.seal(record.to_json()))
