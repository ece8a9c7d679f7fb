"""Real processes dying: a worker killed mid-job, Redis killed under a running bridge, the
bridge killed between Finan's answer and its record, and a storm of identical requests.

The bridge and its workers run as real subprocesses (``bridge serve`` under gunicorn,
``bridge worker``), killed with SIGKILL. Two waits that production sits out are skipped
where noted, and only those: the expiry of a dead process's invoice lock
(``LOCK_TIMEOUT_SECONDS``) and of a dead worker's job heartbeat, after which RQ's
maintenance hands the job to another worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from helpers import API, finan_puts, issue
from rq.registry import StartedJobRegistry

from bench.processes import free_port
from bridge.config import load_settings
from bridge.store import embedded_redis
from bridge.store.connection import lock_key
from bridge.store.queue import bridge_queue
from bridge.web.app import create_app

# Generous deadlines: every wait below is on a condition, and these only bound a failure.
START_TIMEOUT_SECONDS = 120
WAIT_SECONDS = 60
# How long Finan holds a request the test kills its caller during: only the kill, which
# follows the stand-in's evidence at once, has to fit in it.
HANG_SECONDS = 5


def wait_for(condition, timeout: float = WAIT_SECONDS, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def bridge_process(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``bridge <args>`` in its own process group (so SIGKILL takes all its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=WAIT_SECONDS)


@pytest.fixture(autouse=True)
def metrics_dir(tmp_path, monkeypatch):
    """A metrics directory for the processes these tests kill: ``bridge serve`` removes the
    one it makes itself when it exits, which SIGKILL never lets it do."""
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


@pytest.fixture
def serve(environ):
    """Start ``bridge serve`` on a free port; returns its base URL. Killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen]:
        port = free_port()
        process = bridge_process(env or environ, "serve", "--port", str(port))
        started.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, "bridge serve exited during start-up"
            try:
                return requests.get(url + "/readyz", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, START_TIMEOUT_SECONDS, "bridge serve to be ready")
        return url, process

    yield start
    for process in started:
        kill(process)


@pytest.fixture
def queued_environ(environ):
    return {**environ, "BRIDGE_RETRY_SCHEDULE": "0,0,0"}


def test_a_worker_killed_mid_job_loses_nothing(
    queued_environ, redis, finan, crm_headers, retry_sleeps
):
    client = create_app(load_settings(queued_environ), redis, retry_sleeps).test_client()
    finan.state.fail_next("server_error", count=3)
    assert issue(client, crm_headers).status_code == 202
    # The worker's call to Finan will be in flight when the worker is killed: Finan takes
    # the fault (the stand-in's evidence that the request arrived), then holds the request
    # far longer than the kill below takes.
    finan.state.fail_next("hang", delay=HANG_SECONDS)

    worker = bridge_process(queued_environ, "worker")
    started = StartedJobRegistry(queue=bridge_queue(redis))
    wait_for(lambda: not finan.state.pending_faults(), what="the worker's request to Finan")
    assert started.count == 1 and redis.exists(lock_key(17))  # the job holds the invoice
    kill(worker)

    # Skipped waits (see the module's docstring): the dead worker's lock and heartbeat.
    redis.delete(lock_key(17))
    started.cleanup(timestamp=time.time() + 3600)  # RQ's maintenance, once it has lapsed
    assert bridge_queue(redis).count == 1  # the abandoned job is back in the queue

    second = bridge_process(queued_environ, "worker", "--burst")
    assert second.wait(timeout=WAIT_SECONDS) == 0

    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert record["state"] == "issued"
    wait_for(lambda: len(finan_puts(finan)) == 5, what="the hung request to finish")  # logged late
    assert len(finan.state.invoices) == 1  # both workers' requests hit the one derived id
    assert {r["path"] for r in finan_puts(finan)} == {
        f"/api/v1/invoice/update-invoice/{record['provider_invoice_id']}"
    }


def redis_pid(url: str) -> int:
    return int(redis_lib.Redis.from_url(url).info("server")["process_id"])


