"""The transition rules (docs/contract/semantics.md#transitions), as a pure function.

``decide`` takes an invoice's ``Situation`` (its record, reduced to what the rules read)
and a requested operation, and says what to do: refuse it, build the body it would send,
answer from the record, replace the queued operation, or send now. Issue, update and
re-sync are decided twice: once before the body is built (refusals come before any pull),
then again with the ``Content`` facts of the mapped body (the content layer). No I/O here:
the callers in ``crm_operations``, ``operator_operations`` and ``worker_operations`` do
the locking, pulling, sending and saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.states import Caller, Operation, State

CANCEL_MESSAGE = "Invoice Canceled successfully"  # Tourwell's own wording (fixed)
ALREADY_ISSUED_MESSAGE = "Invoice already issued; nothing changed"
QUEUED_MESSAGE = (
    "Finan is unavailable; the operation is queued and will be sent, "
    "and its outcome written back to the CRM"
)
ISSUED_MESSAGE = "Invoice issued successfully"
UPDATED_MESSAGE = "Invoice updated successfully"
UPDATE_UNCHANGED_MESSAGE = "Invoice unchanged; nothing sent to Finan"
RESYNCED_MESSAGE = "Invoice re-synced: Finan accepted it; the outcome is written back to the CRM"
RECOVERED_MESSAGE = (
    "Invoice re-synced: the bridge had no record of it; Finan accepted it as its first issue, "
    "and the outcome is written back to the CRM"
)
RESYNC_UNCHANGED_MESSAGE = (
    "Invoice unchanged since Finan last accepted it; nothing sent (force to send anyway)"
)

# A preview's plain sentence for people: what a re-sync without force would do, compared
# with the body Finan last accepted (``preview_summary``).
PREVIEW_DIFFERS = "A re-sync would send this invoice: Finan holds a different version"
PREVIEW_SAME = "Finan already holds exactly this; a re-sync sends nothing unless forced"
PREVIEW_SAME_UNSETTLED = (
    "Finan already holds exactly this, but the invoice is {state}: a re-sync sends it again"
)
PREVIEW_NEVER_ACCEPTED = (
    "Finan has never accepted this invoice; a re-sync sends it as its first issue"
)
PREVIEW_NEVER_ACCEPTED_CANCEL = "Finan has never accepted this invoice; a re-sync sends its cancel"

# Refusals: ``{invoice_id}`` is filled in by the caller.
UNKNOWN = "invoice {invoice_id} is unknown to the bridge"
# A re-sync of an invoice the bridge has no record of, when the CRM has none either (404).
UNKNOWN_TO_CRM = "the CRM has no invoice {invoice_id} (and the bridge has no record of it)"
ISSUE_CANCELLED = "invoice {invoice_id} was cancelled; a cancelled invoice can't be issued again"
ISSUE_OTHER_CONTENT = (
    "invoice {invoice_id} is already issued with other content; "
    "send an update (PUT /api/v1/invoices/{invoice_id}) instead"
)
UPDATE_NOT_ISSUED = "invoice {invoice_id} has not been issued yet; issue it first"
UPDATE_CANCELLED = "invoice {invoice_id} was cancelled; it can't be updated"
CANCEL_NOT_ISSUED = "invoice {invoice_id} has not been issued yet; nothing to cancel"


class Action(StrEnum):
    REFUSE = "refuse"  # ``status`` (409; 404: unknown to the CRM too), ``message``: nothing changes
    BUILD = "build"  # build the body (``body_from``, else pull and map), then decide again
    ANSWER = "answer"  # nothing sent: answer from the record (``settles``: issued again)
    REPLACE = "replace"  # becomes the queued operation (its attempts and job kept): 202
    SEND = "send"  # send to Finan now (202 and queued if Finan stays unavailable)


class Body(StrEnum):
    """Which body the bridge holds a cancel body is built from (no pull)."""

    PENDING = "pending"  # the pending operation's body
    ACCEPTED = "accepted"  # the body Finan last accepted


class Behind(StrEnum):
    """What a caller's operation does when the invoice is queued."""

    REPLACES = "replaces"  # replaces the pending operation; the job already scheduled sends it
    SENDS_NOW = "sends now"  # sends at once, with a fresh schedule if Finan is still down
    SENDS_PENDING = "sends pending"  # the queue's job: sends what is pending, if still its job


# Who may replace a pending operation: the CRM (the latest content wins); an operator's
# re-sync sends now instead; the worker only sends what is pending.
BEHIND_QUEUED: dict[Caller, Behind] = {
    Caller.CRM: Behind.REPLACES,
    Caller.OPERATOR: Behind.SENDS_NOW,
    Caller.WORKER: Behind.SENDS_PENDING,
}

