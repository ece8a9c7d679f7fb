"""Issue, update and cancel: docs/contract/semantics.md#transitions.

Each operation runs under the invoice's Redis lock (so operations on one invoice are
serialised, and a concurrent one gets ``409`` + ``Retry-After`` instead of waiting), checks
the transition against the record, maps the invoice, and compares the fingerprint of the
exact bytes it would send with the one Finan last accepted (the content layer): unchanged
means nothing is sent and the caller gets the answer a first success would have had.

One repeat is recognised before all that: an issue whose request body is byte for byte the
one that started the operation whose body Finan accepted last (the record's ``source``) is
answered from the record, read without the lock. That is the CRM retrying an issue, the
commonest repeat; the answer is the one the full path gives, as of the moment the record
was read.

Transitions:
    issue   allowed unless cancelled; a second issue must carry the same content
    update  only after an issue (accepted by Finan, or queued), never after cancel
    cancel  once a body may have reached Finan (accepted, or pending: queued, failed or
            dead); a repeat is answered from the record

When Finan stays unavailable through the inline retries, the operation becomes the record's
``pending`` one, a queue job is scheduled with it, and the caller gets ``202`` (state
``queued``). While an invoice is queued, newer operations only replace ``pending`` (the
latest content wins, a cancel wins over anything; a repeat of the issue request that queued
it replaces nothing) and answer ``202`` at once: the job sends whatever is pending when it
runs, on the schedule of ``Settings.retry_schedule``, then writes the outcome back to the CRM.

Operators (docs/contract/http.md#admin-api) get two more: ``preview`` (pull, map and
compare with what was last sent, sending nothing) and ``resync`` (pull, map and send, then
write the outcome back to the CRM). A re-sync never un-cancels: for a cancelled invoice, or
one whose cancel is pending, it sends the cancel body again.
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
from bridge.invoices.mapping import MappingConfig, apply_update, cancel_body, map_invoice
from bridge.store import queue
from bridge.store.connection import lock_key
from bridge.store.encryption import StoredDataUnreadable
from bridge.store.lock import (
    IN_FLIGHT_RETRY_AFTER_SECONDS,
    LOCK_TIMEOUT_SECONDS,
    InvoiceLock,
    LockLost,
)
from bridge.store.records import (
    CANCELLED,
    DEAD,
    FAILED,
    ISSUED,
    QUEUED,
    Event,
    Pending,
    Record,
    RecordStore,
    fingerprint,
    iso_utc,
)
from schemas.finan import decode_request, encode_request
from schemas.tourwell import InvoiceUnreadable, load_invoice

log = logging.getLogger(__name__)

ISSUE, UPDATE, CANCEL = "issue", "update", "cancel"
RESYNC = "resync"  # the history's name for an operator's re-sync that sent nothing
CRM, OPERATOR, WORKER = "crm", "operator", "worker"

CANCEL_MESSAGE = "Invoice Canceled successfully"  # Tourwell's own wording (fixed)
ALREADY_ISSUED_MESSAGE = "Invoice already issued; nothing changed"
QUEUED_MESSAGE = (
    "Finan is unavailable; the operation is queued and will be sent, "
    "and its outcome written back to the CRM"
)


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    record: Record


# What a re-sync did: sent (Finan accepted it), unchanged (nothing sent), queued (Finan was
# unavailable; a worker sends it later). A rejection raises ``ProviderRejected`` instead.
SENT, UNCHANGED = "sent", "unchanged"
RESYNCED_MESSAGE = "Invoice re-synced: Finan accepted it; the outcome is written back to the CRM"
RESYNC_UNCHANGED_MESSAGE = (
    "Invoice unchanged since Finan last accepted it; nothing sent (force to send anyway)"
)


@dataclass(frozen=True)
class ResyncOutcome(Outcome):
    result: str = SENT  # sent, unchanged or queued


@dataclass(frozen=True)
class Preview:
    """What a re-sync would send, compared with what was sent last. Nothing is sent."""

    record: Record
    operation: str  # issue, update or cancel: how a re-sync would send it
    body: str  # the exact JSON text a re-sync would send
    compared_with: str | None  # the last body sent: pending (not accepted), else accepted
    changed: bool  # differs from the body Finan last accepted
    would_send: bool  # a re-sync without force would send it
    diff: str  # unified diff of ``compared_with`` -> ``body``, as indented JSON


class InvoiceOperations:
    def __init__(
        self,
        connection: redis.Redis,
        records: RecordStore,
        tourwell: TourwellClient,
        finan: FinanClient,
        mapping_config: MappingConfig,
        retry_schedule: tuple[int, ...] = (10,),
    ) -> None:
        self._redis = connection
        self._records = records
        self._tourwell = tourwell
        self._finan = finan
        self._mapping_config = mapping_config
        self._retry_schedule = retry_schedule

    @property
    def records(self) -> RecordStore:
        return self._records

    def get(self, invoice_id: int, with_body: bool = True) -> Record:
        record = self._records.get(invoice_id, with_body)
        if record is None:
            raise NotFound(f"invoice {invoice_id} is unknown to the bridge")
        return record

    def issue(
        self,
        invoice_id: int,
        payload: Any | None,
        source: str | None = None,
    ) -> Outcome:
        """Issue from the invoice in the body, or, without one, from the CRM's copy.

        ``source`` is the ``fingerprint`` of the request body ``payload`` was parsed from:
        kept with the body, so that ``answer_repeated_issue`` knows the request again.
        """
        given = self._load(invoice_id, payload) if payload is not None else None
        with self._locked(invoice_id) as (lock, known):
            record = known or self._records.new(invoice_id)
            if _cancelled(record):
                raise Conflict(
                    f"invoice {invoice_id} was cancelled; a cancelled invoice can't be issued again"
                )
            invoice = given or self._load(invoice_id, self._tourwell.get_invoice(invoice_id))
            body = self._encode(invoice, record)
            if _queued(record) and _repeats(record.pending, source, body):
                # What is queued already: replacing it would undo any update laid over it.
                return Outcome(202, QUEUED_MESSAGE, record)
            if record.accepted:
                unchanged = fingerprint(body) == record.fingerprint
                if unchanged or _accepted_from(record, source):
                    self._settle(record, requested=ISSUE)
                    if record.state == QUEUED:
                        return Outcome(202, QUEUED_MESSAGE, record)
                    return Outcome(201, ALREADY_ISSUED_MESSAGE, record)
                raise Conflict(
                    f"invoice {invoice_id} is already issued with other content; "
                    f"send an update (PUT /api/v1/invoices/{invoice_id}) instead"
                )
            record.code = invoice.get("code") or record.code
            pending = Pending(ISSUE, body.decode(), ISSUED, source=source)
            return self._send(
                lock, record, pending, Outcome(201, "Invoice issued successfully", record)
            )

    def answer_repeated_issue(self, invoice_id: int, source: str | None) -> Outcome | None:
        """The answer to an issue request byte for byte the one that started the operation
        whose body Finan accepted last, ``source`` being the ``fingerprint`` of its body
        (``issue``'s answer, as of the moment the record is read, without the lock, parsing
        or mapping); None for any other request."""
        if source is None:
            return None  # no invoice in the body: the CRM's copy decides
        known = self._records.get(invoice_id, with_body=False)
        if known is not None and _issued_from(known, source):
            return Outcome(201, ALREADY_ISSUED_MESSAGE, known)
        return None

    def update(self, invoice_id: int, fields: dict[str, Any]) -> Outcome:
        """Pull the CRM's current invoice, lay the update fields over it, and send it."""
        with self._locked(invoice_id) as (lock, record):
            if record is None or not (record.accepted or record.state == QUEUED):
                raise Conflict(f"invoice {invoice_id} has not been issued yet; issue it first")
            if _cancelled(record):
                raise Conflict(f"invoice {invoice_id} was cancelled; it can't be updated")
            pulled = self._load(invoice_id, self._tourwell.get_invoice(invoice_id))
            invoice = apply_update(pulled, fields)
            body = self._encode(invoice, record)
            record.code = invoice.get("code") or record.code
            lookup_url = fields.get("lookup_url") or record.lookup_url
            changed, record.lookup_url = lookup_url != record.lookup_url, lookup_url
            if record.state != QUEUED and record.fingerprint == fingerprint(body):
                self._settle(record, changed)
                return Outcome(200, "Invoice unchanged; nothing sent to Finan", record)
            # Behind a queued issue, the update is still the invoice's first body, and that
            # issue's request is still the one that started it.
            operation = UPDATE if record.accepted else ISSUE
            pending = Pending(
                operation, body.decode(), ISSUED, source=_issue_source(record, operation)
            )
            return self._send(
                lock, record, pending, Outcome(200, "Invoice updated successfully", record), UPDATE
            )

    def cancel(self, invoice_id: int, cancel_note: str | None) -> Outcome:
        """Finan has no cancel: send the latest body emptied of anything to collect.

        Allowed once anything may have reached Finan: a body Finan accepted, or a pending
        operation, queued, failed or dead (a try that timed out or was cut off may have been
        stored). Only an invoice the bridge never sent a body for has nothing to cancel.
        """
        with self._locked(invoice_id) as (lock, record):
            if record is None or not (record.accepted or record.pending is not None):
                raise Conflict(f"invoice {invoice_id} has not been issued yet; nothing to cancel")
            if record.state == CANCELLED:
                return Outcome(201, CANCEL_MESSAGE, record)
            if _queued(record) and record.pending.operation == CANCEL:
                return Outcome(202, QUEUED_MESSAGE, record)
            body = _cancel_body_of(record)
            record.cancel_note = cancel_note
            pending = Pending(CANCEL, body.decode(), CANCELLED)
            return self._send(lock, record, pending, Outcome(201, CANCEL_MESSAGE, record))

    def send_pending(self, invoice_id: int, job_id: str) -> str:
        """The queue job: send the invoice's pending operation, if this job is still its job.

        Waits for the invoice's lock (an inline operation may hold it). Returns what
        happened, for the worker's log.
        """
        # The body to send is the pending one: the last accepted body is not needed.
        with self._locked(invoice_id, wait=True, with_body=False) as (lock, record):
            if not _queued(record) or record.pending.job_id != job_id:
                return "nothing to send: superseded or settled"
            pending = record.pending
            answer = self._call_finan(lock, record, pending)
            if isinstance(answer, ProviderRejected):
                self._reject(record, pending, answer, WORKER, write_back=True)
                return f"rejected by Finan ({answer.code})"
            if isinstance(answer, ProviderUnavailable):
                pending.attempts += 1
                if pending.attempts < len(self._retry_schedule):
                    self._enqueue(record, pending, answer.message, WORKER)
                    return f"Finan unavailable; attempt {pending.attempts + 1} scheduled"
                self._give_up(record, pending, answer.message)
                return f"Finan unavailable after {_queued_attempts(pending)}; dead"
            self._accept(lock, record, pending, answer, WORKER, write_back=True)
            return f"sent; {record.state}"

    def recover_stranded(self) -> list[int]:
        """Give every queued invoice whose job is gone a new job now; the ids it did it for.

        A job is gone when Redis lost it (no AOF), or RQ gave up on it (its crash retries
        spent). Busy invoices are skipped: whoever holds the lock is dealing with them.
        """
        recovered = []
        for invoice_id in self._records.ids_in_state(QUEUED):
            try:
                with self._locked(invoice_id, with_body=False) as (_, record):
                    if self._reschedule_if_stranded(record):
                        recovered.append(invoice_id)
            except InFlight:
                continue  # busy: whoever holds the lock deals with it
            except StoredDataUnreadable as exc:  # one bad record must not block the rest
                log.error("invoice %s skipped by the sweep: %s", invoice_id, exc.message)
        return recovered

    def _reschedule_if_stranded(self, record: Record | None) -> bool:
        """Under the invoice's lock: a new job now if it is queued without a live one."""
        if not _queued(record) or queue.job_is_live(self._redis, record.pending.job_id):
            return False
        log.warning("invoice %s was queued without a live job; scheduling one", record.invoice_id)
        self._enqueue(record, record.pending, "recovered a lost queue job", WORKER, delay=0)
        return True

    def preview(self, invoice_id: int) -> Preview:
        """Pull, map and compare with the last body sent; sends nothing and saves nothing."""
        record = self.get(invoice_id)
        operation, body, _code = self._resync_plan(record)
        compared_with = record.pending.body if record.pending else record.last_body
        return Preview(
            record=record,
            operation=operation,
            body=body.decode(),
            compared_with=compared_with,
            changed=fingerprint(body) != record.fingerprint,
            would_send=_resync_sends(record, body, force=False),
            diff=body_diff(compared_with, body.decode()),
        )

    def resync(self, invoice_id: int, force: bool = False) -> ResyncOutcome:
        """An operator's re-sync: pull, map and send, then write the outcome back to the CRM.

        Unchanged content (Finan already holds this exact body) sends nothing unless
        ``force``; a failed, dead or queued invoice is always sent (that is what re-sync is
        for). A cancelled invoice, or one whose cancel is pending, gets its cancel body again:
        a re-sync never un-cancels. Finan unavailable: queued again, with a fresh schedule.
        """
        with self._locked(invoice_id) as (lock, record):
            if record is None:
                raise NotFound(f"invoice {invoice_id} is unknown to the bridge")
            operation, body, code = self._resync_plan(record)
            code_is_new = bool(code) and code != record.code  # e.g. a record kept before codes
            record.code = code or record.code
            if not _resync_sends(record, body, force):
                event = Event(RESYNC, OPERATOR, UNCHANGED, "nothing sent to Finan")
                if code_is_new:  # saved with the event, so that a search finds it
                    self._records.save(record, event)
                else:
                    self._records.add_event(invoice_id, event)
                return ResyncOutcome(200, RESYNC_UNCHANGED_MESSAGE, record, UNCHANGED)
            state = CANCELLED if operation == CANCEL else ISSUED
            # A re-sync of an issue Finan has not accepted is still that issue.
            pending = Pending(
                operation, body.decode(), state, source=_issue_source(record, operation)
            )
            done = ResyncOutcome(200, RESYNCED_MESSAGE, record, SENT)
            outcome = self._send_now(lock, record, pending, OPERATOR, done, write_back=True)
            if outcome.status == 202:
                return ResyncOutcome(202, QUEUED_MESSAGE, record, QUEUED)
            return done

    def _resync_plan(self, record: Record) -> tuple[str, bytes, str | None]:
        """(operation, exact body, the CRM's invoice code) for a re-sync of ``record``."""
        if _cancelled(record):
            # Built from the latest body the bridge holds, like a cancel: no pull needed.
            latest = record.pending.body if record.pending else record.last_body
            if latest is None:  # a record is only cancelled after a body was sent
                raise Conflict(f"invoice {record.invoice_id} has no body to cancel with")
            return CANCEL, encode_request(cancel_body(decode_request(latest))), None
        invoice = self._load(record.invoice_id, self._tourwell.get_invoice(record.invoice_id))
        operation = UPDATE if record.accepted else ISSUE
        return operation, self._encode(invoice, record), invoice.get("code")

    # --- helpers ---

    @staticmethod
    def _load(invoice_id: int, payload: Any) -> dict[str, Any]:
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

    def _encode(self, invoice: dict[str, Any], record: Record) -> bytes:
        """The exact bytes to send for ``invoice``.

        An invoice with neither ``request_at`` nor ``created_at`` is dated "now"; a record
        that already has a body keeps that body's date, so the same invoice always maps
        to the same bytes (and the content layer recognises it).
        """
        earlier = record.last_body or (record.pending.body if record.pending else None)
        anchor = _value_at(earlier) if earlier else None
        return encode_request(map_invoice(invoice, self._mapping_config, now=anchor))

    def _settle(self, record: Record, changed: bool = False, requested: str = UPDATE) -> None:
        """Finan already holds exactly the body of the CRM's ``requested`` operation: an
        earlier failure no longer applies. But an issue settles only a failed or dead issue:
        a failed or dead update (or cancel) came after it, is not what the issue asks for,
        and stays, with its error, for an operator or the CRM's next update."""
        later = record.pending is not None and record.pending.operation != ISSUE
        if record.state in (FAILED, DEAD) and not (requested == ISSUE and later):
            record.state, record.last_error, record.pending = ISSUED, None, None
            changed = True
        if changed:
            self._records.save(record)

    @contextmanager
    def _locked(
        self, invoice_id: int, wait: bool = False, with_body: bool = True
    ) -> Iterator[tuple[InvoiceLock, Record | None]]:
        """The invoice's lock, and its record (None if it has none, else with its last body
        unless ``with_body`` is false) read in the same round trip, just after the lock was
        taken. A record read without its body leaves the stored body as it is when saved."""
        keys = self._records.keys(invoice_id)
        lock = InvoiceLock(
            self._redis,
            lock_key(invoice_id),
            timeout=LOCK_TIMEOUT_SECONDS,
            read_keys=keys if with_body else keys[:1],
        )
        if not lock.acquire(blocking=wait, blocking_timeout=LOCK_TIMEOUT_SECONDS):
            raise InFlight(
                f"another operation on invoice {invoice_id} is in flight; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            )
        try:  # a damaged record raises here, and the lock is released all the same
            if with_body:
                record = self._records.decode_with_body(invoice_id, *lock.read_values)
            else:
                record = self._records.decode(invoice_id, *lock.read_values)
            yield lock, record
        finally:
            if lock.held:  # not already released with the save (``_accept``)
                try:
                    lock.release()
                except LockLost:
                    log.warning("lock on invoice %s expired before release", invoice_id)

    def _send(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        outcome: Outcome,
        requested: str | None = None,
    ) -> Outcome:
        """The CRM's operation (``requested``, if not ``pending``'s own: an update behind a
        queued issue is sent as that issue): send ``pending`` to Finan now, or queue it;
        keep the result on the record.

        Behind an operation that is already queued, nothing is sent: ``pending`` replaces
        the queued one and the job already scheduled sends it. A rejection is kept (state
        ``failed`` with Finan's message) and re-raised.
        """
        if _queued(record):
            queued = record.pending
            pending.attempts, pending.job_id = queued.attempts, queued.job_id
            pending.next_attempt_at = queued.next_attempt_at
            record.pending = pending
            operation = requested or pending.operation
            event = Event(operation, CRM, "queued", "replaces the queued operation")
            self._records.save(record, event)
            return Outcome(202, QUEUED_MESSAGE, record)
        return self._send_now(lock, record, pending, CRM, outcome)

    def _send_now(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        actor: str,
        outcome: Outcome,
        write_back: bool = False,
    ) -> Outcome:
        """Send ``pending`` to Finan now; queue it if Finan is unavailable.

        ``write_back``: also tell the CRM how it ended (an operator's re-sync; the CRM
        did not ask, so it has no answer of its own).
        """
        answer = self._call_finan(lock, record, pending)
        if isinstance(answer, ProviderRejected):
            self._reject(record, pending, answer, actor, write_back)
            raise answer
        if isinstance(answer, ProviderUnavailable):
            self._enqueue(record, pending, answer.message, actor)
            return Outcome(202, QUEUED_MESSAGE, record)
        self._accept(lock, record, pending, answer, actor, write_back)
        return outcome

    def _call_finan(
        self, lock: InvoiceLock, record: Record, pending: Pending
    ) -> FinanAnswer | ProviderRejected | ProviderUnavailable:
        """Send ``pending`` to Finan: its answer, or the error that says why not. The lock
        is checked before the call and again before the caller saves what came of it."""
        _fence(lock, "calling Finan")
        try:
            answer: FinanAnswer | ProviderRejected | ProviderUnavailable = (
                self._finan.update_invoice(record.provider_invoice_id, pending.body.encode())
            )
        except (ProviderRejected, ProviderUnavailable) as exc:
            answer = exc
        _fence(lock, "saving Finan's answer")
        return answer

    def _accept(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        answer: FinanAnswer,
        actor: str,
        write_back: bool = False,
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
        event = Event(pending.operation, actor, record.state, answer.message, answer.code)
        write_back_job = self._write_back_job(record, write_back)
        self._records.save(record, event, write_back_job, lock.release_step())
        lock.released_in_transaction()

    def _reject(
        self,
        record: Record,
        pending: Pending,
        exc: ProviderRejected,
        actor: str,
        write_back: bool = False,
    ) -> None:
        record.state = FAILED
        record.pending = pending
        pending.job_id = pending.next_attempt_at = None
        record.last_error = {"code": exc.code, "message": exc.provider_message}
        event = Event(pending.operation, actor, FAILED, exc.provider_message, exc.code)
        self._records.save(record, event, self._write_back_job(record, write_back))

    def _enqueue(
        self,
        record: Record,
        pending: Pending,
        why: str,
        actor: str,
        delay: int | None = None,
    ) -> None:
        """Make ``pending`` the record's queued operation, with a job for its next attempt."""
        if delay is None:
            delay = self._retry_schedule[min(pending.attempts, len(self._retry_schedule) - 1)]
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        pending.job_id = queue.new_job_id(record.invoice_id)
        pending.next_attempt_at = iso_utc(run_at, "seconds")
        record.state = QUEUED
        record.pending = pending
        record.last_error = {"code": None, "message": why}
        event = Event(pending.operation, actor, QUEUED, f"{why}; next attempt in {delay} s")
        self._records.save(
            record,
            event,
            lambda pipe: queue.schedule_sync(
                self._redis, record.invoice_id, pending.job_id, run_at if delay else None, pipe
            ),
        )

    def _give_up(self, record: Record, pending: Pending, why: str) -> None:
        record.state = DEAD
        pending.job_id = pending.next_attempt_at = None
        record.last_error = {
            "code": None,
            "message": f"{why}; gave up after {_queued_attempts(pending)}",
        }
        event = Event(pending.operation, WORKER, DEAD, record.last_error["message"])
        self._records.save(record, event, self._write_back_job(record, True))

    def _write_back_job(
        self, record: Record, wanted: bool
    ) -> Callable[[redis.client.Pipeline], None] | None:
        """What ``RecordStore.save`` adds to its transaction to schedule the write-back."""
        if not wanted:
            return None
        return lambda pipe: queue.schedule_write_back(self._redis, record.invoice_id, pipe)


def _fence(lock: InvoiceLock, before: str) -> None:
    """Make sure the lock has half its time left (renewing it if need be), or stop if it
    expired and another operation may be running."""
    try:
        lock.ensure_half_left()
    except LockLost:
        raise Unavailable(
            f"the operation took too long and lost its lock before {before}; retry it "
            "(a repeat lands on the same Finan invoice)",
            retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
        ) from None


def _issued_from(record: Record, source_fingerprint: str) -> bool:
    """Finan holds the body of the operation this very request started, and nothing is
    pending."""
    settled = record.state == ISSUED and record.pending is None
    return settled and _accepted_from(record, source_fingerprint)


def _accepted_from(record: Record, source_fingerprint: str | None) -> bool:
    """Finan holds the body of the operation the issue request ``source_fingerprint``
    started (its own, or an update laid over it while it was queued)."""
    return source_fingerprint is not None and record.source == source_fingerprint


def _issue_source(record: Record, operation: str) -> str | None:
    """The ``source`` a new body for ``operation`` keeps: while it is still the invoice's
    first issue (Finan has accepted nothing), the issue request that started it."""
    return record.pending.source if operation == ISSUE and record.pending else None


def _repeats(pending: Pending, source_fingerprint: str | None, body: bytes) -> bool:
    """An issue request (``source_fingerprint``, mapped to ``body``) repeats ``pending``: it
    is the request that started it, or it would send the same body."""
    same_request = source_fingerprint is not None and pending.source == source_fingerprint
    return same_request or body == pending.body.encode()


def _queued_attempts(pending: Pending) -> str:
    return f"{pending.attempts} queued attempt{'' if pending.attempts == 1 else 's'}"


def _queued(record: Record | None) -> bool:
    return record is not None and record.state == QUEUED and record.pending is not None


def _cancelled(record: Record) -> bool:
    """Cancelled, or a cancel is pending (queued, failed or dead): only a cancel may follow."""
    pending_cancel = record.pending is not None and record.pending.operation == CANCEL
    return record.state == CANCELLED or pending_cancel


def _cancel_body_of(record: Record) -> bytes:
    """The cancel body: the invoice's latest body with nothing left to collect.

    The latest is the pending body (queued or dead: it may have reached Finan), else the
    one Finan last accepted. A pending body Finan refused (``failed``) is used only when
    Finan never accepted one: the cancel should not carry what Finan refused.
    """
    refused = record.state == FAILED and record.last_body is not None
    pending = record.pending.body if record.pending is not None and not refused else None
    return encode_request(cancel_body(decode_request(pending or record.last_body)))


def _resync_sends(record: Record, body: bytes, force: bool) -> bool:
    """A re-sync sends unless Finan already holds exactly ``body`` and nothing is pending."""
    if force or record.state in (FAILED, DEAD, QUEUED):
        return True
    return fingerprint(body) != record.fingerprint


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
            lines(before), lines(after), "last sent", "would send", lineterm="", n=2
        )
    )


def _value_at(body: str) -> datetime:
    """The ``value_at`` of a body the bridge encoded (UTC, ``Z``), read without loading the
    whole body through its schema: this runs on every operation on a known invoice."""
    return datetime.fromisoformat(json.loads(body)["value_at"])
