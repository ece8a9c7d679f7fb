"""A real, forking ``bridge worker`` with ``BRIDGE_WORKER_METRICS_PORT`` counts the Finan
calls its work horses make, and serves them at ``/metrics`` under the web's metric names.

RQ forks a work horse for each job: without the worker's multiprocess directory
(``bridge/observability/worker_metrics.py``) the horse's counts would die with it, and the
scrape would show 0. The worker folds each finished horse's files into its own, so the
directory stays small however many jobs run; at exit it removes the directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import API, issue, queue_is_empty
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import free_port
from bridge.config import load_settings
from bridge.web.app import create_app

START_TIMEOUT_SECONDS = 120
WAIT_SECONDS = 120


def wait_for(condition, timeout: float = WAIT_SECONDS, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def finan_calls(values, outcome: str) -> float | None:
    return values.get(("bridge_finan_calls_total", (("outcome", outcome),)))


@pytest.fixture
def metrics_parent(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


@pytest.fixture
def worker(environ, metrics_parent, tmp_path):
    """A ``bridge worker`` serving its metrics; stopped (SIGTERM, warm shutdown) after."""
    port = free_port()
    log = (tmp_path / "worker.log").open("w")
    env = {
        **os.environ,
        **environ,
        "BRIDGE_RETRY_SCHEDULE": "0,0,0",
        "BRIDGE_WORKER_METRICS_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "worker"],
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(serving, START_TIMEOUT_SECONDS, "the worker's /metrics")
    yield url, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=WAIT_SECONDS)
    log.close()


def state_of(client, headers, invoice_id: int) -> str:
    return client.get(f"{API}/{invoice_id}", headers=headers).json["data"]["state"]


def test_a_forking_worker_serves_the_finan_calls_of_its_work_horses(
    worker, environ, redis, finan, crm_headers, retry_sleeps, metrics_parent
):
    url, process = worker
    settings = load_settings({**environ, "BRIDGE_RETRY_SCHEDULE": "0,0,0"})
    client = create_app(settings, redis, retry_sleeps).test_client()

    # Before any job: every known outcome has a series, at 0.
    before = samples(url)
    for outcome in ("accepted", "rejected", "unavailable", "error"):
        assert finan_calls(before, outcome) == 0
    assert before[("bridge_inline_retries_total", (("system", "finan"),))] == 0
    # The same names as the web's /metrics: the web process counted its inline tries here
    # (this test's process), not the worker.
    finan.state.fail_next("server_error", count=3)  # the inline tries: queued
    assert issue(client, crm_headers, 17).status_code == 202

    wait_for(lambda: state_of(client, crm_headers, 17) == "issued", what="the queued issue")
    wait_for(lambda: finan_calls(samples(url), "accepted") == 1, what="the horse's accepted call")

    # A second queued operation that Finan rejects, in another horse.
    finan.state.fail_next("server_error", count=3)
    assert issue(client, crm_headers, 18).status_code == 202
    finan.state.fail_next("client_error")
    wait_for(lambda: state_of(client, crm_headers, 18) == "failed", what="the rejection")
    wait_for(lambda: queue_is_empty(redis), what="the write-backs")
    wait_for(lambda: finan_calls(samples(url), "rejected") == 1, what="the rejected call")

    after = samples(url)
    assert finan_calls(after, "accepted") == 1  # the first horse's count survived its folding
    assert finan_calls(after, "unavailable") == 0
    assert after[("bridge_finan_request_duration_seconds_count", ())] == 2
    assert after[("bridge_inline_retries_total", (("system", "finan"),))] == 0

    # Each finished horse's files were folded away: the worker's own, the folded ones.
    (directory,) = metrics_parent.iterdir()
    wait_for(
        lambda: (
            {p.stem.rsplit("_", 1)[-1] for p in directory.glob("*.db")}
            <= {str(process.pid), "horses"}
        ),
        what="the horses' files to be folded",
    )

    process.send_signal(signal.SIGTERM)  # warm shutdown: the worker removes its directory
    assert process.wait(timeout=WAIT_SECONDS) == 0
    assert not directory.exists()
