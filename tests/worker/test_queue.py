"""The retry queue, end to end: the CRM-facing API, RQ on the real Redis, the stand-ins.

Jobs run in this process with ``InProcessWorker`` (RQ's ``SimpleWorker``) in burst mode
(``run_worker``), with a retry schedule of zeros so that every next attempt is due at once.
Finan's request log (the stand-in's) is the witness of what was sent; the CRM stand-in's of
what was written back.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from helpers import API, crm_writes, finan_puts, issue, queue_is_empty, run_worker
from rq.job import Job

from bridge.integrations.finan.client import FinanClient
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.mapping import MappingConfig
from bridge.invoices.operations import InvoiceOperations
from bridge.invoices.resync import ResyncBatches
from bridge.store.connection import lock_key, record_key
from bridge.store.queue import bridge_queue
from bridge.store.records import Event, Record, fingerprint, state_index_key
from bridge.worker import jobs
from bridge.worker.jobs import BridgeWorker
from schemas.finan import decode_request


@pytest.fixture
def app(make_app):
    """The bridge, with queued attempts due at once (three of them, then dead)."""
    return make_app(BRIDGE_RETRY_SCHEDULE="0,0,0")


def record_of(client, headers, invoice_id=17) -> dict:
    return client.get(f"{API}/{invoice_id}", headers=headers).json["data"]


def history(app, invoice_id=17) -> list[Event]:
    return app.extensions["bridge"].operations.records.history(invoice_id)


def test_finan_down_then_back_the_worker_issues_once_and_writes_back(
    app, client, crm_headers, finan, tourwell, redis
):
    finan.state.fail_next("unavailable", count=3)  # the three inline tries

    queued = issue(client, crm_headers)

    assert queued.status_code == 202
    assert queued.json["data"]["state"] == "queued"
    assert crm_writes(tourwell) == []  # the CRM has its answer; nothing to write yet

    run_worker(app)

    record = record_of(client, crm_headers)
    assert record["state"] == "issued"
    assert record["last_error"] is None
    assert [r["outcome"] for r in finan_puts(finan)] == ["fault:unavailable"] * 3 + ["created"]
    assert list(finan.state.invoices) == [record["provider_invoice_id"]]
    (write,) = crm_writes(tourwell)
    assert record["provider_order_code"] in write["body"]["note"]
    assert write["body"]["total_amount"] == "6325000"  # Finan's total, whole đồng
    assert [(e.actor, e.outcome) for e in reversed(history(app))] == [
        ("crm", "queued"),
        ("worker", "issued"),
        ("worker", "written_back"),
    ]
    assert queue_is_empty(redis)


def test_the_first_queued_attempt_waits_for_the_first_delay_of_the_schedule(
    make_app, redis, crm_headers, finan
):
    app = make_app()  # the default schedule: 10 s first
    finan.state.fail_next("server_error", count=3)

    before = datetime.now(UTC).timestamp()
    assert issue(app.test_client(), crm_headers).status_code == 202

    registry = bridge_queue(redis).scheduled_job_registry
    (job_id,) = registry.get_job_ids()
    assert before + 9 <= registry.get_scheduled_time(job_id).timestamp() <= before + 12
    assert bridge_queue(redis).count == 0  # nothing runs before its time


def test_the_crm_echoing_the_write_back_as_an_update_sends_nothing_to_finan(
    app, client, crm_headers, finan, tourwell, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    run_worker(app)
    (write,) = crm_writes(tourwell)
    sent = len(finan_puts(finan))

    echo = client.put(f"{API}/17", headers=crm_headers, json=write["body"])

    assert echo.status_code == 200
    assert echo.json["message"] == "Invoice unchanged; nothing sent to Finan"
    assert len(finan_puts(finan)) == sent


def test_an_update_behind_a_queued_issue_makes_one_request_with_the_updated_body(
    app, client, crm_headers, finan, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    job_ids = bridge_queue(redis).get_job_ids()

    update = client.put(f"{API}/17", headers=crm_headers, json={"company_address": "1 Lê Lợi"})

    assert update.status_code == 202
    assert bridge_queue(redis).get_job_ids() == job_ids  # still the one job
    run_worker(app)
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert [r["outcome"] for r in sent] == ["created"]
    assert sent[0]["body"]["customer"]["address"] == "1 Lê Lợi"
    assert record_of(client, crm_headers)["state"] == "issued"


def test_a_cancel_behind_a_queued_issue_wins(app, client, crm_headers, finan, redis):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers, json={"cancel_note": "trip off"})

    assert cancel.status_code == 202
    assert client.put(f"{API}/17", headers=crm_headers, json={}).status_code == 409
    run_worker(app)
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert len(sent) == 1
    assert sent[0]["body"]["items"] == [] and sent[0]["body"]["payment_config"] == []
    record = record_of(client, crm_headers)
    assert (record["state"], record["cancel_note"]) == ("cancelled", "trip off")
    again = client.post(f"{API}/17/cancel", headers=crm_headers)
    assert again.status_code == 201


def test_a_cancel_behind_a_queued_update_wins(app, client, crm_headers, finan, redis):
    assert issue(client, crm_headers).status_code == 201
    finan.state.fail_next("server_error", count=3)
    assert (
        client.put(f"{API}/17", headers=crm_headers, json={"company_name": "X"}).status_code == 202
    )

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert cancel.status_code == 202
    run_worker(app)
    outcomes = [r["outcome"] for r in finan_puts(finan)]
    assert outcomes == ["created"] + ["fault:server_error"] * 3 + ["updated"]
    assert finan_puts(finan)[-1]["body"]["items"] == []
    assert record_of(client, crm_headers)["state"] == "cancelled"


def test_a_repeat_of_a_queued_issue_is_answered_202_and_queues_nothing_more(
    app, client, crm_headers, finan, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)

    repeat = issue(client, crm_headers)

    assert repeat.status_code == 202
    assert len(finan_puts(finan)) == 3  # nothing sent inline behind a queued operation
    assert bridge_queue(redis).count == 1


def test_the_queued_issue_request_repeated_after_an_update_replaces_nothing(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    operations = app.extensions["bridge"].operations
    finan.state.fail_next("server_error", count=3)
    body = json.dumps(sample_invoices()[18])
    queued = issue(client, crm_headers, 18, data=body, content_type="application/json")
    assert queued.status_code == 202
    update = client.put(f"{API}/18", headers=crm_headers, json={"company_address": "1 Lê Lợi"})
    assert update.status_code == 202
    job_ids = bridge_queue(redis).get_job_ids()

    repeat = issue(client, crm_headers, 18, data=body, content_type="application/json")

    assert repeat.status_code == 202
    assert repeat.json["data"]["state"] == "queued"
    assert bridge_queue(redis).get_job_ids() == job_ids  # nothing more queued
    pending = operations.records.get(18).pending
    assert pending.operation == "issue"  # Finan has accepted nothing yet
    assert decode_request(pending.body)["customer"]["address"] == "1 Lê Lợi"
    run_worker(app)
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert [r["body"]["customer"]["address"] for r in sent] == ["1 Lê Lợi"]
    assert [(e.operation, e.actor, e.outcome) for e in reversed(history(app, 18))] == [
        ("issue", "crm", "queued"),
        ("update", "crm", "queued"),
        ("issue", "worker", "issued"),
        ("write_back", "worker", "written_back"),
    ]
    # Sent: that issue request again is the issue already done, on the fast path (without
    # the lock) and on the full one alike, and sends nothing.
    again = issue(client, crm_headers, 18, data=body, content_type="application/json")
    assert again.status_code == 201, again.json
    assert again.json["message"] == "Invoice already issued; nothing changed"
    full = operations.issue(18, json.loads(body), source=fingerprint(body.encode()))
    assert (full.status, full.record.state) == (201, "issued")
    assert len(finan_puts(finan)) == 3 + 1


def test_the_queued_issue_sent_again_laid_out_differently_replaces_nothing(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    finan.state.fail_next("server_error", count=3)
    invoice = sample_invoices()[18]
    body = json.dumps(invoice)
    issue(client, crm_headers, 18, data=body, content_type="application/json")

    reformatted = json.dumps(invoice, indent=2)  # the same invoice: the same body to send
    repeat = issue(client, crm_headers, 18, data=reformatted, content_type="application/json")

    assert repeat.status_code == 202
    records = app.extensions["bridge"].operations.records
    assert records.get(18).pending.source == fingerprint(body.encode())  # not replaced
    assert [(e.operation, e.outcome) for e in history(app, 18)] == [("issue", "queued")]
    assert bridge_queue(redis).count == 1


def test_an_issue_with_other_content_behind_a_queued_issue_replaces_it(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers, 18, json=sample_invoices()[18])

    newer = issue(client, crm_headers, 18, json={**sample_invoices()[18], "code": "HD-NEWER-18"})

    assert newer.status_code == 202
    assert bridge_queue(redis).count == 1
    run_worker(app)
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert [r["body"]["reference_code"] for r in sent] == ["HD-NEWER-18"]  # the latest content


def test_the_queued_issue_request_repeated_after_a_re_sync_replaces_nothing(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    operations = app.extensions["bridge"].operations
    finan.state.fail_next("server_error", count=6)  # the issue's inline tries, the re-sync's
    # Not the CRM's copy of invoice 18, which the operator's re-sync pulls and sends.
    body = json.dumps({**sample_invoices()[18], "code": "HD-GIVEN-18"})
    queued = issue(client, crm_headers, 18, data=body, content_type="application/json")
    assert queued.status_code == 202
    assert operations.resync(18).status == 202  # Finan still down: queued again

    repeat = issue(client, crm_headers, 18, data=body, content_type="application/json")

    assert repeat.status_code == 202
    run_worker(app)
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert [r["body"]["reference_code"] for r in sent] == [sample_invoices()[18]["code"]]
    again = issue(client, crm_headers, 18, data=body, content_type="application/json")
    assert again.status_code == 201, again.json


def test_a_rejection_in_the_worker_is_failed_and_never_retried(
    app, client, crm_headers, finan, tourwell, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    finan.state.fail_next("client_error")

    run_worker(app)

    record = record_of(client, crm_headers)
    assert record["state"] == "failed"
    assert record["last_error"]["message"] == "invalid invoice"
    assert record["last_error"]["code"] is not None
    assert queue_is_empty(redis)
    assert len(finan_puts(finan)) == 4  # a client-class answer is not retried
    (write,) = crm_writes(tourwell)
    assert "rejected" in write["body"]["note"]


def test_a_schedule_of_one_attempt_says_so_in_the_singular(make_app, crm_headers, finan, redis):
    client = make_app(BRIDGE_RETRY_SCHEDULE="0").test_client()
    finan.state.fail_next("server_error", count=100)
    issue(client, crm_headers)

    run_worker(client.application)

    record = record_of(client, crm_headers)
    assert record["state"] == "dead"
    assert record["last_error"]["message"].endswith("gave up after 1 queued attempt")


def test_after_the_last_attempt_of_the_schedule_the_record_is_dead(
    app, client, crm_headers, finan, tourwell, redis
):
    finan.state.fail_next("server_error", count=100)
    issue(client, crm_headers)

    run_worker(client.application)

    record = record_of(client, crm_headers)
    assert record["state"] == "dead"
    assert "gave up after 3 queued attempts" in record["last_error"]["message"]
    assert "105000" in record["last_error"]["message"]  # Finan's last error is kept
    assert len(finan_puts(finan)) == 3 + 3 * 3  # inline, then three queued attempts of three
    assert queue_is_empty(redis)
    note = crm_writes(tourwell)[0]["body"]["note"]
    assert "may or may not have reached Finan" in note  # a try may have reached it
    assert "re-sync" in note and "105000" in note  # what to do, and the last error
    finan.state.reset()  # Finan is back: the CRM's next issue sends it inline
    assert issue(client, crm_headers).status_code == 201
    assert record_of(client, crm_headers)["state"] == "issued"


@pytest.mark.parametrize("fault", ["reset", "server_error", "server_error_200"])
def test_other_server_side_failures_queue_too(app, client, crm_headers, finan, redis, fault):
    finan.state.fail_next(fault, count=3)

    assert issue(client, crm_headers).status_code == 202

    run_worker(app)
    assert record_of(client, crm_headers)["state"] == "issued"
    assert len(finan.state.invoices) == 1


def test_a_slow_finan_within_the_timeout_is_just_slow(client, crm_headers, finan):
    finan.state.fail_next("hang", delay=0.5)

    response = issue(client, crm_headers)

    assert response.status_code == 201
    assert [r["outcome"] for r in finan_puts(finan)] == ["created"]


# The read timeout of the Finan client ``late_finan`` gives the bridge, and how late the
# stand-in's late_answer fault answers: ten times that, so the bridge has surely given up.
SHORT_READ_TIMEOUT_SECONDS = 0.3
LATE_BY_SECONDS = 3.0


def late_finan(app, retry_sleep) -> None:
    """``app`` (its web requests and ``run_worker``'s jobs) with a Finan client whose read
    timeout is short: stands for Finan hanging past the real one (with the stand-in's
    late_answer fault: stored, answered after the bridge gave up). Built with the public
    constructors, as ``build_services`` builds them, and the tests' recording ``retry_sleep``
    (tests/conftest.py), so the inline retries' backoffs are recorded, not slept."""
    services = app.extensions["bridge"]
    settings, connection = services.settings, services.redis
    operations = InvoiceOperations(
        connection,
        services.records,
        TourwellClient(settings, connection, sleep=retry_sleep),
        FinanClient(settings, timeout=(1.0, SHORT_READ_TIMEOUT_SECONDS), sleep=retry_sleep),
        MappingConfig.from_settings(settings),
        settings.retry_schedule,
    )
    app.extensions["bridge"] = dataclasses.replace(
        services,
        operations=operations,
        batches=ResyncBatches(connection, operations, settings.tourwell_rate_limit_per_min),
    )


def answered_in_time(finan) -> list[dict]:
    """Finan's update-invoice requests without a fault: a late answer is logged only when it
    is finally given, perhaps after requests sent later."""
    return [r for r in finan_puts(finan) if "fault" not in r]


def make_dead(client, crm_headers, finan, redis, *, by_update: bool = False) -> None:
    """Invoice 17 dead: its issue (or, issued first, its update) failing through the inline
    tries and the fixture's three queued attempts of three."""
    if by_update:
        assert issue(client, crm_headers).status_code == 201
    finan.state.fail_next("server_error", count=3 + 3 * 3)
    if by_update:
        update = client.put(f"{API}/17", headers=crm_headers, json={"company_address": "1 Lê Lợi"})
        assert update.status_code == 202
    else:
        assert issue(client, crm_headers).status_code == 202
    run_worker(client.application)
    assert record_of(client, crm_headers)["state"] == "dead"


def test_finan_taking_it_but_answering_after_the_timeout_converges_on_one_invoice(
    app, client, crm_headers, finan, redis, retry_sleeps
):
    late_finan(app, retry_sleeps)
    # Stored, answered too late.
    finan.state.fail_next("late_answer", count=3, delay=LATE_BY_SECONDS)

    assert issue(client, crm_headers).status_code == 202

    run_worker(app)
    assert record_of(client, crm_headers)["state"] == "issued"
    assert len(finan.state.invoices) == 1  # every try landed on the one derived id


def test_a_queued_invoice_whose_job_was_lost_gets_a_new_one(app, client, crm_headers, finan, redis):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    (job_id,) = bridge_queue(redis).get_job_ids()
    Job.fetch(job_id, connection=redis).delete()  # as a Redis without AOF would lose it

    recovered = app.extensions["bridge"].operations.recover_stranded()

    assert recovered == [17]
    run_worker(app)
    assert record_of(client, crm_headers)["state"] == "issued"
    assert app.extensions["bridge"].operations.recover_stranded() == []


def test_the_workers_maintenance_round_runs_every_sweep_even_when_one_fails(app, redis):
    # A queued record this worker can't read (encrypted with a key it lacks) breaks the
    # sweep of queued invoices; the sweep of bulk re-syncs must still run.
    unreadable = Fernet(Fernet.generate_key()).encrypt(b"{}")
    redis.set(record_key(99), unreadable)
    redis.zadd(state_index_key("queued"), {99: 0})
    batches = app.extensions["bridge"].batches
    batch_id = batches.create([17], "ids", force=False).batch_id
    bridge_queue(redis).empty()  # its job lost, as a Redis without AOF would lose it

    BridgeWorker(
        [bridge_queue(redis)], connection=redis, services=app.extensions["bridge"]
    ).run_maintenance_tasks()

    (job_id,) = bridge_queue(redis).get_job_ids()
    assert Job.fetch(job_id, connection=redis).args[0] == batch_id


def test_a_job_that_is_no_longer_the_records_does_nothing(app, client, crm_headers, finan, redis):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    sent = len(finan_puts(finan))

    with jobs.running_with(app.extensions["bridge"]):
        outcome = jobs.sync_invoice(17, "sync-17-not-the-records-job")

    assert outcome.startswith("nothing to send")
    assert len(finan_puts(finan)) == sent


def test_the_crm_rate_limiting_and_failing_during_a_write_back_is_retried(
    app, client, crm_headers, finan, tourwell, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    tourwell.state.fail_next("rate_limited")  # 429 + Retry-After: 1, retried inline
    tourwell.state.fail_next("unavailable", count=3)  # then down through the inline tries

    run_worker(app)

    assert crm_writes(tourwell)[-1]["status"] == 503
    registry = bridge_queue(redis).scheduled_job_registry
    (job_id,) = registry.get_job_ids()  # RQ will try the write-back again later
    job = Job.fetch(job_id, connection=redis)
    assert job.func_name == "bridge.worker.jobs.write_back"
    bridge_queue(redis).enqueue_job(job)  # its time has come (the scheduler's move)
    run_worker(app)
    assert crm_writes(tourwell)[-1]["status"] == 200
    assert history(app)[0].outcome == "written_back"


def test_the_sent_body_of_a_queued_issue_is_the_one_the_crm_gave(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    finan.state.fail_next("server_error", count=3)
    # Not the CRM's own copy of invoice 18: a job that pulled instead would send that one.
    invoice = {**sample_invoices()[18], "code": "HD-GIVEN-18"}
    assert issue(client, crm_headers, 18, json=invoice).status_code == 202

    run_worker(app)
    body = decode_request(app.extensions["bridge"].operations.records.get(18).last_body)
    assert body["reference_code"] == "HD-GIVEN-18"
    assert [r["body"] for r in finan_puts(finan)][-1]["reference_code"] == "HD-GIVEN-18"


def test_the_queued_issue_request_again_after_the_worker_sent_it_is_answered_from_the_record(
    app, client, crm_headers, finan, redis
):
    from bridge.sandbox.samples import sample_invoices

    finan.state.fail_next("server_error", count=3)
    body = json.dumps(sample_invoices()[18])
    assert (
        issue(client, crm_headers, 18, data=body, content_type="application/json").status_code
        == 202
    )
    run_worker(app)
    sent = len(finan_puts(finan))

    holder = redis.lock(lock_key(18), timeout=30)  # only the record, read without it, answers
    assert holder.acquire(blocking=False)
    try:
        repeat = issue(client, crm_headers, 18, data=body, content_type="application/json")
    finally:
        holder.release()

    assert repeat.status_code == 201, repeat.json
    assert repeat.json["data"]["state"] == "issued"
    assert len(finan_puts(finan)) == sent


def test_the_issue_repeated_after_an_update_went_dead_leaves_the_update_dead(
    app, client, crm_headers, finan, redis
):
    operations = app.extensions["bridge"].operations
    make_dead(client, crm_headers, finan, redis, by_update=True)
    sent = len(finan_puts(finan))

    repeat = issue(client, crm_headers)

    assert repeat.status_code == 201, repeat.json  # Finan holds the issue already
    assert len(finan_puts(finan)) == sent
    record = operations.records.get(17)
    assert record.state == "dead"
    assert "gave up after 3 queued attempts" in record.last_error["message"]
    assert record.pending.operation == "update"
    assert decode_request(record.pending.body)["customer"]["address"] == "1 Lê Lợi"
    assert operations.records.ids_in_state("dead") == [17]  # what a re-sync of dead finds
    assert [(e.operation, e.outcome) for e in history(app)[:2]] == [
        ("write_back", "written_back"),
        ("update", "dead"),
    ]


def test_a_rejected_cancel_still_bars_issue_and_update_and_can_be_sent_again(
    app, client, crm_headers, finan
):
    assert issue(client, crm_headers).status_code == 201
    finan.state.fail_next("client_error")
    assert client.post(f"{API}/17/cancel", headers=crm_headers).status_code == 502
    assert record_of(client, crm_headers)["state"] == "failed"

    assert issue(client, crm_headers).status_code == 409
    assert client.put(f"{API}/17", headers=crm_headers, json={}).status_code == 409
    again = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert again.status_code == 201
    assert record_of(client, crm_headers)["state"] == "cancelled"
    assert finan_puts(finan)[-1]["body"]["items"] == []


@pytest.mark.parametrize(
    "stored",
    [
        Fernet(Fernet.generate_key()).encrypt(b"{}"),
        b"{not json",
        b'{"pending": 3}',
        b"\xff\xfe not UTF-8",
        b'{"invoice_id": 9, "provider_invoice_id": "x", "total_amount": "12,5 VND"}',
    ],
    ids=["key not held", "not JSON", "wrong shape", "not UTF-8", "not an amount"],
)
def test_an_unreadable_queued_record_does_not_stop_the_sweep_for_the_others(
    app, client, crm_headers, finan, redis, stored
):
    redis.set(record_key(9), stored)
    redis.zadd(state_index_key("queued"), {9: 0})  # swept before invoice 17
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    bridge_queue(redis).empty()  # 17's job lost, as a Redis without AOF would lose it

    assert app.extensions["bridge"].operations.recover_stranded() == [17]
    assert redis.get(record_key(9)) == stored  # the damaged record is left for an operator


def test_a_damaged_record_is_a_503_that_says_so(app, client, crm_headers, redis):
    redis.set(record_key(17), b"{not json")

    response = client.get(f"{API}/17", headers=crm_headers)

    assert response.status_code == 503
    message = response.json["message"]
    assert "record of invoice 17" in message and "damaged (JSONDecodeError)" in message
    assert "bridge:record:17 and bridge:body:17" in message  # what an operator can do


@pytest.mark.parametrize(("finan_total", "written"), [("6325000.5", "6325001"), ("2.5", "3")])
def test_the_total_written_back_is_whole_dong_rounded_half_up_as_the_mapping_rounds(
    finan_total, written
):
    record = Record(17, "id", state="issued", total_amount=Decimal(finan_total))

    assert jobs.outcome_fields(record, None)["total_amount"] == written


def pending_operation(app, invoice_id=17) -> str | None:
    pending = app.extensions["bridge"].operations.records.get(invoice_id).pending
    return pending.operation if pending else None


def test_an_issue_finan_stored_but_answered_too_late_goes_dead_and_a_cancel_still_cancels_it(
    make_app, crm_headers, finan, tourwell, redis, retry_sleeps
):
    app = make_app(BRIDGE_RETRY_SCHEDULE="0")  # one queued attempt, then dead
    client = app.test_client()
    late_finan(app, retry_sleeps)
    # Three inline tries, then the queued attempt's three: each stored, each answered late.
    finan.state.fail_next("late_answer", count=6, delay=LATE_BY_SECONDS)
    assert issue(client, crm_headers).status_code == 202
    run_worker(app)
    record = record_of(client, crm_headers)
    assert record["state"] == "dead"
    (provider_id,) = finan.state.invoices  # yet Finan holds a payable invoice
    assert provider_id == record["provider_invoice_id"]
    assert finan.state.invoices[provider_id]["body"]["items"] != []
    (write,) = crm_writes(tourwell)
    assert "Not sent" not in write["body"]["note"]
    assert "may or may not have reached Finan" in write["body"]["note"]

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers, json={"cancel_note": "trip off"})

    assert cancel.status_code == 201, cancel.json
    assert cancel.json["message"] == "Invoice Canceled successfully"
    record = record_of(client, crm_headers)
    assert (record["state"], record["cancel_note"]) == ("cancelled", "trip off")
    assert record["last_error"] is None
    (last,) = answered_in_time(finan)  # the cancel: every other try was answered late
    assert last["path"].endswith(f"/update-invoice/{provider_id}")
    assert last["outcome"] == "updated"  # the invoice Finan stored, not a new one
    assert list(finan.state.invoices) == [provider_id]
    stored = finan.state.invoices[provider_id]["body"]
    assert stored["items"] == [] and stored["payment_config"] == []
    assert history(app)[0].actor == "crm" and history(app)[0].outcome == "cancelled"
    # Neither the CRM's issue nor an operator's re-sync brings the payable invoice back.
    assert issue(client, crm_headers).status_code == 409
    resynced = app.extensions["bridge"].operations.resync(17)
    assert resynced.record.state == "cancelled"
    assert answered_in_time(finan)[-1]["body"]["items"] == []
    assert finan.state.invoices[provider_id]["body"]["items"] == []


def test_a_cancel_of_a_dead_invoice_while_finan_is_still_down_is_queued_and_then_sent(
    app, client, crm_headers, finan, tourwell, redis
):
    make_dead(client, crm_headers, finan, redis)
    finan.state.fail_next("unavailable", count=3)

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert cancel.status_code == 202
    record = record_of(client, crm_headers)
    assert record["state"] == "queued"
    assert pending_operation(app) == "cancel"
    assert issue(client, crm_headers).status_code == 409  # only a cancel may follow
    run_worker(app)
    record = record_of(client, crm_headers)
    assert record["state"] == "cancelled"
    sent = [r for r in finan_puts(finan) if r["outcome"] in ("created", "updated")]
    assert len(sent) == 1  # the full invoice never reached Finan; only the cancel did
    assert sent[0]["body"]["items"] == [] and sent[0]["body"]["payment_config"] == []
    assert "cancelled" in crm_writes(tourwell)[-1]["body"]["note"]


def test_a_cancel_of_a_dead_invoice_that_finan_rejects_is_failed_and_still_bars_issue(
    app, client, crm_headers, finan, redis
):
    make_dead(client, crm_headers, finan, redis)
    finan.state.fail_next("client_error")

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert cancel.status_code == 502
    record = record_of(client, crm_headers)
    assert record["state"] == "failed"
    assert pending_operation(app) == "cancel"
    assert issue(client, crm_headers).status_code == 409
    again = client.post(f"{API}/17/cancel", headers=crm_headers)
    assert again.status_code == 201
    assert record_of(client, crm_headers)["state"] == "cancelled"
    assert finan_puts(finan)[-1]["body"]["items"] == []


def test_a_cancel_after_a_dead_update_is_built_from_the_updated_body(
    app, client, crm_headers, finan, redis
):
    make_dead(client, crm_headers, finan, redis, by_update=True)

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert cancel.status_code == 201
    assert record_of(client, crm_headers)["state"] == "cancelled"
    sent = finan_puts(finan)[-1]["body"]
    assert sent["items"] == [] and sent["customer"]["address"] == "1 Lê Lợi"
