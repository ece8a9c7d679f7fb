"""The transition rules, row by row (docs/contract/semantics.md#transitions): a pure
function, so no fixtures, no Redis, no servers."""

from __future__ import annotations

import pytest

from bridge.invoices import rules
from bridge.invoices.rules import (
    ALREADY_ISSUED_MESSAGE,
    CANCEL_MESSAGE,
    CANCEL_NOT_ISSUED,
    ISSUE_CANCELLED,
    ISSUE_OTHER_CONTENT,
    ISSUED_MESSAGE,
    QUEUED_MESSAGE,
    RECOVERED_MESSAGE,
    RESYNC_UNCHANGED_MESSAGE,
    RESYNCED_MESSAGE,
    UNKNOWN_TO_CRM,
    UPDATE_CANCELLED,
    UPDATE_NOT_ISSUED,
    UPDATE_UNCHANGED_MESSAGE,
    UPDATED_MESSAGE,
    Action,
    Behind,
    Body,
    Content,
    Decision,
    Situation,
    decide,
)
from schemas.states import Caller, Operation, State

ISSUE, UPDATE, CANCEL, RESYNC = Operation

# Situations: the record's state, whether Finan accepted a body, the pending operation.
NONE = Situation()
ISSUED = Situation(State.ISSUED, True)
CANCELLED = Situation(State.CANCELLED, True)
QUEUED_ISSUE = Situation(State.QUEUED, False, ISSUE)  # the first issue waits
QUEUED_UPDATE = Situation(State.QUEUED, True, UPDATE)
QUEUED_CANCEL = Situation(State.QUEUED, True, CANCEL)
QUEUED_CANCEL_FIRST = Situation(State.QUEUED, False, CANCEL)  # cancelled before any accept
FAILED_ISSUE = Situation(State.FAILED, False, ISSUE)
DEAD_ISSUE = Situation(State.DEAD, False, ISSUE)
FAILED_UPDATE = Situation(State.FAILED, True, UPDATE)
DEAD_UPDATE = Situation(State.DEAD, True, UPDATE)
FAILED_CANCEL = Situation(State.FAILED, True, CANCEL)
FAILED_CANCEL_FIRST = Situation(State.FAILED, False, CANCEL)
DEAD_CANCEL = Situation(State.DEAD, True, CANCEL)
DEAD_CANCEL_FIRST = Situation(State.DEAD, False, CANCEL)

# What the content layer found in the body built for the request.
OTHER = Content()
UNCHANGED = Content(unchanged=True)  # byte for byte the accepted body
SAME_REQUEST = Content(same_as_accepted=True)  # the issue request the accepted body came from
REPEATS_PENDING = Content(same_as_pending=True)  # the request, or the body, pending


def refused(message: str, status: int = 409) -> Decision:
    return Decision(Action.REFUSE, status, message)


def build(send_as: Operation, body_from: Body | None = None) -> Decision:
    return Decision(Action.BUILD, send_as=send_as, body_from=body_from)


def answer(status: int, message: str, settles: bool = False) -> Decision:
    return Decision(Action.ANSWER, status, message, settles=settles)


def replace(send_as: Operation, body_from: Body | None = None) -> Decision:
    return Decision(Action.REPLACE, 202, QUEUED_MESSAGE, send_as, body_from)


def send(status: int, message: str, send_as: Operation, body_from: Body | None = None):
    return Decision(Action.SEND, status, message, send_as, body_from)


QUEUED = answer(202, QUEUED_MESSAGE)
ALREADY = answer(201, ALREADY_ISSUED_MESSAGE)

