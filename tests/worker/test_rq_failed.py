"""RQ tells the truth: the queued attempt that leaves an invoice dead (or failed) ends as a
failed RQ job, with the reason in its exc_info, and RQ does not retry it; an attempt that
schedules another one ends finished.

Jobs run in this process with ``InProcessWorker`` (RQ's ``SimpleWorker``) in burst mode, so
RQ's own failure handling (``handle_job_failure``) decides, as it does in ``bridge worker``.
"""

from __future__ import annotations

import pytest
from helpers import API, finan_puts, issue, queue_is_empty, run_worker
from rq.job import Job, JobStatus

from bridge.store.queue import SYNC_JOB, bridge_queue


@pytest.fixture
def app(make_app):
    """The bridge, with queued attempts due at once (three of them, then dead)."""
    return make_app(BRIDGE_RETRY_SCHEDULE="0,0,0")


def record_of(client, headers, invoice_id=17) -> dict:
    return client.get(f"{API}/{invoice_id}", headers=headers).json["data"]


def sync_jobs(redis, registry) -> list[Job]:
    jobs = [Job.fetch(job_id, connection=redis) for job_id in registry.get_job_ids()]
    return [job for job in jobs if job.func_name == SYNC_JOB]


def reason(job: Job) -> str:
    """The failure's traceback as RQ keeps it (what `rq info` / rq-dashboard show)."""
    return job.latest_result().exc_string


def test_the_attempt_that_makes_an_invoice_dead_is_a_failed_job_and_the_others_finished(
    app, client, crm_headers, finan, redis
):
    finan.state.fail_next("server_error", count=100)
    issue(client, crm_headers)

    run_worker(app)

    assert record_of(client, crm_headers)["state"] == "dead"
    queue = bridge_queue(redis)
    (failed,) = sync_jobs(redis, queue.failed_job_registry)
    assert failed.get_status() == JobStatus.FAILED
    assert "QueuedOperationFailed" in reason(failed)
    assert "Finan unavailable after 3 queued attempts; dead" in reason(failed)
    assert failed.retries_left == 0  # giving up is not a crash: RQ does not run it again
    # The two attempts that scheduled another ended finished.
    finished = sync_jobs(redis, queue.finished_job_registry)
    assert len(finished) == 2
    assert all(job.get_status() == JobStatus.FINISHED for job in finished)
    # One send of three inline tries per attempt: the failed job was not run again.
    assert len(finan_puts(finan)) == 3 + 3 * 3
    assert queue_is_empty(redis)
    # The write-back (a job of its own) finished: the CRM was told.
    assert queue.failed_job_registry.count == 1


def test_the_failed_job_run_again_sends_nothing(app, client, crm_headers, finan, redis):
    finan.state.fail_next("server_error", count=100)
    issue(client, crm_headers)

    run_worker(app)

    (failed,) = sync_jobs(redis, bridge_queue(redis).failed_job_registry)
    assert record_of(client, crm_headers)["state"] == "dead"  # saved before the job failed
    # An operator's `rq requeue` of the failed job sends nothing: the dead record no longer
    # names the job (a re-sync is how an operator sends a dead invoice again).
    puts = len(finan_puts(finan))
    bridge_queue(redis).failed_job_registry.requeue(failed.id)
    run_worker(app)
    assert len(finan_puts(finan)) == puts
    assert Job.fetch(failed.id, connection=redis).get_status() == JobStatus.FINISHED
    assert record_of(client, crm_headers)["state"] == "dead"


def test_a_rejection_in_the_worker_is_a_failed_job_with_finans_code(
    app, client, crm_headers, finan, redis
):
    finan.state.fail_next("server_error", count=3)
    issue(client, crm_headers)
    finan.state.fail_next("client_error")

    run_worker(app)

    record = record_of(client, crm_headers)
    assert record["state"] == "failed"
    (failed,) = sync_jobs(redis, bridge_queue(redis).failed_job_registry)
    assert f"rejected by Finan ({record['last_error']['code']}); failed" in reason(failed)
    assert "invalid invoice" not in reason(failed)  # Finan's words stay on the record
    assert len(finan_puts(finan)) == 4  # not retried by RQ either


def test_a_retried_attempt_and_a_successful_one_are_finished_jobs(
    app, client, crm_headers, finan, redis
):
    finan.state.fail_next("server_error", count=6)  # inline, then the first queued attempt
    issue(client, crm_headers)

    run_worker(app)

    assert record_of(client, crm_headers)["state"] == "issued"
    queue = bridge_queue(redis)
    assert queue.failed_job_registry.count == 0
    finished = sync_jobs(redis, queue.finished_job_registry)
    assert len(finished) == 2  # the retried attempt, then the one Finan accepted
    assert all(job.get_status() == JobStatus.FINISHED for job in finished)
