"""``bridge_queue_oldest_age_seconds``: how long the oldest ready job has waited for a
worker, and how far the earliest scheduled job is past its time (no scheduler moved it).
Read from Redis at scrape time, like the queue's depth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from bridge.store.queue import WRITE_BACK_JOB, bridge_queue


def ages(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bridge_queue_oldest_age_seconds"
    }


def test_an_empty_queue_is_0_for_both(client):
    assert ages(client) == {"queued": 0.0, "scheduled": 0.0}


def test_a_ready_job_nobody_takes_ages_with_its_wait(client, redis):
    queue = bridge_queue(redis)
    job = queue.enqueue(WRITE_BACK_JOB, 17)
    job.enqueued_at = datetime.now(UTC) - timedelta(minutes=20)  # as if waiting since then
    job.save()
    queue.enqueue(WRITE_BACK_JOB, 18)  # a newer one behind it does not lower the age

    seen = ages(client)

    assert 20 * 60 <= seen["queued"] < 20 * 60 + 600
    assert seen["scheduled"] == 0


def test_a_scheduled_job_past_its_time_is_overdue_and_a_future_one_is_not(client, redis):
    queue = bridge_queue(redis)
    queue.enqueue_at(datetime.now(UTC) + timedelta(hours=1), WRITE_BACK_JOB, 17)
    assert ages(client)["scheduled"] == 0  # waiting for its retry time is not late

    queue.enqueue_at(datetime.now(UTC) - timedelta(minutes=10), WRITE_BACK_JOB, 18)

    seen = ages(client)
    assert 10 * 60 <= seen["scheduled"] < 10 * 60 + 600
    assert seen["queued"] == 0