def test_redis_killed_and_started_again_under_a_running_bridge(
    environ, tmp_path: Path, finan, crm_headers, retry_sleeps
):
    data_dir = tmp_path / "redis"
    url = embedded_redis.ensure_server(data_dir)
    settings = load_settings({**environ, "REDIS_URL": url, "BRIDGE_RETRY_SCHEDULE": "0"})
    app = create_app(settings, retry_sleep=retry_sleeps)
    client = app.test_client()
    try:
        assert issue(client, crm_headers, 17).status_code == 201
        finan.state.fail_next("server_error", count=3)
        assert issue(client, crm_headers, 19).status_code == 202  # queued before the crash
        sent = len(finan_puts(finan))

        os.kill(redis_pid(url), signal.SIGKILL)
        down = issue(client, crm_headers, 18)

        assert down.status_code == 503
        assert "Redis" in down.json["message"]
        assert client.get("/readyz").status_code == 503
        assert len(finan_puts(finan)) == sent  # fail closed: nothing went to Finan

        embedded_redis.ensure_server(data_dir)  # same directory: its AOF is replayed
        assert issue(client, crm_headers, 18).status_code == 201  # no restart of the bridge
        assert client.get(f"{API}/17", headers=crm_headers).json["data"]["state"] == "issued"
        assert client.get(f"{API}/19", headers=crm_headers).json["data"]["state"] == "queued"

        worker = bridge_process({**environ, "REDIS_URL": url}, "worker", "--burst")
        assert worker.wait(timeout=WAIT_SECONDS) == 0
        assert client.get(f"{API}/19", headers=crm_headers).json["data"]["state"] == "issued"
    finally:
        embedded_redis.stop_server(data_dir)


def test_a_crash_between_finans_answer_and_the_record_converges_on_a_repeat(
    environ, redis, finan, crm_headers, serve, retry_sleeps
):
    url, bridge = serve()
    # Finan stores it, then holds its answer far longer than the kill below takes.
    finan.state.fail_next("late_answer", delay=HANG_SECONDS)
    caller = threading.Thread(
        target=lambda: _swallow(
            lambda: requests.post(f"{url}{API}/17/issue", headers=crm_headers, timeout=WAIT_SECONDS)
        )
    )
    caller.start()
    wait_for(lambda: len(finan.state.invoices) == 1, what="Finan to store the invoice")

    kill(bridge)  # the bridge dies before Finan's answer reaches it
    caller.join(timeout=WAIT_SECONDS)

    client = create_app(load_settings(environ), redis, retry_sleeps).test_client()
    assert client.get(f"{API}/17", headers=crm_headers).status_code == 404  # no record
    assert redis.pttl(lock_key(17)) > 0  # the dead process's lock: it would expire
    redis.delete(lock_key(17))  # skipped wait
    repeat = issue(client, crm_headers)

    assert repeat.status_code == 201, repeat.json
    assert repeat.json["data"]["state"] == "issued"
    assert repeat.json["data"]["provider_order_code"]
    assert len(finan.state.invoices) == 1  # the same derived id: no duplicate
    wait_for(lambda: len(finan_puts(finan)) == 2, what="the late answer to be logged")
    # The late answer is logged when it is finally written, after the repeat's.
    assert sorted(r["outcome"] for r in finan_puts(finan)) == ["created", "updated"]


def _swallow(call) -> None:
    try:
        call()
    except requests.RequestException:
        pass


def test_a_storm_of_200_identical_issues_makes_one_finan_request(
    environ, redis, finan, crm_headers, serve
):
    url, _ = serve()
    # The first request holds the lock a while. Whatever the timing, every other request is
    # either refused (409, the lock is held) or answered from the record (a repeat).
    finan.state.fail_next("hang", delay=1)
    from bridge.sandbox.samples import sample_invoices

    invoice = sample_invoices()[17]

    def one(_: int) -> requests.Response:
        return requests.post(
            f"{url}{API}/17/issue", headers=crm_headers, json=invoice, timeout=WAIT_SECONDS
        )

    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(one, range(200)))

    statuses = [a.status_code for a in answers]
    assert len(finan_puts(finan)) == 1
    assert set(statuses) <= {201, 409}, statuses
    assert statuses.count(201) >= 1
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 409)
    final = requests.get(f"{url}{API}/17", headers=crm_headers, timeout=WAIT_SECONDS).json()
    assert final["data"]["state"] == "issued"