# Which queued operations each CRM operation replaces. An issue replaces only a first issue
# still waiting (behind a queued update it is answered or refused); nothing replaces a
# queued cancel (a cancel is answered, an issue or update refused).
REPLACES: dict[Operation, frozenset[Operation]] = {
    Operation.ISSUE: frozenset({Operation.ISSUE}),
    Operation.UPDATE: frozenset({Operation.ISSUE, Operation.UPDATE}),
    Operation.CANCEL: frozenset({Operation.ISSUE, Operation.UPDATE}),
}

CALLER: dict[Operation, Caller] = {
    Operation.ISSUE: Caller.CRM,
    Operation.UPDATE: Caller.CRM,
    Operation.CANCEL: Caller.CRM,
    Operation.RESYNC: Caller.OPERATOR,
}


@dataclass(frozen=True)
class Situation:
    """What the rules read of a record. ``state`` None: the bridge has no record."""

    state: State | None = None
    accepted: bool = False  # Finan has accepted a body for the invoice at least once
    pending: Operation | None = None  # the operation Finan has not accepted yet, if any

    @property
    def known(self) -> bool:
        return self.state is not None

    @property
    def queued(self) -> bool:
        return self.state == State.QUEUED and self.pending is not None

    @property
    def cancelled(self) -> bool:
        """Cancelled, or a cancel is pending (queued, failed or dead): only a cancel follows."""
        return self.state == State.CANCELLED or self.pending == Operation.CANCEL

    @property
    def unsettled(self) -> bool:
        """Finan refused, or never confirmed, the pending operation."""
        return self.state in (State.FAILED, State.DEAD)

    @property
    def first_issue(self) -> Operation:
        """How a new body is sent: an update once Finan accepted one, else the first issue."""
        return Operation.UPDATE if self.accepted else Operation.ISSUE


@dataclass(frozen=True)
class Content:
    """What the content layer found, comparing the body built for the request."""

    unchanged: bool = False  # byte for byte the body Finan accepted
    same_as_accepted: bool = False  # the issue request the accepted body came from
    same_as_pending: bool = False  # the issue request that started the pending operation,
    # or a body byte for byte the pending one


@dataclass(frozen=True)
class Decision:
    action: Action
    status: int | None = None
    message: str | None = None
    send_as: Operation | None = None  # the operation Finan gets (issue, update or cancel)
    body_from: Body | None = None  # a cancel body built from this body; None: pull and map
    settles: bool = False  # ANSWER: a failed or dead record is issued again, pending dropped


def refuse(message: str, status: int = 409) -> Decision:
    return Decision(Action.REFUSE, status, message)


def answer(status: int, message: str, settles: bool = False) -> Decision:
    return Decision(Action.ANSWER, status, message, settles=settles)


QUEUED_ANSWER = answer(202, QUEUED_MESSAGE)


def decide(
    situation: Situation,
    operation: Operation,
    content: Content | None = None,
    *,
    force: bool = False,
) -> Decision:
    """What ``operation`` does to an invoice in ``situation``; ``content``: the facts of
    the body built after a ``BUILD`` decision; ``force``: a re-sync sends unchanged bodies."""
    if operation == Operation.ISSUE:
        return _issue(situation, content)
    if operation == Operation.UPDATE:
        return _update(situation, content)
    if operation == Operation.CANCEL:
        return _cancel(situation)
    if operation == Operation.RESYNC:
        return _resync(situation, content, force)
    raise ValueError(f"no rules for {operation!r}")


def _replaces(situation: Situation, operation: Operation) -> bool:
    """Behind a queued operation, ``operation`` (the CRM's) replaces it."""
    return (
        situation.queued
        and BEHIND_QUEUED[CALLER[operation]] == Behind.REPLACES
        and situation.pending in REPLACES[operation]
    )


def _issue(situation: Situation, content: Content | None) -> Decision:
    if situation.cancelled:
        return refuse(ISSUE_CANCELLED)
    if content is None:
        return Decision(Action.BUILD, send_as=Operation.ISSUE)
    if situation.queued and content.same_as_pending:
        # What is queued already: replacing it would undo any update laid over it.
        return QUEUED_ANSWER
    if situation.accepted:
        if not (content.unchanged or content.same_as_accepted):
            return refuse(ISSUE_OTHER_CONTENT)
        if situation.queued:
            return QUEUED_ANSWER
        # An issue settles only a failed or dead issue: a later update stays, with its error.
        settles = situation.unsettled and situation.pending in (None, Operation.ISSUE)
        return answer(201, ALREADY_ISSUED_MESSAGE, settles)
    if _replaces(situation, Operation.ISSUE):
        return Decision(Action.REPLACE, 202, QUEUED_MESSAGE, Operation.ISSUE)
    return Decision(Action.SEND, 201, ISSUED_MESSAGE, Operation.ISSUE)


