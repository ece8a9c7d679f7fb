"""What Finan holds for an invoice, compared with the last body Finan accepted
(``GET /admin/invoices/{id}/finan``, and each invoice of a reconciliation).

A check reads the record, asks Finan for its copy (signed ``GET detail``), and compares the
two (``finan_comparison``). It takes no lock: it changes nothing at Finan and nothing of
the record. If Finan accepted another body for the invoice while Finan was being asked, the
check asks again, once, so a re-sync in between is not reported as a difference.

The outcome is remembered (``bridge.store.out_of_sync``): an invoice found out of sync is
listed until a later check finds it in sync or Finan accepts a body for it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bridge.errors import Conflict, NotFound
from bridge.integrations.finan.client import FinanClient
from bridge.invoices import rules
from bridge.invoices.finan_comparison import UNKNOWN_TO_FINAN, Difference, compare
from bridge.invoices.mapping import finan_totals
from bridge.store.out_of_sync import OutOfSyncStore
from bridge.store.records import Record, RecordStore, now_iso

NEVER_ACCEPTED = (
    "Finan has never accepted a body for invoice {invoice_id} (state {state}): there is "
    "nothing to compare its copy with; issue or re-sync the invoice first"
)


@dataclass(frozen=True)
class FinanCheck:
    record: Record
    finan: dict[str, Any] | None  # Finan's copy as its detail returns it; None: unknown
    differences: list[Difference] = field(default_factory=list)
    checked_at: str = field(default_factory=now_iso)

    @property
    def in_sync(self) -> bool:
        return not self.differences

    @property
    def message(self) -> str:
        if self.in_sync:
            return "Finan holds what it last accepted"
        if self.finan is None:
            return "Finan does not know this invoice (lost, or deleted there)"
        return "Finan's copy differs: " + ", ".join(d.field for d in self.differences)

    def bridge_view(self) -> dict[str, Any]:
        """The bridge's side as compared: the last body, with the totals Finan answered."""
        body = json.loads(self.record.last_body or "{}")
        return {**body, **_totals_shown(self.record)}


class FinanChecks:
    def __init__(
        self, records: RecordStore, finan: FinanClient, out_of_sync: OutOfSyncStore
    ) -> None:
        self._records = records
        self._finan = finan
        self.out_of_sync = out_of_sync

    def check(self, invoice_id: int) -> FinanCheck:
        """Compare Finan's copy with the last accepted body, and remember the outcome.

        ``NotFound``: unknown to the bridge. ``Conflict``: Finan never accepted a body.
        ``ProviderUnavailable`` / ``ProviderRejected``: Finan could not be asked.
        """
        record = self._accepted_record(invoice_id)
        for _ in range(2):
            answer = self._finan.get_invoice(record.provider_invoice_id)
            now = self._records.get(invoice_id, with_body=False)
            if now is None or now.fingerprint == record.fingerprint:
                break
            record = self._accepted_record(invoice_id)  # accepted meanwhile: ask again
        finan = answer.data if answer is not None else None
        body = json.loads(record.last_body or "{}", parse_float=Decimal)
        result = FinanCheck(record, finan, compare(body, _expected_totals(record, body), finan))
        if result.in_sync:
            self.out_of_sync.forget(invoice_id)
        else:
            fields = [d.field for d in result.differences]
            self.out_of_sync.remember(invoice_id, result.checked_at, fields)
        return result

    def _accepted_record(self, invoice_id: int) -> Record:
        record = self._records.get(invoice_id)
        if record is None:
            raise NotFound(rules.UNKNOWN.format(invoice_id=invoice_id))
        if not record.accepted:
            raise Conflict(NEVER_ACCEPTED.format(invoice_id=invoice_id, state=record.state))
        return record


def _expected_totals(record: Record, body: dict[str, Any]) -> tuple[Decimal | None, ...]:
    """What Finan said it computed when it accepted the body; else its arithmetic on it."""
    if record.total_amount is not None:
        return record.total_amount, record.tax_amount
    try:
        return finan_totals(body)
    except (ValueError, KeyError, TypeError):
        return None, None


def _totals_shown(record: Record) -> dict[str, Any]:
    shown = {}
    for name in ("total_amount", "tax_amount"):
        value = getattr(record, name)
        if value is not None:
            shown[name] = int(value) if value == value.to_integral_value() else str(value)
    return shown


__all__ = ["UNKNOWN_TO_FINAN", "FinanCheck", "FinanChecks"]
