"""The queue worker's operations: send an invoice's pending operation, and give a job to
each queued invoice that lost its own (docs/contract/semantics.md#queue, #dead)."""

from __future__ import annotations

import logging

from bridge.errors import InFlight, ProviderRejected, ProviderUnavailable
from bridge.invoices import rules
from bridge.invoices.core import InvoiceCore, queued_attempts, situation
from bridge.store import queue
from bridge.store.encryption import StoredDataUnreadable
from bridge.store.records import Record
from schemas.states import Caller, State

log = logging.getLogger(__name__)


class QueuedOperationFailed(Exception):
    """The queued attempt ended the operation for good: Finan rejected it (the record is
    ``failed``) or the retry schedule is spent (``dead``). Raised by ``send_pending`` after
    the record is saved, so that the queue job ends as a failed RQ job with this reason
    (``bridge.worker.jobs.sync_invoice``); the message is the worker's outcome line."""


class WorkerOperations:
    def __init__(self, core: InvoiceCore) -> None:
        self._core = core

    def send_pending(self, invoice_id: int, job_id: str) -> str:
        """The queue job: send the invoice's pending operation, if this job is still its job.

        Waits for the invoice's lock (an inline operation may hold it). Returns what
        happened, for the worker's log; raises ``QueuedOperationFailed`` (the record saved
        first) when the attempt left the invoice failed or dead.
        """
        core = self._core
        # The body to send is the pending one: the last accepted body is not needed.
        with core.locked(invoice_id, wait=True, with_body=False) as (lock, record):
            its_job = record is not None and record.pending and record.pending.job_id == job_id
            if not rules.worker_sends(situation(record), bool(its_job)):
                return "nothing to send: superseded or settled"
            pending = record.pending
            answer = core.call_finan(lock, record, pending)
            if isinstance(answer, ProviderRejected):
                core.reject(record, pending, answer, Caller.WORKER, write_back=True)
                raise QueuedOperationFailed(f"rejected by Finan ({answer.code}); failed")
            if isinstance(answer, ProviderUnavailable):
                pending.attempts += 1
                if rules.retries(pending.attempts, core.retry_schedule):
                    core.enqueue(record, pending, answer.message, Caller.WORKER)
                    return f"Finan unavailable; attempt {pending.attempts + 1} scheduled"
                core.give_up(record, pending, answer.message)
                # Finan's own words may quote the customer: they stay on the (encrypted)
                # record, out of the job's exc_info and the logs.
                raise QueuedOperationFailed(
                    f"Finan unavailable after {queued_attempts(pending)}; dead"
                )
            core.accept(lock, record, pending, answer, Caller.WORKER, write_back=True)
            return f"sent; {record.state}"

    def recover_stranded(self) -> list[int]:
        """Give every queued invoice whose job is gone a new job now; the ids it did it for.

        A job is gone when Redis lost it (no AOF), or RQ gave up on it (its crash retries
        spent). Busy invoices are skipped: whoever holds the lock is dealing with them.
        """
        recovered = []
        for invoice_id in self._core.records.ids_in_state(State.QUEUED):
            try:
                with self._core.locked(invoice_id, with_body=False) as (_, record):
                    if self._reschedule_if_stranded(record):
                        recovered.append(invoice_id)
            except InFlight:
                continue  # busy: whoever holds the lock deals with it
            except StoredDataUnreadable as exc:  # one bad record must not block the rest
                log.error("invoice %s skipped by the sweep: %s", invoice_id, exc.message)
        return recovered

    def _reschedule_if_stranded(self, record: Record | None) -> bool:
        """Under the invoice's lock: a new job now if it is queued without a live one."""
        core = self._core
        if not situation(record).queued or queue.job_is_live(core.redis, record.pending.job_id):
            return False
        log.warning("invoice %s was queued without a live job; scheduling one", record.invoice_id)
        core.enqueue(record, record.pending, "recovered a lost queue job", Caller.WORKER, delay=0)
        return True
