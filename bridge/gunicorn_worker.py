"""The web service's gunicorn worker: gthread, leaving new connections to a worker with a
free thread.

gunicorn's own gthread worker accepts every connection it can (up to ``worker_connections``,
1000), busy or not, and keeps serving a kept-alive connection in the worker that accepted
it. When a client opens several connections at once and keeps them (a reverse proxy's
upstream pool, a CRM's HTTP session), one worker can take them all while the others sit
idle: in the benchmark one of two workers took all 16 of wrk's connections in about one
run in three, and served half the requests the two would have (docs/performance.md). And
a request on a new connection can wait behind a slow one in a busy worker while another
worker is idle (gunicorn issues 2191 and 3433).

This worker, while all its threads are busy, leaves new connections in the listening
socket's queue for a worker with a free thread. When a connection has waited there
``BUSY_ACCEPT_AFTER_SECONDS`` all the same (every worker is busy, or more connections are
kept alive than the workers have threads), a busy worker takes it, as gunicorn's would:
no connection waits for a thread to be free at the moment a loop looks, which with clients
that send again at once may be never. Everything else is gunicorn's.

It counts the connections handed to its thread pool, on the worker's main thread (where
gunicorn calls these methods), and relies on gunicorn 27's gthread worker: its loop asks
``set_accept_enabled`` on every turn whether to accept, and every request goes through
``enqueue_req`` and back through ``finish_request``. ``tests/test_gunicorn_worker.py``
checks the behaviour against a live gunicorn.
"""

from __future__ import annotations

import select
import time

from gunicorn.workers.gthread import ThreadWorker

BUSY_ACCEPT_AFTER_SECONDS = 0.05


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # connections handed to the thread pool and not yet finished
        self.waiting_since: float | None = None  # a connection seen waiting while busy

    def may_accept(self) -> bool:
        if self.in_flight < self.cfg.threads:
            return True
        if not self.connection_waiting():
            self.waiting_since = None
            return False
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        return now - self.waiting_since >= BUSY_ACCEPT_AFTER_SECONDS

    def connection_waiting(self) -> bool:
        readable, _, _ = select.select(self.sockets, [], [], 0)
        return bool(readable)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.may_accept())

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        if self.in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        # The loop's next turn accepts again if a thread is now free.
        self.in_flight -= 1
        super().finish_request(conn, fs)
