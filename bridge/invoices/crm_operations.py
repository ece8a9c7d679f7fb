"""The CRM's operations: issue, update, cancel, and a repeated issue answered from the
record (docs/contract/semantics.md#transitions, #repeated-issue).

Each takes the invoice's lock (a concurrent one is ``409`` + ``Retry-After``), asks
``rules.decide`` what the record allows, builds the body, asks again with what the content
layer found, and sends, replaces the queued operation, or answers from the record.
"""

from __future__ import annotations

from typing import Any

from bridge.invoices import rules
from bridge.invoices.core import (
    InvoiceCore,
    Outcome,
    cancel_body_of,
    pending_source,
    refuse,
    situation,
)
from bridge.invoices.mapping import apply_update, customer_name
from bridge.invoices.rules import Action, Content, Decision
from bridge.store.lock import InvoiceLock
from bridge.store.records import Event, Pending, Record, fingerprint
from schemas.states import Caller, Operation, State


class CrmOperations:
    def __init__(self, core: InvoiceCore) -> None:
        self._core = core

    def issue(self, invoice_id: int, payload: Any | None, source: str | None = None) -> Outcome:
        """Issue from the invoice in the body, or, without one, from the CRM's copy.

        ``source`` is the ``fingerprint`` of the request body ``payload`` was parsed from:
        kept with the body, so that ``answer_repeated_issue`` knows the request again.
        """
        core = self._core
        given = core.load(invoice_id, payload) if payload is not None else None
        with core.locked(invoice_id) as (lock, known):
            record = known or core.records.new(invoice_id)
            now = situation(known)
            _refuse_or_build(rules.decide(now, Operation.ISSUE), invoice_id)
            invoice = given or core.pull(invoice_id)
            body = core.encode(invoice, record)
            pending = record.pending
            content = Content(
                unchanged=record.accepted and fingerprint(body) == record.fingerprint,
                same_as_accepted=source is not None and record.source == source,
                same_as_pending=pending is not None
                and (
                    (source is not None and pending.source == source)
                    or body == pending.body.encode()
                ),
            )
            decision = rules.decide(now, Operation.ISSUE, content)
            if decision.action == Action.REFUSE:
                refuse(decision, invoice_id)
            if decision.action == Action.ANSWER:
                core.settle(record, decision.settles)
                return Outcome(decision.status, decision.message, record)
            record.code = invoice.get("code") or record.code
            record.customer = customer_name(invoice) or record.customer
            new = Pending(Operation.ISSUE, body.decode(), State.ISSUED, source=source)
            return self._send(lock, record, new, decision, Operation.ISSUE)

    def answer_repeated_issue(self, invoice_id: int, source: str | None) -> Outcome | None:
        """The answer to an issue request byte for byte the one that started the operation
        whose body Finan accepted last, ``source`` being the ``fingerprint`` of its body
        (``issue``'s answer, as of the moment the record is read, without the lock, parsing
        or mapping); None for any other request."""
        if source is None:
            return None  # no invoice in the body: the CRM's copy decides
        known = self._core.records.get(invoice_id, with_body=False)
        if known is not None and rules.answers_repeated_issue(
            situation(known), known.source == source
        ):
            return Outcome(201, rules.ALREADY_ISSUED_MESSAGE, known)
        return None

    def update(self, invoice_id: int, fields: dict[str, Any]) -> Outcome:
        """Pull the CRM's current invoice, lay the update fields over it, and send it."""
        core = self._core
        with core.locked(invoice_id) as (lock, record):
            now = situation(record)
            _refuse_or_build(rules.decide(now, Operation.UPDATE), invoice_id)
            invoice = apply_update(core.pull(invoice_id), fields)
            body = core.encode(invoice, record)
            record.code = invoice.get("code") or record.code
            record.customer = customer_name(invoice) or record.customer
            if core.lookup_url_template is None:  # the CRM's own link, kept as it sent it
                lookup_url = fields.get("lookup_url") or record.lookup_url
                changed, record.lookup_url = lookup_url != record.lookup_url, lookup_url
            else:  # the bridge's Finan link (``keep_link``), whatever the CRM sends
                changed = core.keep_link(record)
            content = Content(unchanged=record.fingerprint == fingerprint(body))
            decision = rules.decide(now, Operation.UPDATE, content)
            if decision.action == Action.ANSWER:
                core.settle(record, decision.settles, changed)
                return Outcome(decision.status, decision.message, record)
            # Behind a queued issue, the update is still the invoice's first body, and that
            # issue's request is still the one that started it.
            source = rules.issue_source(decision.send_as, pending_source(record))
            new = Pending(decision.send_as, body.decode(), State.ISSUED, source=source)
            return self._send(lock, record, new, decision, Operation.UPDATE)

    def cancel(self, invoice_id: int, cancel_note: str | None) -> Outcome:
        """Finan has no cancel: send the latest body emptied of anything to collect.

        Allowed once anything may have reached Finan: a body Finan accepted, or a pending
        operation, queued, failed or dead (a try that timed out or was cut off may have been
        stored). Only an invoice the bridge never sent a body for has nothing to cancel.
        """
        core = self._core
        with core.locked(invoice_id) as (lock, record):
            decision = rules.decide(situation(record), Operation.CANCEL)
            if decision.action == Action.REFUSE:
                refuse(decision, invoice_id)
            if decision.action == Action.ANSWER:
                # Already cancelled (or a cancel queued): nothing is sent, but a new note is
                # the CRM's latest word; it is kept, the old one stays in the history.
                if cancel_note is not None and cancel_note != record.cancel_note:
                    earlier, record.cancel_note = record.cancel_note, cancel_note
                    note = f"cancel note replaced (was {earlier!r}); nothing sent to Finan"
                    core.records.save(
                        record, Event(Operation.CANCEL, Caller.CRM, record.state, note)
                    )
                return Outcome(decision.status, decision.message, record)
            body = cancel_body_of(record, decision.body_from)
            record.cancel_note = cancel_note
            new = Pending(Operation.CANCEL, body.decode(), State.CANCELLED)
            return self._send(lock, record, new, decision, Operation.CANCEL)

    def _send(
        self,
        lock: InvoiceLock,
        record: Record,
        pending: Pending,
        decision: Decision,
        requested: Operation,
    ) -> Outcome:
        """Replace the queued operation with ``pending``, or send it now (queued if Finan is
        unavailable; a rejection is kept, as ``failed``, and re-raised); the answer is
        built from the record as saved."""
        if decision.action == Action.REPLACE:
            self._core.replace_pending(record, pending, requested)
            return Outcome(decision.status, decision.message, record)
        if self._core.send_now(lock, record, pending, Caller.CRM):
            return Outcome(decision.status, decision.message, record)
        return Outcome(202, rules.QUEUED_MESSAGE, record)


def _refuse_or_build(decision: Decision, invoice_id: int) -> None:
    """Before the body is built, the rules either refuse or ask for it."""
    if decision.action == Action.REFUSE:
        refuse(decision, invoice_id)
    assert decision.action == Action.BUILD, decision