def _update(situation: Situation, content: Content | None) -> Decision:
    if not (situation.accepted or situation.state == State.QUEUED):
        return refuse(UPDATE_NOT_ISSUED)
    if situation.cancelled:
        return refuse(UPDATE_CANCELLED)
    if content is None:
        return Decision(Action.BUILD, send_as=situation.first_issue)
    if not situation.queued and content.unchanged:
        return answer(200, UPDATE_UNCHANGED_MESSAGE, settles=situation.unsettled)
    # Behind a queued issue, the update is still the invoice's first body.
    if _replaces(situation, Operation.UPDATE):
        return Decision(Action.REPLACE, 202, QUEUED_MESSAGE, situation.first_issue)
    return Decision(Action.SEND, 200, UPDATED_MESSAGE, situation.first_issue)


def _cancel(situation: Situation) -> Decision:
    if not (situation.accepted or situation.pending is not None):
        return refuse(CANCEL_NOT_ISSUED)
    if situation.state == State.CANCELLED:
        return answer(201, CANCEL_MESSAGE)
    if situation.queued and situation.pending == Operation.CANCEL:
        return QUEUED_ANSWER
    # The latest body: the pending one (it may have reached Finan), unless Finan refused it
    # and accepted another before.
    refused = situation.state == State.FAILED and situation.accepted
    body_from = Body.PENDING if situation.pending is not None and not refused else Body.ACCEPTED
    if _replaces(situation, Operation.CANCEL):
        return Decision(Action.REPLACE, 202, QUEUED_MESSAGE, Operation.CANCEL, body_from)
    return Decision(Action.SEND, 201, CANCEL_MESSAGE, Operation.CANCEL, body_from)


def _resync(situation: Situation, content: Content | None, force: bool) -> Decision:
    if not situation.known:  # never seen (the CRM's call never came): pulled, sent as an issue
        if content is None:
            return Decision(Action.BUILD, send_as=Operation.ISSUE)
        return Decision(Action.SEND, 200, RECOVERED_MESSAGE, Operation.ISSUE)
    if situation.cancelled:  # never un-cancels: the cancel body again, from the latest body
        body_from = Body.PENDING if situation.pending is not None else Body.ACCEPTED
        send_as, built = Operation.CANCEL, body_from
    else:
        send_as, built = situation.first_issue, None
    if content is None:
        return Decision(Action.BUILD, send_as=send_as, body_from=built)
    if force or situation.unsettled or situation.state == State.QUEUED or not content.unchanged:
        return Decision(Action.SEND, 200, RESYNCED_MESSAGE, send_as, built)
    return answer(200, RESYNC_UNCHANGED_MESSAGE)


def preview_summary(situation: Situation, content: Content, send_as: Operation) -> str:
    """The sentence a preview shows: what a re-sync without force does with the body built
    (``content``: compared with the body Finan last accepted), sent as ``send_as``."""
    if not situation.accepted:
        if send_as == Operation.CANCEL:
            return PREVIEW_NEVER_ACCEPTED_CANCEL
        return PREVIEW_NEVER_ACCEPTED
    if not content.unchanged:
        return PREVIEW_DIFFERS
    if _resync(situation, content, force=False).action == Action.SEND:
        return PREVIEW_SAME_UNSETTLED.format(state=situation.state)
    return PREVIEW_SAME


def crm_has_none(situation: Situation) -> Decision | None:
    """The CRM answered that it has no such invoice, pulled for a re-sync or its preview:
    refused naming the CRM when the bridge has no record either (a bulk re-sync counts it as
    failed); None: the CRM's own answer stands (the bridge's record names the invoice)."""
    return None if situation.known else refuse(UNKNOWN_TO_CRM, 404)


def answers_repeated_issue(situation: Situation, same_as_accepted: bool) -> bool:
    """An issue request byte for byte the one the accepted body came from, on an issued
    record with nothing pending, is answered from the record without the lock
    (docs/contract/semantics.md#repeated-issue)."""
    settled = situation.state == State.ISSUED and situation.pending is None
    return settled and same_as_accepted


def worker_sends(situation: Situation, its_job: bool) -> bool:
    """The queue's job sends the pending operation if the record still names it."""
    return situation.queued and its_job


def retries(attempts: int, retry_schedule: tuple[int, ...]) -> bool:
    """After ``attempts`` queued attempts found Finan unavailable: another one is scheduled
    (else the record is dead)."""
    return attempts < len(retry_schedule)


def retry_delay(attempts: int, retry_schedule: tuple[int, ...]) -> int:
    """Seconds before the next queued attempt, ``attempts`` having been made."""
    return retry_schedule[min(attempts, len(retry_schedule) - 1)]


def issue_source(send_as: Operation, request_source: str | None) -> str | None:
    """The ``source`` a new body keeps: only the first issue keeps the issue request that
    started it (an issue's own request; behind it, the pending issue's)."""
    return request_source if send_as == Operation.ISSUE else None
