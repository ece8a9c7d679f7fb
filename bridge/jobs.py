"""What ``bridge worker`` runs: the queue's jobs, and the worker that runs them.

- ``sync_invoice``: send an invoice's pending operation to Finan (``InvoiceOperations``
  does the work, under the invoice's lock, and schedules the next attempt or gives up).
- ``write_back``: tell the CRM how a queued operation ended (``PUT /api/v1/invoices/{id}``
  with ``note``, ``total_amount`` and ``lookup_url``), paced by the shared CRM rate limit.
  RQ retries it on 429/5xx/timeouts (``queue.WRITE_BACK_RETRY``).
- ``resync_batch``: one slice of an operator's bulk re-sync (``bridge.resync``), paced by
  the CRM's rate limit; it schedules the next slice itself.
- ``BridgeWorker``: RQ's worker, whose maintenance round also gives stranded queued
  invoices, and unfinished bulk re-syncs, a new job (``InvoiceOperations.recover_stranded``,
  ``ResyncBatches.recover_stranded``).
"""

from __future__ import annotations

import logging
import os

from rq import Worker, get_current_job

from bridge.app import Services, build_services
from bridge.clients.tourwell import TourwellClient
from bridge.config import load_settings
from bridge.errors import BridgeError, CrmUnavailable
from bridge.logs import log_context
from bridge.mapping import round_dong
from bridge.queue import QUEUE_NAME
from bridge.records import CANCELLED, DEAD, FAILED, ISSUED, Event, Record
from bridge.resync import batches_of

__all__ = ["QUEUE_NAME", "BridgeWorker", "resync_batch", "sync_invoice", "use", "write_back"]

log = logging.getLogger(__name__)

# A worker may wait longer than a web request for a slot of the CRM's rate limit.
WRITE_BACK_RATE_LIMIT_WAIT_SECONDS = 60.0
# How often a worker runs RQ's registry clean-up and the stranded-invoice sweep.
MAINTENANCE_INTERVAL_SECONDS = 60

_services: Services | None = None


def use(services: Services | None) -> None:
    """Run jobs in this process with ``services`` (``bridge worker`` and tests call it);
    None: build them from the environment at the next job."""
    global _services
    _services = services


def _current() -> Services:
    global _services
    if _services is None:  # a worker started some other way: build from the environment
        _services = build_services(load_settings(os.environ))
    return _services


def sync_invoice(invoice_id: int, job_id: str) -> str:
    with log_context(invoice_id=invoice_id, operation="sync", job_id=job_id):
        outcome = _current().operations.send_pending(invoice_id, job_id)
        log.info("queued operation: %s", outcome)
        return outcome


def resync_batch(batch_id: str, job_id: str) -> str:
    outcome = batches_of(_current()).run_slice_from_queue(batch_id, job_id)
    log.info("bulk re-sync %s: %s", batch_id, outcome)
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
    crm = TourwellClient(
        services.settings, services.redis, rate_limit_wait=WRITE_BACK_RATE_LIMIT_WAIT_SECONDS
    )
    try:
        crm.write_back(invoice_id, fields)
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


class BridgeWorker(Worker):
    """RQ's worker, plus the sweep for queued invoices whose job was lost."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        sweeps = (
            ("queued invoices", lambda: _current().operations.recover_stranded()),
            ("bulk re-syncs", lambda: batches_of(_current()).recover_stranded()),
        )
        for what, sweep in sweeps:
            try:
                recovered = sweep()
            except Exception:  # a sweep must never stop the worker; the next round retries
                log.exception("the sweep for stranded %s failed", what)
                continue
            if recovered:
                log.warning("gave %d stranded %s a new job: %s", len(recovered), what, recovered)