# (situation, operation, content (None: before the body is built), force) -> decision
TABLE = [
    # --- issue ---
    (NONE, ISSUE, None, False, build(ISSUE)),
    (NONE, ISSUE, OTHER, False, send(201, ISSUED_MESSAGE, ISSUE)),
    (QUEUED_ISSUE, ISSUE, None, False, build(ISSUE)),
    (QUEUED_ISSUE, ISSUE, REPEATS_PENDING, False, QUEUED),
    (QUEUED_ISSUE, ISSUE, OTHER, False, replace(ISSUE)),
    (QUEUED_UPDATE, ISSUE, REPEATS_PENDING, False, QUEUED),
    (QUEUED_UPDATE, ISSUE, UNCHANGED, False, QUEUED),
    (QUEUED_UPDATE, ISSUE, SAME_REQUEST, False, QUEUED),
    (QUEUED_UPDATE, ISSUE, OTHER, False, refused(ISSUE_OTHER_CONTENT)),
    (QUEUED_CANCEL, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    (QUEUED_CANCEL_FIRST, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    (ISSUED, ISSUE, None, False, build(ISSUE)),
    (ISSUED, ISSUE, UNCHANGED, False, ALREADY),
    (ISSUED, ISSUE, SAME_REQUEST, False, ALREADY),
    (ISSUED, ISSUE, OTHER, False, refused(ISSUE_OTHER_CONTENT)),
    (FAILED_ISSUE, ISSUE, OTHER, False, send(201, ISSUED_MESSAGE, ISSUE)),
    (FAILED_ISSUE, ISSUE, REPEATS_PENDING, False, send(201, ISSUED_MESSAGE, ISSUE)),
    (DEAD_ISSUE, ISSUE, OTHER, False, send(201, ISSUED_MESSAGE, ISSUE)),
    (FAILED_UPDATE, ISSUE, UNCHANGED, False, ALREADY),  # stays failed: the update waits
    (DEAD_UPDATE, ISSUE, SAME_REQUEST, False, ALREADY),
    (FAILED_UPDATE, ISSUE, OTHER, False, refused(ISSUE_OTHER_CONTENT)),
    (FAILED_CANCEL, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    (FAILED_CANCEL_FIRST, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    (DEAD_CANCEL, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    (CANCELLED, ISSUE, None, False, refused(ISSUE_CANCELLED)),
    # --- update ---
    (NONE, UPDATE, None, False, refused(UPDATE_NOT_ISSUED)),
    (FAILED_ISSUE, UPDATE, None, False, refused(UPDATE_NOT_ISSUED)),
    (DEAD_ISSUE, UPDATE, None, False, refused(UPDATE_NOT_ISSUED)),
    (FAILED_CANCEL_FIRST, UPDATE, None, False, refused(UPDATE_NOT_ISSUED)),
    (QUEUED_CANCEL_FIRST, UPDATE, None, False, refused(UPDATE_CANCELLED)),
    (QUEUED_CANCEL, UPDATE, None, False, refused(UPDATE_CANCELLED)),
    (FAILED_CANCEL, UPDATE, None, False, refused(UPDATE_CANCELLED)),
    (DEAD_CANCEL, UPDATE, None, False, refused(UPDATE_CANCELLED)),
    (CANCELLED, UPDATE, None, False, refused(UPDATE_CANCELLED)),
    (QUEUED_ISSUE, UPDATE, None, False, build(ISSUE)),
    (QUEUED_ISSUE, UPDATE, OTHER, False, replace(ISSUE)),  # still the first issue
    (QUEUED_UPDATE, UPDATE, None, False, build(UPDATE)),
    (QUEUED_UPDATE, UPDATE, UNCHANGED, False, replace(UPDATE)),  # not compared while queued
    (QUEUED_UPDATE, UPDATE, OTHER, False, replace(UPDATE)),
    (ISSUED, UPDATE, None, False, build(UPDATE)),
    (ISSUED, UPDATE, UNCHANGED, False, answer(200, UPDATE_UNCHANGED_MESSAGE)),
    (ISSUED, UPDATE, OTHER, False, send(200, UPDATED_MESSAGE, UPDATE)),
    (FAILED_UPDATE, UPDATE, UNCHANGED, False, answer(200, UPDATE_UNCHANGED_MESSAGE, True)),
    (DEAD_UPDATE, UPDATE, UNCHANGED, False, answer(200, UPDATE_UNCHANGED_MESSAGE, True)),
    (FAILED_UPDATE, UPDATE, OTHER, False, send(200, UPDATED_MESSAGE, UPDATE)),
    (DEAD_UPDATE, UPDATE, OTHER, False, send(200, UPDATED_MESSAGE, UPDATE)),
    # --- cancel (never built from a pull: decided at once) ---
    (NONE, CANCEL, None, False, refused(CANCEL_NOT_ISSUED)),
    (CANCELLED, CANCEL, None, False, answer(201, CANCEL_MESSAGE)),
    (QUEUED_CANCEL, CANCEL, None, False, QUEUED),
    (QUEUED_CANCEL_FIRST, CANCEL, None, False, QUEUED),
    (QUEUED_ISSUE, CANCEL, None, False, replace(CANCEL, Body.PENDING)),
    (QUEUED_UPDATE, CANCEL, None, False, replace(CANCEL, Body.PENDING)),
    (ISSUED, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.ACCEPTED)),
    (FAILED_ISSUE, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    (DEAD_ISSUE, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    # a refused update is not what the cancel carries; an unconfirmed one may be at Finan
    (FAILED_UPDATE, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.ACCEPTED)),
    (DEAD_UPDATE, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    (FAILED_CANCEL, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.ACCEPTED)),
    (FAILED_CANCEL_FIRST, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    (DEAD_CANCEL, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    (DEAD_CANCEL_FIRST, CANCEL, None, False, send(201, CANCEL_MESSAGE, CANCEL, Body.PENDING)),
    # --- an operator's re-sync ---
    # no record (the CRM's call never came): pulled, mapped, sent as the first issue
    (NONE, RESYNC, None, False, build(ISSUE)),
    (NONE, RESYNC, OTHER, False, send(200, RECOVERED_MESSAGE, ISSUE)),
    (NONE, RESYNC, OTHER, True, send(200, RECOVERED_MESSAGE, ISSUE)),
    (ISSUED, RESYNC, None, False, build(UPDATE)),
    (QUEUED_ISSUE, RESYNC, None, False, build(ISSUE)),
    (FAILED_ISSUE, RESYNC, None, False, build(ISSUE)),
    (QUEUED_UPDATE, RESYNC, None, False, build(UPDATE)),
    (CANCELLED, RESYNC, None, False, build(CANCEL, Body.ACCEPTED)),
    (QUEUED_CANCEL, RESYNC, None, False, build(CANCEL, Body.PENDING)),
    (FAILED_CANCEL, RESYNC, None, False, build(CANCEL, Body.PENDING)),
    (ISSUED, RESYNC, UNCHANGED, False, answer(200, RESYNC_UNCHANGED_MESSAGE)),
    (ISSUED, RESYNC, UNCHANGED, True, send(200, RESYNCED_MESSAGE, UPDATE)),
    (ISSUED, RESYNC, OTHER, False, send(200, RESYNCED_MESSAGE, UPDATE)),
    (CANCELLED, RESYNC, UNCHANGED, False, answer(200, RESYNC_UNCHANGED_MESSAGE)),
    (CANCELLED, RESYNC, UNCHANGED, True, send(200, RESYNCED_MESSAGE, CANCEL, Body.ACCEPTED)),
    (QUEUED_ISSUE, RESYNC, OTHER, False, send(200, RESYNCED_MESSAGE, ISSUE)),
    (QUEUED_UPDATE, RESYNC, UNCHANGED, False, send(200, RESYNCED_MESSAGE, UPDATE)),  # sends now
    (FAILED_UPDATE, RESYNC, UNCHANGED, False, send(200, RESYNCED_MESSAGE, UPDATE)),
    (DEAD_UPDATE, RESYNC, UNCHANGED, False, send(200, RESYNCED_MESSAGE, UPDATE)),
    (DEAD_ISSUE, RESYNC, OTHER, False, send(200, RESYNCED_MESSAGE, ISSUE)),
    (FAILED_CANCEL, RESYNC, UNCHANGED, False, send(200, RESYNCED_MESSAGE, CANCEL, Body.PENDING)),
]


def _row_id(row) -> str:
    situation, operation, content, force, _ = row
    where = "none" if situation.state is None else situation.state.value
    if situation.state is not None:
        where += f"/{'accepted' if situation.accepted else 'not-accepted'}"
        where += f"/{situation.pending.value if situation.pending else '-'}"
    what = (
        "before-build"
        if content is None
        else ",".join(name for name, value in vars(content).items() if value) or "other"
    )
    return f"{operation.value}:{where}:{what}{':force' if force else ''}"


@pytest.mark.parametrize("row", TABLE, ids=[_row_id(row) for row in TABLE])
def test_the_rules_table(row):
    situation, operation, content, force, expected = row
    assert decide(situation, operation, content, force=force) == expected


REACHABLE = [
    NONE, ISSUED, CANCELLED, QUEUED_ISSUE, QUEUED_UPDATE, QUEUED_CANCEL, QUEUED_CANCEL_FIRST,
    FAILED_ISSUE, DEAD_ISSUE, FAILED_UPDATE, DEAD_UPDATE, FAILED_CANCEL, FAILED_CANCEL_FIRST,
    DEAD_CANCEL, DEAD_CANCEL_FIRST,
]  # fmt: skip


@pytest.mark.parametrize("situation", REACHABLE)
@pytest.mark.parametrize("operation", list(Operation))
def test_every_situation_and_operation_has_a_decision(situation, operation):
    first = decide(situation, operation)
    assert first.action in (Action.REFUSE, Action.BUILD, Action.ANSWER, Action.REPLACE, Action.SEND)
    if first.action == Action.REFUSE:
        assert first.status in (404, 409) and "{invoice_id}" in first.message
    if first.action == Action.BUILD:  # and once built, something is decided
        assert first.send_as is not None
        for content in (OTHER, UNCHANGED, SAME_REQUEST, REPEATS_PENDING):
            assert decide(situation, operation, content).action != Action.BUILD
    if operation == CANCEL:  # a cancel is never built from a pull
        assert first.action != Action.BUILD


@pytest.mark.parametrize("situation", REACHABLE)
@pytest.mark.parametrize("operation", list(Operation))
def test_only_the_crm_replaces_a_pending_operation_and_never_a_cancel(situation, operation):
    for content in (None, OTHER, UNCHANGED, SAME_REQUEST, REPEATS_PENDING):
        decision = decide(situation, operation, content)
        if decision.action == Action.REPLACE:
            assert rules.BEHIND_QUEUED[rules.CALLER[operation]] == Behind.REPLACES
            assert situation.queued and situation.pending in rules.REPLACES[operation]
            assert situation.pending != CANCEL


def test_who_may_replace_a_pending_operation():
    assert rules.BEHIND_QUEUED == {
        Caller.CRM: Behind.REPLACES,
        Caller.OPERATOR: Behind.SENDS_NOW,
        Caller.WORKER: Behind.SENDS_PENDING,
    }
    assert rules.REPLACES == {
        ISSUE: {ISSUE},
        UPDATE: {ISSUE, UPDATE},
        CANCEL: {ISSUE, UPDATE},
    }


@pytest.mark.parametrize(
    ("situation", "same_request", "answered"),
    [
        (ISSUED, True, True),
        (ISSUED, False, False),
        (NONE, True, False),
        (QUEUED_UPDATE, True, False),  # something pending: the full path decides
        (FAILED_UPDATE, True, False),
        (DEAD_UPDATE, True, False),
        (CANCELLED, True, False),
    ],
)
def test_a_repeated_issue_is_answered_from_a_settled_record_only(situation, same_request, answered):
    assert rules.answers_repeated_issue(situation, same_request) is answered


@pytest.mark.parametrize(
    ("situation", "its_job", "sends"),
    [
        (QUEUED_ISSUE, True, True),
        (QUEUED_CANCEL, True, True),
        (QUEUED_UPDATE, False, False),  # superseded: another job is the record's
        (ISSUED, True, False),
        (FAILED_UPDATE, True, False),
        (DEAD_ISSUE, True, False),
        (NONE, False, False),
    ],
)
def test_the_worker_sends_only_what_is_queued_for_its_job(situation, its_job, sends):
    assert rules.worker_sends(situation, its_job) is sends


@pytest.mark.parametrize(
    ("attempts", "retries", "delay"),
    [(0, True, 10), (1, True, 60), (2, True, 300), (3, False, 300), (9, False, 300)],
)
def test_the_retry_schedule(attempts, retries, delay):
    schedule = (10, 60, 300)
    assert rules.retries(attempts, schedule) is retries
    assert rules.retry_delay(attempts, schedule) == delay


@pytest.mark.parametrize(
    ("send_as", "source", "kept"),
    [(ISSUE, "abc", "abc"), (ISSUE, None, None), (UPDATE, "abc", None), (CANCEL, "abc", None)],
)
def test_only_a_first_issue_keeps_the_request_it_came_from(send_as, source, kept):
    assert rules.issue_source(send_as, source) == kept


def test_a_refusal_names_the_invoice():
    decision = decide(ISSUED, ISSUE, OTHER)
    assert decision.message.format(invoice_id=17) == (
        "invoice 17 is already issued with other content; "
        "send an update (PUT /api/v1/invoices/17) instead"
    )


@pytest.mark.parametrize(
    ("situation", "decision"),
    [
        (NONE, refused(UNKNOWN_TO_CRM, 404)),  # nobody knows it: 404 naming the CRM
        (ISSUED, None),  # the bridge's record names it: the CRM's own 404 stands
        (FAILED_ISSUE, None),
        (QUEUED_UPDATE, None),
    ],
)
def test_a_resync_the_crm_has_no_invoice_for(situation, decision):
    assert rules.crm_has_none(situation) == decision
    if decision is not None:
        assert decision.message.format(invoice_id=42) == (
            "the CRM has no invoice 42 (and the bridge has no record of it)"
        )


# A preview's sentence: what a re-sync without force does, compared with what Finan last
# accepted (situation, content of the body built, how it is sent) -> sentence.
@pytest.mark.parametrize(
    ("situation", "content", "send_as", "sentence"),
    [
        (NONE, OTHER, ISSUE, rules.PREVIEW_NEVER_ACCEPTED),  # the never-seen
        (FAILED_ISSUE, OTHER, ISSUE, rules.PREVIEW_NEVER_ACCEPTED),  # not "no changes"
        (DEAD_ISSUE, OTHER, ISSUE, rules.PREVIEW_NEVER_ACCEPTED),
        (QUEUED_ISSUE, OTHER, ISSUE, rules.PREVIEW_NEVER_ACCEPTED),
        (QUEUED_CANCEL_FIRST, OTHER, CANCEL, rules.PREVIEW_NEVER_ACCEPTED_CANCEL),
        (ISSUED, UNCHANGED, UPDATE, rules.PREVIEW_SAME),
        (CANCELLED, UNCHANGED, CANCEL, rules.PREVIEW_SAME),
        (ISSUED, OTHER, UPDATE, rules.PREVIEW_DIFFERS),
        (FAILED_UPDATE, OTHER, UPDATE, rules.PREVIEW_DIFFERS),
        (DEAD_UPDATE, OTHER, UPDATE, rules.PREVIEW_DIFFERS),
        (FAILED_UPDATE, UNCHANGED, UPDATE, rules.PREVIEW_SAME_UNSETTLED.format(state="failed")),
        (DEAD_UPDATE, UNCHANGED, UPDATE, rules.PREVIEW_SAME_UNSETTLED.format(state="dead")),
        (QUEUED_UPDATE, UNCHANGED, UPDATE, rules.PREVIEW_SAME_UNSETTLED.format(state="queued")),
        (FAILED_CANCEL, UNCHANGED, CANCEL, rules.PREVIEW_SAME_UNSETTLED.format(state="failed")),
    ],
)
def test_the_preview_sentence(situation, content, send_as, sentence):
    assert rules.preview_summary(situation, content, send_as) == sentence
    would_send = decide(situation, RESYNC, content).action == Action.SEND
    assert would_send == (sentence != rules.PREVIEW_SAME)  # the sentence says what it does
