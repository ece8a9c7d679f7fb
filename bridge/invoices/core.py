"""What every caller's operations share: the invoice's lock with its record, the body to
send, the call to Finan behind the lock's fence, and the saves of what came of it
(docs/contract/semantics.md#locking, #queue, #failed, #dead).

The rules of what to do are in ``rules``; the callers' operations in ``crm_operations``,
``worker_operations`` and ``operator_operations``.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from bridge.errors import (
    Conflict,
    InFlight,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    Unavailable,
    Unprocessable,
)
from bridge.integrations.finan.client import FinanAnswer, FinanClient
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices import rules
from bridge.invoices.mapping import MappingConfig, cancel_body, map_invoice
from bridge.invoices.rules import Body, Decision, Situation
from bridge.store import out_of_sync, queue
from bridge.store.connection import lock_key
from bridge.store.lock import IN_FLIGHT_RETRY_AFTER_SECONDS, InvoiceLock, LockError, LockLost
from bridge.store.records import Event, Pending, Record, RecordStore, fingerprint, iso_utc
from schemas.finan import decode_request, encode_request
from schemas.states import Caller, Operation, State
from schemas.tourwell import InvoiceUnreadable, load_invoice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    record: Record


class InvoiceCore:
    """The invoice's lock (of ``lock_timeout`` seconds), its record, Finan and the queue,
    for the callers' operations."""

    def __init__(
        self,
        connection: redis.Redis,
        records: RecordStore,
        tourwell: TourwellClient,
        finan: FinanClient,
        mapping_config: MappingConfig,
        retry_schedule: tuple[int, ...],
        lock_timeout: float,
        lookup_url_template: str | None = None,
    ) -> None:
        self.redis = connection
        self.records = records
        self.tourwell = tourwell
        self.finan = finan
        self.mapping_config = mapping_config
        self.retry_schedule = retry_schedule
        self.lock_timeout = lock_timeout
        self.lookup_url_template = lookup_url_template

    def get(self, invoice_id: int, with_body: bool = True) -> Record:
        record = self.records.get(invoice_id, with_body)
        if record is None:
            raise NotFound(rules.UNKNOWN.format(invoice_id=invoice_id))
        return record

    @contextmanager
    def locked(
        self, invoice_id: int, wait: bool = False, with_body: bool = True
    ) -> Iterator[tuple[InvoiceLock, Record | None]]:
        """The invoice's lock, and its record (None if it has none, else with its last body
        unless ``with_body`` is false) read in the same round trip, just after the lock was
        taken. A record read without its body leaves the stored body as it is when saved."""
        keys = self.records.keys(invoice_id)
        timeout = self.lock_timeout
        lock = InvoiceLock(
            self.redis,
            lock_key(invoice_id),
            timeout=timeout,
            read_keys=keys if with_body else keys[:1],
        )
        if not lock.acquire(blocking=wait, blocking_timeout=timeout):
            raise InFlight(
                f"another operation on invoice {invoice_id} is in flight; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            )
        try:  # a damaged record raises here, and the lock is released all the same
            if with_body:
                record = self.records.decode_with_body(invoice_id, *lock.read_values)
            else:
                record = self.records.decode(invoice_id, *lock.read_values)
            yield lock, record
        finally:
            if lock.held:  # not already released with the save (``accept``)
                try:
                    lock.release()
                except LockLost:
                    log.warning("lock on invoice %s expired before release", invoice_id)

    # --- the body ---

    def load(self, invoice_id: int, payload: Any) -> dict[str, Any]:
        """The CRM's invoice ``payload``, read and checked against the path's id."""
        try:
            invoice = load_invoice(payload)
        except InvoiceUnreadable as exc:
            raise Unprocessable(exc.message, errors=exc.errors) from None
        if invoice["id"] != invoice_id:
            raise Unprocessable(
                f"the invoice in the body has id {invoice['id']} but the path names {invoice_id}",
                errors={"id": [f"must be {invoice_id}"]},
            )
        return invoice

    def pull(self, invoice_id: int) -> dict[str, Any]:
        """The CRM's current copy of the invoice."""
        return self.load(invoice_id, self.tourwell.get_invoice(invoice_id))

    def encode(self, invoice: dict[str, Any], record: Record) -> bytes:
        """The exact bytes to send for ``invoice``.

        An invoice with neither ``request_at`` nor ``created_at`` is dated "now"; a record
        that already has a body keeps that body's date, so the same invoice always maps
        to the same bytes (and the content layer recognises it).
        """
        earlier = record.last_body or (record.pending.body if record.pending else None)
        anchor = _value_at(earlier) if earlier else None
        return encode_request(map_invoice(invoice, self.mapping_config, now=anchor))

    # --- what came of it ---

    def keep_link(self, record: Record) -> bool:
        """Once Finan has accepted a body, the record keeps the Finan link
        (``PROVIDER_LOOKUP_URL_TEMPLATE`` filled in), cancelled or not: the Finan invoice
        still exists. True if that changed the record (e.g. one saved before it kept it)."""
        if self.lookup_url_template is None or not record.accepted:
            return False
        link = self.lookup_url_template.format(provider_invoice_id=record.provider_invoice_id)
        changed, record.lookup_url = link != record.lookup_url, link
        return changed

    def settle(self, record: Record, settles: bool, changed: bool = False) -> None:
        """Nothing sent: Finan already holds the body asked for. ``settles``: an earlier
        failure no longer applies (the record is issued again); save if anything changed."""
        changed = self.keep_link(record) or changed
        if settles:
            record.state, record.last_error, record.pending = State.ISSUED, None, None
        if settles or changed:
            self.records.save(record)

    def replace_pending(self, record: Record, pending: Pending, requested: Operation) -> None:
        """Behind a queued operation: ``pending`` replaces it, keeping its attempts and the
        job already scheduled, which sends it."""
        queued = record.pending
        pending.attempts, pending.job_id = queued.attempts, queued.job_id
        pending.next_attempt_at = queued.next_attempt_at
        record.pending = pending
        event = Event(requested, Caller.CRM, State.QUEUED, "replaces the queued operation")
        self.records.save(record, event)

    def send_now(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        actor: Caller,
        write_back: bool = False,
        by: str | None = None,
    ) -> bool:
        """Send ``pending`` to Finan now: True if Finan accepted it, False if it is queued
        (Finan unavailable); a rejection is kept and re-raised.

        ``write_back``: also tell the CRM how it ended (an operator's re-sync; the CRM did
        not ask, so it has no answer of its own). ``by``: the operator's name, for the history.
        """
        answer = self.call_finan(lock, record, pending)
        if isinstance(answer, ProviderRejected):
            self.reject(record, pending, answer, actor, write_back, by=by)
            raise answer
        if isinstance(answer, ProviderUnavailable):
            self.enqueue(record, pending, answer.message, actor, by=by)
            return False
        self.accept(lock, record, pending, answer, actor, write_back, by=by)
        return True

    def call_finan(
        self, lock: InvoiceLock, record: Record, pending: Pending
    ) -> FinanAnswer | ProviderRejected | ProviderUnavailable:
        """Send ``pending`` to Finan: its answer, or the error that says why not. The lock
        is checked before the call and again before the caller saves what came of it."""
        _fence(lock, "calling Finan")
        try:
            answer: FinanAnswer | ProviderRejected | ProviderUnavailable = (
                self.finan.update_invoice(record.provider_invoice_id, pending.body.encode())
            )
        except (ProviderRejected, ProviderUnavailable) as exc:
            answer = exc
        _fence(lock, "saving Finan's answer")
        return answer

    def accept(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        answer: FinanAnswer,
        actor: Caller,
        write_back: bool = False,
        by: str | None = None,
    ) -> None:
        """Finan accepted ``pending``: save it as what Finan holds, and release the lock in
        the same transaction (the operation's last step)."""
        data = answer.data
        record.state = pending.state
        record.fingerprint = fingerprint(pending.body)
        record.last_body = pending.body
        record.source = pending.source
        record.last_error = None
        record.pending = None
        record.provider_order_code = data.get("order_code") or record.provider_order_code
        record.provider_system_code = data.get("system_code") or record.provider_system_code
        record.total_amount = data.get("total_amount")
        record.tax_amount = data.get("tax_amount")
        self.keep_link(record)
        event = Event(pending.operation, actor, record.state, answer.message, answer.code, by=by)
        write_back_job = self.write_back_job(record, write_back)
        # Finan now holds exactly this body: the invoice is no longer out of sync.
        in_sync = out_of_sync.forget_step(record.invoice_id)
        self.records.save(record, event, write_back_job, in_sync, lock.release_step())
        lock.released_in_transaction()

    def reject(
        self,
        record: Record,
        pending: Pending,
        exc: ProviderRejected,
        actor: Caller,
        write_back: bool = False,
        by: str | None = None,
    ) -> None:
        """Finan refused ``pending``: the record is failed, the operation stays pending."""
        record.state = State.FAILED
        record.pending = pending
        pending.job_id = pending.next_attempt_at = None
        record.last_error = {"code": exc.code, "message": exc.provider_message}
        event = Event(pending.operation, actor, State.FAILED, exc.provider_message, exc.code, by=by)
        self.records.save(record, event, self.write_back_job(record, write_back))

    def enqueue(
        self,
        record: Record,
        pending: Pending,
        why: str,
        actor: Caller,
        delay: int | None = None,
        by: str | None = None,
    ) -> None:
        """Make ``pending`` the record's queued operation, with a job for its next attempt."""
        if delay is None:
            delay = rules.retry_delay(pending.attempts, self.retry_schedule)
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        pending.job_id = queue.new_job_id(record.invoice_id)
        pending.next_attempt_at = iso_utc(run_at, "seconds")
        record.state = State.QUEUED
        record.pending = pending
        record.last_error = {"code": None, "message": why}
        message = f"{why}; next attempt in {delay} s"
        event = Event(pending.operation, actor, State.QUEUED, message, by=by)
        self.records.save(
            record,
            event,
            lambda pipe: queue.schedule_sync(
                self.redis, record.invoice_id, pending.job_id, run_at if delay else None, pipe
            ),
        )

    def give_up(self, record: Record, pending: Pending, why: str) -> None:
        """The last queued attempt found Finan unavailable: the record is dead."""
        record.state = State.DEAD
        pending.job_id = pending.next_attempt_at = None
        record.last_error = {
            "code": None,
            "message": f"{why}; gave up after {queued_attempts(pending)}",
        }
        event = Event(pending.operation, Caller.WORKER, State.DEAD, record.last_error["message"])
        self.records.save(record, event, self.write_back_job(record, True))

    def write_back_job(
        self, record: Record, wanted: bool
    ) -> Callable[[redis.client.Pipeline], None] | None:
        """What ``RecordStore.save`` adds to its transaction to schedule the write-back."""
        if not wanted:
            return None
        return lambda pipe: queue.schedule_write_back(self.redis, record.invoice_id, pipe)


def situation(record: Record | None) -> Situation:
    """What the rules read of ``record``."""
    if record is None:
        return Situation()
    pending = Operation(record.pending.operation) if record.pending is not None else None
    return Situation(State(record.state), record.accepted, pending)


def refuse(decision: Decision, invoice_id: int) -> None:
    """Raise the refusal ``decision`` names (a ``409``, or ``404`` for an unknown invoice)."""
    message = decision.message.format(invoice_id=invoice_id)
    raise NotFound(message) if decision.status == 404 else Conflict(message)


def cancel_body_of(record: Record, body_from: Body) -> bytes:
    """The cancel body: the body ``body_from`` names with nothing left to collect."""
    latest = record.pending.body if body_from == Body.PENDING else record.last_body
    if latest is None:  # a record is only cancelled after a body was sent
        raise Conflict(f"invoice {record.invoice_id} has no body to cancel with")
    return encode_request(cancel_body(decode_request(latest)))


def pending_source(record: Record) -> str | None:
    """The issue request that started the pending operation, if one did."""
    return record.pending.source if record.pending else None


def queued_attempts(pending: Pending) -> str:
    return f"{pending.attempts} queued attempt{'' if pending.attempts == 1 else 's'}"


def _fence(lock: InvoiceLock, before: str) -> None:
    """Make sure the lock has half its time left (renewing it if need be), or stop if it
    expired and another operation may be running."""
    try:
        lock.ensure_half_left()
    except LockError:  # lost (expired, perhaps taken by another) or no longer held
        log.warning("lock on %s expired before %s", lock.name, before)
        raise Unavailable(
            f"the operation took too long and lost its lock before {before}; retry it "
            "(a repeat lands on the same Finan invoice)",
            retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
        ) from None


def body_diff(before: str | None, after: str) -> str:
    """A unified diff of two Finan bodies, as indented JSON with sorted keys ('' if equal)."""

    def lines(text: str | None) -> list[str]:
        if text is None:
            return []
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False).split(
            "\n"
        )

    return "\n".join(
        difflib.unified_diff(
            lines(before), lines(after), "accepted by Finan", "would send", lineterm="", n=2
        )
    )


def _value_at(body: str) -> datetime:
    """The ``value_at`` of a body the bridge encoded (UTC, ``Z``), read without loading the
    whole body through its schema: this runs on every operation on a known invoice."""
    return datetime.fromisoformat(json.loads(body)["value_at"])
