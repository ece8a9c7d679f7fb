"""The retry queue: RQ on the bridge's Redis (docs/contract/semantics.md#queue).

What to send lives on the invoice's record (``Record.pending``, encrypted with the rest of
it); a job carries only the invoice id and its own id. So there is at most one pending
operation per invoice and a job always sends the latest content: a newer operation on a
queued invoice replaces ``pending`` and keeps the job that is already scheduled. A job that
finds the record no longer names it (superseded, settled by hand) does nothing.

The job is scheduled in the same MULTI/EXEC as the record that names it (RQ accepts a
pipeline), so a record is never left queued without a job, nor a job without a record.
``recover_stranded`` covers what a transaction can't: a job lost with a Redis that kept no
AOF, or one RQ gave up on. Workers run it at start and at each maintenance round.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

QUEUE_NAME = "bridge"
SYNC_JOB = "bridge.worker.jobs.sync_invoice"
WRITE_BACK_JOB = "bridge.worker.jobs.write_back"

# One attempt at Finan ends by its deadline, 40 s (CALL_DEADLINE_SECONDS,
# bridge/integrations/http.py); waiting for the invoice's lock at most LOCK_TIMEOUT_SECONDS.
# RQ kills a job that overruns this.
JOB_TIMEOUT_SECONDS = 300
# If a job itself crashes (a bug, Redis gone mid-job) or its worker is killed, RQ runs it
# again on this schedule; the Finan schedule is the bridge's own (Settings.retry_schedule).
JOB_CRASH_RETRY = Retry(max=3, interval=[0, 60, 300])
# CRM write-backs are retried by RQ on 429/5xx/timeouts, for about a day in all.
WRITE_BACK_RETRY = Retry(max=8, interval=[10, 60, 300, 900, 1800, 3600, 7200, 21600])
# Finished jobs are of no further use: the record and its history keep the outcome.
RESULT_TTL_SECONDS = 3600
FAILURE_TTL_SECONDS = 7 * 86400

LIVE_STATUSES = {
    JobStatus.QUEUED,
    JobStatus.SCHEDULED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
}


def bridge_queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def new_job_id(invoice_id: int) -> str:
    return f"sync-{invoice_id}-{uuid.uuid4().hex[:12]}"


def add_job(
    connection: redis.Redis,
    pipeline: redis.client.Pipeline,
    function: str,
    args: tuple,
    description: str,
    *,
    job_id: str | None = None,
    run_at: datetime | None = None,
    retry: Retry = JOB_CRASH_RETRY,
) -> None:
    """Add (to ``pipeline``) a job of the bridge's queue, with the bridge's job options.

    It runs at ``run_at`` (RQ's scheduler, in ``bridge worker``, moves it to the queue
    then), or as soon as a worker is free when ``run_at`` is None.
    """
    queue = bridge_queue(connection)
    options = dict(
        job_id=job_id,
        job_timeout=JOB_TIMEOUT_SECONDS,
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        retry=retry,
        description=description,
        pipeline=pipeline,
    )
    if run_at is None:
        queue.enqueue(function, *args, **options)
    else:
        queue.enqueue_at(run_at, function, *args, **options)


def schedule_sync(
    connection: redis.Redis,
    invoice_id: int,
    job_id: str,
    run_at: datetime | None,
    pipeline: redis.client.Pipeline,
) -> None:
    """Add (to ``pipeline``) the job that sends the invoice's pending operation."""
    description = f"send invoice {invoice_id}'s pending operation to Finan"
    add_job(
        connection, pipeline, SYNC_JOB, (invoice_id, job_id), description,
        job_id=job_id, run_at=run_at,
    )  # fmt: skip


def schedule_write_back(
    connection: redis.Redis, invoice_id: int, pipeline: redis.client.Pipeline
) -> None:
    """Add (to ``pipeline``) the job that writes the invoice's outcome back to the CRM."""
    description = f"write invoice {invoice_id}'s outcome back to the CRM"
    add_job(
        connection, pipeline, WRITE_BACK_JOB, (invoice_id,), description, retry=WRITE_BACK_RETRY
    )


def job_is_live(connection: redis.Redis, job_id: str | None) -> bool:
    """The job exists and will still run (or is running)."""
    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE_STATUSES
