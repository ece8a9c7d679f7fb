"""The web service's gunicorn worker (gunicorn's stock gthread, named in
deploy/gunicorn.conf.py), in a live gunicorn run with the bridge's own settings file: a slow
request does not hold up the others, and a new connection is answered even while every
thread is busy with kept-alive connections."""

from __future__ import annotations

import http.client
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.processes import free_port, gunicorn_command, start_server

# Long enough for a worker with a free thread to answer, even on a loaded machine; a request
# left waiting behind the held one would wait for it, and it is released only after every
# answer is in (the app holds it at most 60 s, longer than this).
ANSWER_TIMEOUT_SECONDS = 30

# How long a test waits for what it needs to see (the servers up, a request taken):
# generous, as only a broken server runs into it.
WAIT_SECONDS = 60


def wait_for(condition, what: str, server) -> None:
    """Poll ``condition`` until it holds, failing (with the server's log) after WAIT_SECONDS."""
    give_up_at = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < give_up_at, f"timed out waiting for {what}\n{server.log_tail()}"
        time.sleep(0.05)


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
        # Both booted, not just the first.
        wait_for(lambda: len(server.workers()) >= 2, "both workers to boot", server)
        yield port, release, server
    finally:
        release.touch()
        server.stop()


def test_the_settings_file_names_gunicorns_threaded_worker(gunicorn):
    *_, server = gunicorn
    assert "Using worker: gthread" in server.log_path.read_text()


def test_a_slow_request_holds_one_thread_not_the_service(gunicorn):
    port, release, server = gunicorn
    with ThreadPoolExecutor(1) as pool:
        try:
            held = pool.submit(get, port, "/hold", 60)
            # The held request is in a worker, holding one of its threads.
            taken = Path(f"{release}.held")
            wait_for(taken.exists, "a worker to take the held request", server)
            assert not held.done()
            # Answered within ANSWER_TIMEOUT_SECONDS each (get raises otherwise).
            answered_by = [get(port, "/pid") for _ in range(20)]
        finally:
            release.touch()
        assert held.result() in server.workers()
    assert set(answered_by) <= set(server.workers())


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
        # The workers are busy serving the kept-alive connections.
        wait_for(lambda: len(answered) > 0, "the kept-alive connections to be answered", server)
        # Answered within ANSWER_TIMEOUT_SECONDS (get raises otherwise), by a worker.
        assert get(port, "/pid") in server.workers()
    finally:
        stop.set()
        for client in clients:
            client.join(30)
