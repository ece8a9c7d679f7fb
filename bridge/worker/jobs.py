"""What ``bridge worker`` runs: the queue's jobs, and the worker that runs them.

- ``sync_invoice``: send an invoice's pending operation to Finan (``InvoiceOperations``
  does the work, under the invoice's lock, and schedules the next attempt or gives up).
- ``write_back``: tell the CRM how a queued operation ended (``PUT /api/v1/invoices/{id}``
  with ``note``, ``total_amount`` and ``lookup_url``), paced by the shared CRM rate limit.
  RQ retries it on 429/5xx/timeouts (``queue.WRITE_BACK_RETRY``).
- ``resync_batch``: one slice of an operator's bulk re-sync (``bridge.invoices.resync``), paced
  by the CRM's rate limit; it schedules the next slice itself.
- ``reconcile_batch``: one slice of a reconciliation (``bridge.invoices.reconcile``): what
  Finan holds, checked for many invoices, paced by ``PROVIDER_RATE_LIMIT_PER_MIN``.
- ``BridgeWorker``: RQ's worker, built with the process's ``Services`` (``bridge.services``)
  and running each job with them; its maintenance round also gives stranded queued
  invoices, and unfinished bulk re-syncs, a new job (``InvoiceOperations.recover_stranded``,
  ``ResyncBatches.recover_stranded``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rq import SimpleWorker, Worker, get_current_job

from bridge.errors import BridgeError, CrmUnavailable
from bridge.invoices.mapping import round_dong
from bridge.invoices.worker_operations import QueuedOperationFailed
from bridge.observability.logs import log_context
from bridge.services import Services
from bridge.store.queue import QUEUE_NAME
from bridge.store.records import CANCELLED, DEAD, FAILED, ISSUED, Event, Record

__all__ = [
    "QUEUE_NAME",
    "BridgeWorker",
    "InProcessWorker",
    "reconcile_batch",
    "resync_batch",
    "running_with",
    "sync_invoice",
    "write_back",
]

log = logging.getLogger(__name__)

# How often a worker runs RQ's registry clean-up (which hands a dead worker's job on), the
# restart of a scheduler that died (with Redis, say) and the stranded-invoice sweep.
MAINTENANCE_INTERVAL_SECONDS = 30
# RQ's worker TTL: an idle worker waits for a job at most this less 15 s at a time, and only
# between those waits can it run its maintenance (RQ's default, 420 s, meant an idle worker's
# maintenance ran about every 7 minutes, whatever its interval).
WORKER_TTL_SECONDS = 30
# How often a worker heart-beats the job its work horse runs; RQ counts the job abandoned
# this plus 60 s after the last heartbeat (RQ's default, 30 s: 90 s).
JOB_MONITORING_INTERVAL_SECONDS = 10
# The longest wait between a worker's attempts to reach a Redis that is gone (RQ's: 60 s).
MAX_REDIS_RECONNECT_WAIT_SECONDS = 5.0

# The services of the job running now: set by the worker around each job (a forked work
# horse inherits it), never built here.
_services: ContextVar[Services | None] = ContextVar("bridge_job_services", default=None)


@contextmanager
def running_with(services: Services) -> Iterator[None]:
    """Run the jobs called inside with ``services`` (the workers do it around each job)."""
    token = _services.set(services)
    try:
        yield
    finally:
        _services.reset(token)


def _current() -> Services:
    services = _services.get()
    if services is None:
        raise RuntimeError(
            "a bridge job runs in a bridge worker (`bridge worker`), which gives it the "
            "bridge's services"
        )
    return services


def sync_invoice(invoice_id: int, job_id: str) -> str:
    """Send the invoice's pending operation. An attempt that leaves the invoice failed or
    dead fails the job (RQ's failed registry, the reason in its ``exc_info``), and RQ does
    not retry it: its crash retries are for a job that crashed, and this one did its work."""
    with log_context(invoice_id=invoice_id, operation="sync", job_id=job_id):
        try:
            outcome = _current().operations.send_pending(invoice_id, job_id)
        except QueuedOperationFailed as exc:
            log.warning("queued operation: %s", exc)
            job = get_current_job()
            if job is not None:
                job.retries_left = 0  # read by RQ's failure handling in this process
            raise
        log.info("queued operation: %s", outcome)
        return outcome


def resync_batch(batch_id: str, job_id: str) -> str:
    outcome = _current().batches.run_slice_from_queue(batch_id, job_id)
    log.info("bulk re-sync %s: %s", batch_id, outcome)
    return outcome


def reconcile_batch(batch_id: str, job_id: str) -> str:
    outcome = _current().reconciliations.run_slice_from_queue(batch_id, job_id)
    log.info("reconciliation %s: %s", batch_id, outcome)
    return outcome


def write_back(invoice_id: int) -> str:
    with log_context(invoice_id=invoice_id, operation="write_back"):
        outcome = _write_back(invoice_id)
        log.info("write-back: %s", outcome)
        return outcome


def _write_back(invoice_id: int) -> str:
    services = _current()
    records = services.operations.records
    record = records.get(invoice_id, with_body=False)
    if record is None or record.state not in (ISSUED, CANCELLED, FAILED, DEAD):
        return "nothing to write back"  # queued again since: its own outcome will follow
    fields = outcome_fields(record, services.settings.provider_lookup_url_template)
    try:
        services.background_crm.write_back(invoice_id, fields)
    except CrmUnavailable as exc:
        job = get_current_job()
        if job is not None and job.retries_left:
            raise  # RQ tries again later (queue.WRITE_BACK_RETRY)
        records.add_event(invoice_id, Event("write_back", "worker", "failed", exc.message))
        return f"write-back gave up: {exc.message}"
    except BridgeError as exc:  # the CRM refused: our token, an unknown invoice
        records.add_event(invoice_id, Event("write_back", "worker", "failed", exc.message))
        return f"write-back refused: {exc.message}"
    records.add_event(invoice_id, Event("write_back", "worker", "written_back", fields["note"]))
    return "written back"


def outcome_fields(record: Record, lookup_url_template: str | None) -> dict[str, str]:
    """The CRM update fields that say how the invoice's last operation ended."""
    codes = f"order {record.provider_order_code}, system {record.provider_system_code}"
    error = record.last_error or {}
    if record.state == ISSUED:
        fields = {"note": f"Finan invoice issued: {codes}"}
        if record.total_amount is not None:
            fields["total_amount"] = str(round_dong(record.total_amount))
        if lookup_url_template:
            fields["lookup_url"] = lookup_url_template.format(
                provider_invoice_id=record.provider_invoice_id
            )
        return fields
    if record.state == CANCELLED:
        return {"note": f"Finan invoice cancelled (nothing left to collect): {codes}"}
    if record.state == FAILED:
        return {"note": f"Finan rejected the invoice ({error.get('code')}): {error.get('message')}"}
    # Dead: Finan never confirmed it, but a try that timed out or was cut off may have been
    # stored there: never "not sent".
    operation = record.pending.operation if record.pending else "operation"
    advice = "An operator should re-sync it once Finan is back"
    if operation != "cancel":
        advice += (
            "; if the invoice is to be cancelled instead, cancel it in the CRM (the bridge "
            "then sends the cancel, not the invoice)"
        )
    return {
        "note": f"Finan did not confirm the {operation}; it may or may not have reached "
        f"Finan. {advice}. Last error: {error.get('message')}"
    }


class _WithServices:
    """A worker that runs each job with its ``services``, and whose maintenance round also
    gives stranded queued invoices, and unfinished bulk re-syncs, a new job."""

    max_connection_wait_time = MAX_REDIS_RECONNECT_WAIT_SECONDS  # RQ's worker reads it

    def __init__(self, *args: Any, services: Services, **kwargs: Any) -> None:
        self.services = services
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL_SECONDS)
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Any, queue: Any) -> Any:
        with running_with(self.services):
            return super().execute_job(job, queue)  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[misc]
        self._keep_scheduling()
        sweeps = (
            ("queued invoices", self.services.operations.recover_stranded),
            ("bulk re-syncs", self.services.batches.recover_stranded),
            ("reconciliations", self.services.reconciliations.recover_stranded),
        )
        for what, sweep in sweeps:
            try:
                recovered = sweep()
            except Exception:  # a sweep must never stop the worker; the next round retries
                log.exception("the sweep for stranded %s failed", what)
                continue
            if recovered:
                log.warning("gave %d stranded %s a new job: %s", len(recovered), what, recovered)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self._bursting = bool(kwargs.get("burst", args[0] if args else False))
        return super().work(*args, **kwargs)  # type: ignore[misc]

    def _keep_scheduling(self) -> None:
        """Make sure some scheduler moves this worker's due jobs to the queue: when no
        scheduler holds the queue's lock (``rq:scheduler-lock:<queue>``; its holder died, with
        Redis say, or Redis came back without it), this worker takes it and starts its own
        (``RQScheduler.acquire_locks(auto_start=True)``, which starts one only if this
        worker's is not running). A worker started without ``with_scheduler``, or in burst
        mode (which moves the due jobs once, at start), has none to keep."""
        scheduler = getattr(self, "scheduler", None)
        if scheduler is None or getattr(self, "_bursting", False):
            return
        try:
            taken = scheduler.acquire_locks(auto_start=True)
        except Exception as exc:  # never stop the worker; the next round tries again
            log.warning("checking the queue's scheduler failed: %s", exc)
            return
        if taken:
            log.debug("this worker's scheduler holds the lock of %s", ", ".join(sorted(taken)))


class BridgeWorker(_WithServices, Worker):
    """``bridge worker``: RQ's forking worker, each job in a work horse of its own.

    ``after_each_job`` runs in the worker once the job's horse has exited (the worker's
    metrics fold the horse's counter files: ``bridge.observability.worker_metrics``).
    """

    def __init__(
        self, *args: Any, after_each_job: Callable[[], object] | None = None, **kwargs: Any
    ) -> None:
        self._after_each_job = after_each_job
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Any, queue: Any) -> Any:
        try:
            return super().execute_job(job, queue)
        finally:
            if self._after_each_job is not None:
                try:
                    self._after_each_job()
                except Exception:  # never stop the worker for its metrics
                    log.exception("the worker's after-job step failed")


class InProcessWorker(_WithServices, SimpleWorker):
    """RQ's worker that runs each job in this process, one after another (tests)."""
