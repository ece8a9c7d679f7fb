"""The web service's gunicorn worker (bridge/web/gunicorn_worker.py), in a live gunicorn run with
the bridge's own settings file: a worker whose threads are all busy leaves new connections
to a worker with a free thread, and takes one all the same when no worker has a thread
free."""

from __future__ import annotations

import http.client
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.processes import free_port, gunicorn_command, start_server

# Long enough for a worker with a free thread to answer; a request left to a busy worker
# would wait for the held requests, which are released only after every answer is in.
ANSWER_TIMEOUT_SECONDS = 10


def get(port: int, path: str, timeout: float = ANSWER_TIMEOUT_SECONDS) -> int:
    """GET ``path`` on a new connection; the process id of the worker that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        assert answer.status == 200
        return int(answer.read())
    finally:
        connection.close()


@pytest.fixture
def gunicorn(request, tmp_path: Path):
    """gunicorn with the bridge's settings, 2 workers of 2 threads (or of ``threads`` given
    with indirect parametrisation), serving the blocking app: (port, release file, server)."""
    threads = getattr(request, "param", 2)
    port = free_port()
    release = tmp_path / "release"
    env = {
        **os.environ,
        "RELEASE_FILE": str(release),
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": str(threads),
    }
    command = gunicorn_command("tests.apps.blocking_app:app", port)
    server = start_server("gunicorn", command, env, tmp_path, "/pid", port)
    try:
        deadline = time.monotonic() + 30
        while len(server.workers()) < 2:  # both booted, not just the first
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        yield port, release, server
    finally:
        release.touch()
        server.stop()


def test_the_settings_file_names_the_balanced_worker(gunicorn):
    *_, server = gunicorn
    log = server.log_path.read_text()
    assert "Using worker: bridge.web.gunicorn_worker.BalancedThreadWorker" in log


def test_a_worker_with_all_threads_busy_takes_no_new_connection(gunicorn):
    port, release, server = gunicorn
    workers = set(server.workers())
    with ThreadPoolExecutor(3) as pool:
        try:
            # Three held requests fill one worker's two threads and one of the other's.
            held = [pool.submit(get, port, "/hold", 60) for _ in range(3)]
            time.sleep(1)  # every held request is in a worker
            assert not any(f.done() for f in held)
            # Twenty new connections, one at a time: each must be taken by the worker with
            # a free thread. gunicorn's own gthread worker queues some behind held ones.
            answered_by = [get(port, "/pid") for _ in range(20)]
        finally:
            release.touch()
        held_by = [f.result() for f in held]
    assert set(answered_by) < workers and len(set(answered_by)) == 1
    # The worker that answered is the one holding a single request.
    assert sorted(held_by.count(pid) for pid in workers) == [1, 2]
    assert held_by.count(answered_by[0]) == 1


@pytest.mark.parametrize("gunicorn", [1], indirect=True)
def test_with_every_thread_busy_a_new_connection_is_still_taken(gunicorn):
    """More kept-alive connections than threads, each sending again as soon as it is
    answered: a worker rarely has a thread free when its loop looks, and a new connection
    must not wait for that moment."""
    port, _, server = gunicorn
    stop = threading.Event()
    answered = []

    def send_again_and_again() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not stop.is_set():
                connection.request("GET", "/busy")
                answered.append(connection.getresponse().read())
        finally:
            connection.close()

    clients = [threading.Thread(target=send_again_and_again) for _ in range(8)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)
        assert answered  # the workers are busy serving the kept-alive connections
        # Answered within ANSWER_TIMEOUT_SECONDS (get raises otherwise), by a worker.
        assert get(port, "/pid") in server.workers()
    finally:
        stop.set()
        for client in clients:
            client.join(30)
