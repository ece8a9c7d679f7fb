"""The words the bridge's records are written in: an invoice record's state, the operations
on it, and who asked for them. They appear in answers, the admin API's filters, Redis and
the history, spelt as the values below (docs/contract/semantics.md#states)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where an invoice stands with Finan."""

    ISSUED = "issued"  # Finan accepted the last operation
    CANCELLED = "cancelled"  # Finan accepted the cancel: nothing left to collect
    QUEUED = "queued"  # Finan was unavailable: a worker sends the pending operation later
    FAILED = "failed"  # Finan rejected the last operation; an operator re-syncs it
    DEAD = "dead"  # the queue gave up: it may or may not have reached Finan


class Operation(StrEnum):
    """What was asked of an invoice."""

    ISSUE = "issue"
    UPDATE = "update"
    CANCEL = "cancel"
    RESYNC = "resync"  # an operator's re-sync (sends as one of the three above)


class Caller(StrEnum):
    """Who asked: the CRM's callback, the queue's worker, or an operator."""

    CRM = "crm"
    WORKER = "worker"
    OPERATOR = "operator"


STATES = tuple(State)
RESYNC_STATES = (State.FAILED, State.DEAD)  # the states a bulk re-sync takes by state
