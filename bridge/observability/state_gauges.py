"""Queue depth and records by state, read from Redis when Prometheus scrapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from rq import Queue
from rq.exceptions import NoSuchJobError

from bridge.store.out_of_sync import OutOfSyncStore
from bridge.store.queue import bridge_queue
from bridge.store.records import STATES, RecordStore

log = logging.getLogger(__name__)


def queue_ages(queue: Queue) -> dict[str, float]:
    """Seconds the oldest ready job has waited, and the earliest scheduled one is overdue."""
    now = datetime.now(UTC)
    ages = {"queued": 0.0, "scheduled": 0.0}
    for job_id in queue.get_job_ids(0, 1):
        job = queue.fetch_job(job_id)
        if job is not None and job.enqueued_at is not None:
            enqueued_at = job.enqueued_at.replace(tzinfo=job.enqueued_at.tzinfo or UTC)
            ages["queued"] = max((now - enqueued_at).total_seconds(), 0.0)
    registry = queue.scheduled_job_registry
    for job_id in registry.get_job_ids(0, 0, cleanup=False):
        try:
            due = registry.get_scheduled_time(job_id)
        except NoSuchJobError:
            continue
        due = due.replace(tzinfo=due.tzinfo or UTC)
        ages["scheduled"] = max((now - due).total_seconds(), 0.0)
    return ages


class RedisStateCollector:
    """Queue depth and records by state, read from Redis when Prometheus scrapes."""

    def __init__(self, connection: redis.Redis, records: RecordStore) -> None:
        self._redis = connection
        self._records = records

    def collect(self) -> Iterator[Metric]:
        queue = bridge_queue(self._redis)
        try:
            # cleanup=False: RQ's registry clean-up writes (and may re-run jobs); a scrape
            # only reads.
            depth = {
                "queued": queue.count,
                "scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False),
                "started": queue.started_job_registry.get_job_count(cleanup=False),
            }
            oldest = queue_ages(queue)
            by_state = self._records.count_by_state()
            out_of_sync = OutOfSyncStore(self._redis).count()
        except redis.RedisError as exc:
            # The counters are still worth serving; the gap in these two shows the outage.
            log.warning("metrics: Redis unavailable for queue and record counts (%s)", exc)
            return
        jobs = GaugeMetricFamily(
            "bridge_queue_depth",
            "Jobs in the retry queue: queued (ready to run), scheduled (waiting for their "
            "retry time), started (running).",
            labels=["status"],
        )
        for status, count in depth.items():
            jobs.add_metric([status], count)
        yield jobs
        ages = GaugeMetricFamily(
            "bridge_queue_oldest_age_seconds",
            "How long the queue's oldest job has waited: queued, since it became ready to run "
            "(no worker took it); scheduled, past its retry time (no scheduler moved it). "
            "0 when there is none.",
            labels=["status"],
        )
        for status, age in oldest.items():
            ages.add_metric([status], age)
        yield ages
        records = GaugeMetricFamily("bridge_records", "Invoice records by state.", labels=["state"])
        for state in STATES:
            records.add_metric([state], by_state.get(state, 0))
        yield records
        yield GaugeMetricFamily(
            "bridge_out_of_sync_invoices",
            "Invoices whose copy at Finan was last seen to differ from the body Finan accepted "
            "(or that Finan does not know): a check or reconciliation found them, and no "
            "later check or re-sync has set them right.",
            value=out_of_sync,
        )
