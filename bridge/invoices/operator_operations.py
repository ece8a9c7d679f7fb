"""An operator's operations: preview a re-sync, and re-sync (docs/contract/semantics.md#resync).

A re-sync pulls, maps and sends (for a cancelled invoice, or one whose cancel is pending,
the cancel body again, without a pull: it never un-cancels), then writes the outcome back
to the CRM. A preview makes the same plan and sends and saves nothing. An invoice the
bridge has no record of (the CRM's call never came) is pulled and sent as its first issue,
which creates the record; one the CRM has no copy of either is refused (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import NoSuchInvoice, NotFound
from bridge.invoices import rules
from bridge.invoices.core import (
    InvoiceCore,
    Outcome,
    body_diff,
    cancel_body_of,
    pending_source,
    refuse,
    situation,
)
from bridge.invoices.mapping import customer_name
from bridge.invoices.rules import Action, Content, Decision
from bridge.store.records import Event, Pending, Record, fingerprint
from schemas.states import Caller, Operation, State

# What a re-sync did: sent (Finan accepted it), unchanged (nothing sent), queued (Finan was
# unavailable; a worker sends it later). A rejection raises ``ProviderRejected`` instead.
SENT, UNCHANGED = "sent", "unchanged"


@dataclass(frozen=True)
class ResyncOutcome(Outcome):
    result: str = SENT  # sent, unchanged or queued


@dataclass(frozen=True)
class Preview:
    """What a re-sync would send, compared with the body Finan last accepted. Nothing is
    sent. (Not with a body Finan refused, or never confirmed: Finan holds what it accepted.)"""

    record: Record | None  # None: the bridge has no record of the invoice (yet)
    operation: str  # issue, update or cancel: how a re-sync would send it
    body: str  # the exact JSON text a re-sync would send
    compared_with: str | None  # the body Finan last accepted; None when it never accepted one
    changed: bool  # differs from the body Finan last accepted
    would_send: bool  # a re-sync without force would send it (failed/dead/queued always)
    diff: str  # unified diff of ``compared_with`` -> ``body``, as indented JSON
    summary: str  # one plain sentence for people: what a re-sync without force does


class OperatorOperations:
    def __init__(self, core: InvoiceCore) -> None:
        self._core = core

    def preview(self, invoice_id: int) -> Preview:
        """Pull, map and compare with the body Finan last accepted; sends and saves nothing."""
        known = self._core.records.get(invoice_id)
        record = known or self._core.records.new(invoice_id)
        now = situation(known)
        plan = rules.decide(now, Operation.RESYNC)
        if plan.action == Action.REFUSE:
            refuse(plan, invoice_id)
        body, _code, _customer = self._build(record, plan, now)
        content = Content(unchanged=fingerprint(body) == record.fingerprint)
        compared_with = record.last_body if record.accepted else None
        return Preview(
            record=known,
            operation=plan.send_as,
            body=body.decode(),
            compared_with=compared_with,
            changed=not content.unchanged,
            would_send=rules.decide(now, Operation.RESYNC, content).action == Action.SEND,
            diff=body_diff(compared_with, body.decode()),
            summary=rules.preview_summary(now, content, plan.send_as),
        )

    def resync(self, invoice_id: int, force: bool = False, by: str | None = None) -> ResyncOutcome:
        """An operator's re-sync: pull, map and send, then write the outcome back to the CRM.

        Unchanged content (Finan already holds this exact body) sends nothing unless
        ``force``; a failed, dead or queued invoice is always sent (that is what re-sync is
        for). Finan unavailable: queued again, with a fresh schedule. ``by``: the operator's
        name (``BRIDGE_ADMIN_TOKENS``), kept in the history's events.
        """
        core = self._core
        with core.locked(invoice_id) as (lock, known):
            record = known or core.records.new(invoice_id)  # saved once Finan's answer is in
            now = situation(known)
            plan = rules.decide(now, Operation.RESYNC)
            if plan.action == Action.REFUSE:
                refuse(plan, invoice_id)
            body, code, customer = self._build(record, plan, now)
            # e.g. a record kept before codes (or customer names): saved even when unchanged
            code_is_new = bool(code) and code != record.code
            code_is_new |= bool(customer) and customer != record.customer
            record.code = code or record.code
            record.customer = customer or record.customer
            content = Content(unchanged=fingerprint(body) == record.fingerprint)
            decision = rules.decide(now, Operation.RESYNC, content, force=force)
            if decision.action == Action.ANSWER:
                event = Event(
                    Operation.RESYNC, Caller.OPERATOR, UNCHANGED, "nothing sent to Finan", by=by
                )
                # saved with the event, so that a search finds it (and the link kept)
                if core.keep_link(record) or code_is_new:
                    core.records.save(record, event)
                else:
                    core.records.add_event(invoice_id, event)
                return ResyncOutcome(decision.status, decision.message, record, UNCHANGED)
            send_as = decision.send_as
            state = State.CANCELLED if send_as == Operation.CANCEL else State.ISSUED
            # A re-sync of an issue Finan has not accepted is still that issue.
            source = rules.issue_source(send_as, pending_source(record))
            pending = Pending(send_as, body.decode(), state, source=source)
            if core.send_now(lock, record, pending, Caller.OPERATOR, write_back=True, by=by):
                return ResyncOutcome(decision.status, decision.message, record, SENT)
            return ResyncOutcome(202, rules.QUEUED_MESSAGE, record, State.QUEUED)

    def _build(
        self, record: Record, plan: Decision, now: rules.Situation
    ) -> tuple[bytes, str | None, str | None]:
        """The exact body a re-sync of ``record`` (in ``now``) sends as ``plan`` says, and
        the CRM's invoice code and customer name (None when not pulled)."""
        if plan.body_from is not None:  # a cancel body, from the latest body held: no pull
            return cancel_body_of(record, plan.body_from), None, None
        try:
            invoice = self._core.pull(record.invoice_id)
        except NotFound:
            refused = rules.crm_has_none(now)
            if refused is None:
                raise
            raise NoSuchInvoice(refused.message.format(invoice_id=record.invoice_id)) from None
        return self._core.encode(invoice, record), invoice.get("code"), customer_name(invoice)
