"""Real processes dying: a worker killed mid-job, Redis killed under a running bridge and
worker, the bridge killed between Finan's answer and its record, a Finan trickling its
answer, and a storm of identical requests.

The bridge and its workers run as real subprocesses (``bridge serve`` under gunicorn,
``bridge worker``), killed with SIGKILL. Two waits that production sits out are skipped
where noted, and only there (the fast variants): the expiry of a dead process's invoice
lock (``LOCK_TIMEOUT_SECONDS``) and of a dead worker's job heartbeat, after which RQ's
maintenance hands the job to another worker. ``test_a_worker_killed_mid_call_is_replaced
_within_three_minutes`` sits both out for real.
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
from helpers import API, crm_writes, finan_puts, issue
from rq import Worker
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from bench.processes import free_port
from bridge.config import load_settings
from bridge.integrations import http
from bridge.store import embedded_redis
from bridge.store.connection import lock_key
from bridge.store.lock import LOCK_TIMEOUT_SECONDS
from bridge.store.queue import QUEUE_NAME, bridge_queue
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
    """The fast variant: the lock's and the job heartbeat's expiries are skipped (see the
    module's docstring); the real waits are the next test's."""
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


# The promise for a worker SIGKILLed mid-job while another runs (docs/reliability.md, 6),
# and how long the test waits for it: the wait only bounds a failure.
RECOVERY_PROMISE_SECONDS = 180
RECOVERY_WAIT_SECONDS = 240


def children_of(pid: int) -> list[int]:
    """The live pids whose parent is ``pid`` (from /proc; a zombie is dead): a worker's work
    horse, which RQ puts in a process group of its own, and its scheduler."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue  # gone meanwhile
        if int(parent) == pid and state != "Z":
            children.append(int(stat.parent.name))
    return children


def kill_with_children(process: subprocess.Popen) -> None:
    """SIGKILL a ``bridge worker``, its work horse and its scheduler (found first: a child
    of a dead parent is re-parented)."""
    children = children_of(process.pid)
    kill(process)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_worker_killed_mid_call_is_replaced_within_three_minutes(
    queued_environ, redis, finan, tourwell, crm_headers, retry_sleeps
):
    """No expiry skipped: the dead worker's job heartbeat lapses and the invoice's lock
    expires by themselves, and the other worker's maintenance hands the job on."""
    client = create_app(load_settings(queued_environ), redis, retry_sleeps).test_client()
    workers = [bridge_process(queued_environ, "worker") for _ in range(2)]
    try:
        finan.state.fail_next("server_error", count=3)
        finan.state.fail_next("hang", delay=HANG_SECONDS)  # the worker's call, in flight
        assert issue(client, crm_headers).status_code == 202
        wait_for(lambda: not finan.state.pending_faults(), what="the worker's request to Finan")
        busy = [w.pid for w in Worker.all(connection=redis) if w.get_current_job_id()]
        (holder,) = [w for w in workers if w.pid in busy]
        assert redis.exists(lock_key(17))  # the job holds the invoice

        kill_with_children(holder)  # the worker, its work horse and its scheduler
        killed_at = time.monotonic()
        (other,) = [w for w in workers if w is not holder]

        def issued_and_written_back() -> bool:
            assert other.poll() is None, "the other worker exited"
            record = client.get(f"{API}/17", headers=crm_headers).json["data"]
            return record["state"] == "issued" and bool(crm_writes(tourwell))

        deadline = time.monotonic() + RECOVERY_WAIT_SECONDS
        while not issued_and_written_back():
            assert time.monotonic() < deadline, "the killed worker's job was never sent again"
            time.sleep(1)
        took = time.monotonic() - killed_at
        print(f"a worker killed mid-call: issued and written back {took:.0f} s after the kill")
        assert took < RECOVERY_PROMISE_SECONDS, f"recovered in {took:.0f} s"
    finally:
        for worker in workers:
            kill_with_children(worker)

    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    path = f"/api/v1/invoice/update-invoice/{record['provider_invoice_id']}"
    # The killed worker's request (stored by Finan once its hang ended) and the resend both
    # landed on the one derived id, with the same body.
    assert list(finan.state.invoices) == [record["provider_invoice_id"]]
    sent = [r for r in finan_puts(finan) if r.get("outcome") in ("created", "updated")]
    assert sent and {r["path"] for r in sent} == {path}
    assert all(r["body"] == finan_puts(finan)[0]["body"] for r in finan_puts(finan))
    assert finan.state.invoices[record["provider_invoice_id"]]["body"] == sent[0]["body"]
    (write,) = crm_writes(tourwell)
    assert write["body"]["note"].startswith("Finan invoice issued")


def test_a_trickling_finan_is_cut_at_the_deadline_and_the_invoice_queued(
    environ, redis, finan, crm_headers, retry_sleeps
):
    """The production deadline, through the whole bridge: Finan stores the invoice and
    trickles its answers, each try is cut, the operation is queued like one that timed out,
    and the lock was never outlived."""
    client = create_app(load_settings(environ), redis, retry_sleeps).test_client()
    finan.state.fail_next("trickle", count=3, delay=0.5)  # an answer would take minutes

    started = time.monotonic()
    response = issue(client, crm_headers)
    took = time.monotonic() - started
    print(f"a trickling Finan: the issue answered {response.status_code} after {took:.0f} s")

    assert response.status_code == 202, response.json
    assert response.json["data"]["state"] == "queued"
    assert "no answer within the timeout" in response.json["data"]["last_error"]["message"]
    assert took < LOCK_TIMEOUT_SECONDS / 2  # the lock, renewed before the call, still held
    assert took < http.CALL_DEADLINE_SECONDS + WAIT_SECONDS  # only bounds a failure
    assert not redis.exists(lock_key(17))  # released by its holder, not expired
    assert len(finan.state.invoices) == 1  # stored: it may have reached Finan


# How soon after Redis is back a worker's scheduler must move due jobs again (docs/
# reliability.md, 8), and how long the tests wait for the evidence (bounds a failure).
SCHEDULER_RESUMES_SECONDS = 60
REDIS_WAIT_SECONDS = 180
# The queued attempt's delay: due while Redis is down or soon after it is back.
FIRST_DELAY = "5"
JOB_RUN_BOUND_SECONDS = 30


def start_worker_with_scheduler(env: dict[str, str], url: str) -> subprocess.Popen:
    worker = bridge_process(env, "worker")
    connection = redis_lib.Redis.from_url(url)
    lock = RQScheduler.get_locking_key(QUEUE_NAME)
    wait_for(lambda: connection.exists(lock), START_TIMEOUT_SECONDS, "the worker's scheduler")
    return worker


def redis_down_until_the_scheduler_died(url: str, worker: subprocess.Popen) -> None:
    """SIGKILL Redis under the running worker, and wait for the evidence that its
    scheduler died with it (the worker's only child process, when idle, is gone)."""
    assert children_of(worker.pid), "the worker runs no scheduler"
    os.kill(redis_pid(url), signal.SIGKILL)
    wait_for(lambda: not children_of(worker.pid), REDIS_WAIT_SECONDS, "the scheduler to die")
    assert worker.poll() is None  # the worker itself waits for Redis


@pytest.mark.parametrize("with_its_data", [True, False], ids=["with-aof", "empty"])
def test_redis_restarted_under_a_running_worker_scheduling_resumes(
    environ, tmp_path: Path, finan, crm_headers, retry_sleeps, with_its_data
):
    data_dir = tmp_path / "redis"
    url = embedded_redis.ensure_server(data_dir)
    env = {**environ, "REDIS_URL": url, "BRIDGE_RETRY_SCHEDULE": FIRST_DELAY}
    client = create_app(load_settings(env), retry_sleep=retry_sleeps).test_client()
    worker = start_worker_with_scheduler(env, url)
    try:
        finan.state.fail_next("server_error", count=3)
        assert issue(client, crm_headers, 19).status_code == 202  # a job due in 5 s

        redis_down_until_the_scheduler_died(url, worker)
        if not with_its_data:  # Redis comes back empty: what it held is lost
            for path in data_dir.glob("appendonly*"):
                if path.is_dir():
                    for part in path.iterdir():
                        part.unlink()
                else:
                    path.unlink()
        embedded_redis.ensure_server(data_dir)
        back_at = time.monotonic()

        if with_its_data:
            waiting = 19  # the AOF kept the record and its job
        else:
            assert client.get(f"{API}/19", headers=crm_headers).status_code == 404
            finan.state.fail_next("server_error", count=3)
            assert issue(client, crm_headers, 18).status_code == 202  # new work, due in 5 s
            waiting = 18

        def issued() -> bool:
            assert worker.poll() is None, "the worker exited"
            record = client.get(f"{API}/{waiting}", headers=crm_headers).json["data"]
            return record["state"] == "issued"

        wait_for(issued, REDIS_WAIT_SECONDS, f"invoice {waiting} to be issued")
        took = time.monotonic() - back_at
        how = "with its AOF" if with_its_data else "empty"
        print(f"Redis back ({how}): invoice {waiting} issued {took:.0f} s later")
        # The job is due (its delay ran out) by the time the scheduler is back; then one
        # run of it, which the second term only bounds.
        assert took < SCHEDULER_RESUMES_SECONDS + int(FIRST_DELAY) + JOB_RUN_BOUND_SECONDS
        assert worker.poll() is None
    finally:
        kill_with_children(worker)
        embedded_redis.stop_server(data_dir)


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
