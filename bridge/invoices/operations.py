"""The invoice operations of every caller, behind one object (docs/contract/semantics.md).

``InvoiceOperations`` is what the web, the worker and the CLI are given: the CRM's issue,
update, cancel, repeated issue and record read (``crm_operations``), the queue worker's
send and sweep (``worker_operations``), and an operator's preview and re-sync
(``operator_operations``). They share the lock, Finan and the saves (``core``) and consult
the transition rules (``rules``).
"""

from __future__ import annotations

from typing import Any

import redis

from bridge.integrations.finan.client import FinanClient
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.core import InvoiceCore, Outcome, body_diff
from bridge.invoices.crm_operations import CrmOperations
from bridge.invoices.mapping import MappingConfig
from bridge.invoices.operator_operations import (
    SENT,
    UNCHANGED,
    OperatorOperations,
    Preview,
    ResyncOutcome,
)
from bridge.invoices.rules import (
    ALREADY_ISSUED_MESSAGE,
    CANCEL_MESSAGE,
    QUEUED_MESSAGE,
    RESYNC_UNCHANGED_MESSAGE,
    RESYNCED_MESSAGE,
)
from bridge.invoices.worker_operations import WorkerOperations
from bridge.store.lock import LOCK_TIMEOUT_SECONDS
from bridge.store.records import Record, RecordStore
from schemas.states import Caller, Operation

__all__ = [
    "ALREADY_ISSUED_MESSAGE",
    "CANCEL",
    "CANCEL_MESSAGE",
    "CRM",
    "ISSUE",
    "OPERATOR",
    "QUEUED_MESSAGE",
    "RESYNC",
    "RESYNCED_MESSAGE",
    "RESYNC_UNCHANGED_MESSAGE",
    "SENT",
    "UNCHANGED",
    "UPDATE",
    "WORKER",
    "InvoiceOperations",
    "Outcome",
    "Preview",
    "ResyncOutcome",
    "body_diff",
]

ISSUE, UPDATE, CANCEL, RESYNC = Operation
CRM, WORKER, OPERATOR = Caller


class InvoiceOperations:
    def __init__(
        self,
        connection: redis.Redis,
        records: RecordStore,
        tourwell: TourwellClient,
        finan: FinanClient,
        mapping_config: MappingConfig,
        retry_schedule: tuple[int, ...] = (10,),
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
        lookup_url_template: str | None = None,
    ) -> None:
        """``lock_timeout``: seconds each invoice's lock lasts unless renewed (see
        ``bridge.store.lock``); the call to Finan must take under half of it.
        ``lookup_url_template``: ``PROVIDER_LOOKUP_URL_TEMPLATE``, the Finan link each
        record keeps once Finan accepted a body."""
        self._core = InvoiceCore(
            connection,
            records,
            tourwell,
            finan,
            mapping_config,
            retry_schedule,
            lock_timeout=lock_timeout,
            lookup_url_template=lookup_url_template,
        )
        self._crm = CrmOperations(self._core)
        self._worker = WorkerOperations(self._core)
        self._operator = OperatorOperations(self._core)

    @property
    def records(self) -> RecordStore:
        return self._core.records

    # --- the CRM's ---

    def get(self, invoice_id: int, with_body: bool = True) -> Record:
        return self._core.get(invoice_id, with_body)

    def issue(self, invoice_id: int, payload: Any | None, source: str | None = None) -> Outcome:
        return self._crm.issue(invoice_id, payload, source)

    def answer_repeated_issue(self, invoice_id: int, source: str | None) -> Outcome | None:
        return self._crm.answer_repeated_issue(invoice_id, source)

    def update(self, invoice_id: int, fields: dict[str, Any]) -> Outcome:
        return self._crm.update(invoice_id, fields)

    def cancel(self, invoice_id: int, cancel_note: str | None) -> Outcome:
        return self._crm.cancel(invoice_id, cancel_note)

    # --- the queue worker's ---

    def send_pending(self, invoice_id: int, job_id: str) -> str:
        return self._worker.send_pending(invoice_id, job_id)

    def recover_stranded(self) -> list[int]:
        return self._worker.recover_stranded()

    # --- an operator's ---

    def preview(self, invoice_id: int) -> Preview:
        return self._operator.preview(invoice_id)

    def resync(self, invoice_id: int, force: bool = False, by: str | None = None) -> ResyncOutcome:
        return self._operator.resync(invoice_id, force, by)
