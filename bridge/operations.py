"""Issue, update and cancel: the semantics of DESIGN.md section 5.

Each operation runs under the invoice's Redis lock (so operations on one invoice are
serialised, and a concurrent one gets ``409`` + ``Retry-After`` instead of waiting), checks
the transition against the record, maps the invoice, and compares the fingerprint of the
exact bytes it would send with the one Finan last accepted (the content layer): unchanged
means nothing is sent and the caller gets the answer a first success would have had.

Transitions:
    issue   allowed unless cancelled; a second issue must carry the same content
    update  only after an issue Finan accepted, never after cancel
    cancel  only after an issue Finan accepted; a repeat is answered from the record
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from bridge.clients.finan import FinanAnswer, FinanClient
from bridge.clients.tourwell import TourwellClient
from bridge.errors import (
    Conflict,
    InFlight,
    NotFound,
    ProviderRejected,
    Unavailable,
    Unprocessable,
)
from bridge.mapping import MappingConfig, apply_update, cancel_body, map_invoice
from bridge.records import CANCELLED, FAILED, ISSUED, Record, RecordStore
from bridge.redis_connection import lock_key
from schemas.finan import decode_request, encode_request
from schemas.tourwell import load_invoice

log = logging.getLogger(__name__)

# The lock expires so that a process killed while holding it does not block the invoice.
# Its time is renewed (and ownership checked) before each step that must not overlap
# another operation: the call to Finan, and the save of the record after it. Each step
# stays well under this (a CRM pull is at most about a minute, Finan's tries under one).
LOCK_TIMEOUT_SECONDS = 120
IN_FLIGHT_RETRY_AFTER_SECONDS = 2

CANCEL_MESSAGE = "Invoice Canceled successfully"  # Tourwell's own wording (fixed)


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    record: Record


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class InvoiceOperations:
    def __init__(
        self,
        connection: redis.Redis,
        records: RecordStore,
        tourwell: TourwellClient,
        finan: FinanClient,
        mapping_config: MappingConfig,
    ) -> None:
        self._redis = connection
        self._records = records
        self._tourwell = tourwell
        self._finan = finan
        self._mapping_config = mapping_config

    def get(self, invoice_id: int) -> Record:
        record = self._records.get(invoice_id)
        if record is None:
            raise NotFound(f"invoice {invoice_id} is unknown to the bridge")
        return record

    def issue(self, invoice_id: int, payload: Any | None) -> Outcome:
        """Issue from the invoice in the body, or, without one, from the CRM's copy."""
        given = self._load(invoice_id, payload) if payload is not None else None
        with self._locked(invoice_id) as lock:
            record = self._records.get_or_new(invoice_id)
            if record.state == CANCELLED:
                raise Conflict(
                    f"invoice {invoice_id} was cancelled; a cancelled invoice can't be issued again"
                )
            invoice = given or self._load(invoice_id, self._tourwell.get_invoice(invoice_id))
            body = self._encode(invoice, record)
            if record.accepted:
                if record.fingerprint == fingerprint(body):
                    self._settle(record)
                    return Outcome(201, "Invoice already issued; nothing changed", record)
                raise Conflict(
                    f"invoice {invoice_id} is already issued with other content; "
                    f"send an update (PUT /api/v1/invoices/{invoice_id}) instead"
                )
            record.code = invoice.get("code")
            return self._send(
                lock, record, body, ISSUED, Outcome(201, "Invoice issued successfully", record)
            )

    def update(self, invoice_id: int, fields: dict[str, Any]) -> Outcome:
        """Pull the CRM's current invoice, lay the update fields over it, and send it."""
        with self._locked(invoice_id) as lock:
            record = self._records.get(invoice_id)
            if record is None or not record.accepted:
                raise Conflict(f"invoice {invoice_id} has not been issued yet; issue it first")
            if record.state == CANCELLED:
                raise Conflict(f"invoice {invoice_id} was cancelled; it can't be updated")
            pulled = self._load(invoice_id, self._tourwell.get_invoice(invoice_id))
            invoice = apply_update(pulled, fields)
            body = self._encode(invoice, record)
            record.code = invoice.get("code") or record.code
            lookup_url = fields.get("lookup_url") or record.lookup_url
            changed, record.lookup_url = lookup_url != record.lookup_url, lookup_url
            if record.fingerprint == fingerprint(body):
                self._settle(record, changed)
                return Outcome(200, "Invoice unchanged; nothing sent to Finan", record)
            return self._send(
                lock, record, body, ISSUED, Outcome(200, "Invoice updated successfully", record)
            )

    def cancel(self, invoice_id: int, cancel_note: str | None) -> Outcome:
        """Finan has no cancel: send the last accepted body emptied of anything to collect."""
        with self._locked(invoice_id) as lock:
            record = self._records.get(invoice_id)
            if record is None or not record.accepted:
                raise Conflict(f"invoice {invoice_id} has not been issued yet; nothing to cancel")
            if record.state == CANCELLED:
                return Outcome(201, CANCEL_MESSAGE, record)
            body = encode_request(cancel_body(decode_request(record.last_body)))
            record.cancel_note = cancel_note
            return self._send(lock, record, body, CANCELLED, Outcome(201, CANCEL_MESSAGE, record))

    # --- helpers ---

    @staticmethod
    def _load(invoice_id: int, payload: Any) -> dict[str, Any]:
        invoice = load_invoice(payload)
        if invoice["id"] != invoice_id:
            raise Unprocessable(
                f"the invoice in the body has id {invoice['id']} but the path names {invoice_id}",
                errors={"id": [f"must be {invoice_id}"]},
            )
        return invoice

    def _encode(self, invoice: dict[str, Any], record: Record) -> bytes:
        """The exact bytes to send for ``invoice``.

        An invoice with neither ``request_at`` nor ``created_at`` is dated "now"; a record
        that already has a body keeps that body's date, so the same invoice always maps
        to the same bytes (and the content layer recognises it).
        """
        anchor = decode_request(record.last_body)["value_at"] if record.last_body else None
        return encode_request(map_invoice(invoice, self._mapping_config, now=anchor))

    def _settle(self, record: Record, changed: bool = False) -> None:
        """Finan already holds exactly this body: an earlier failure no longer applies."""
        if record.state == FAILED:
            record.state, record.last_error = ISSUED, None
            changed = True
        if changed:
            self._records.save(record)

    @contextmanager
    def _locked(self, invoice_id: int) -> Iterator[Lock]:
        lock = self._redis.lock(lock_key(invoice_id), timeout=LOCK_TIMEOUT_SECONDS)
        if not lock.acquire(blocking=False):
            raise InFlight(
                f"another operation on invoice {invoice_id} is in flight; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            )
        try:
            yield lock
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("lock on invoice %s expired before release", invoice_id)

    @staticmethod
    def _fence(lock: Lock, before: str) -> None:
        """Renew the lock, or stop if it expired and another operation may be running."""
        try:
            lock.reacquire()
        except LockError:
            raise Unavailable(
                f"the operation took too long and lost its lock before {before}; retry it "
                "(a repeat lands on the same Finan invoice)",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            ) from None

    def _send(
        self, lock: Lock, record: Record, body: bytes, state: str, outcome: Outcome
    ) -> Outcome:
        """Send ``body`` to Finan and keep the result on the record.

        A rejection is kept (state ``failed`` with Finan's message) and re-raised; when Finan
        is unavailable the record is left as it was.
        """
        self._fence(lock, "calling Finan")
        try:
            answer = self._finan.update_invoice(record.provider_invoice_id, body)
        except ProviderRejected as exc:
            self._fence(lock, "saving Finan's answer")
            record.state = FAILED
            record.last_error = {"code": exc.code, "message": exc.provider_message}
            self._records.save(record)
            raise
        self._fence(lock, "saving Finan's answer")
        self._accept(record, body, state, answer)
        return outcome

    def _accept(self, record: Record, body: bytes, state: str, answer: FinanAnswer) -> None:
        data = answer.data
        record.state = state
        record.fingerprint = fingerprint(body)
        record.last_body = body.decode()
        record.last_error = None
        record.provider_order_code = data.get("order_code") or record.provider_order_code
        record.provider_system_code = data.get("system_code") or record.provider_system_code
        record.total_amount = data.get("total_amount")
        record.tax_amount = data.get("tax_amount")
        self._records.save(record)
