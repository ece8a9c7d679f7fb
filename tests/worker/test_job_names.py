"""Jobs queued by version 0.2, under its job names, still run after an upgrade."""

from __future__ import annotations

from helpers import crm_writes, issue, run_worker
from rq.job import Job

from bridge.store.queue import bridge_queue


def test_a_write_back_queued_under_its_0_2_name_runs(make_app, crm_headers, tourwell, redis):
    app = make_app()
    assert issue(app.test_client(), crm_headers).status_code == 201
    before = len(crm_writes(tourwell))

    job = bridge_queue(redis).enqueue("bridge.jobs.write_back", 17)
    run_worker(app)

    assert Job.fetch(job.id, connection=redis).get_status() == "finished"
    writes = crm_writes(tourwell)
    assert len(writes) == before + 1
    assert writes[-1]["status"] == 200
