"""The web service's gunicorn worker: gthread, leaving new connections to a worker with a
free thread. And its logger, without gunicorn's access log (``GunicornLogger``, below).

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
kept alive than the workers have threads), a busy worker takes the waiting connections, as
gunicorn's would: no connection waits for a thread to be free at the moment a loop looks,
which with clients that send again at once may be never. Everything else is gunicorn's.

It counts the connections handed to its thread pool, on the worker's main thread (where
gunicorn calls all these methods), and relies on gunicorn 27's gthread worker: while it is
not accepting, its loop asks ``set_accept_enabled`` on every turn whether to accept again;
every request goes through ``enqueue_req`` and back through ``finish_request``.
``tests/web/test_gunicorn_worker.py`` checks the behaviour against a live gunicorn.
"""

from __future__ import annotations

import select
import time
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

BUSY_ACCEPT_AFTER_SECONDS = 0.05


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # connections handed to the thread pool and not yet finished
        # While busy: since when a connection has been seen waiting to be accepted.
        self.waiting_since: float | None = None
        self._listeners: select.poll | None = None

    def has_free_thread(self) -> bool:
        return self.in_flight < self.cfg.threads

    def may_accept(self) -> bool:
        if self.has_free_thread():
            self.waiting_since = None
            return True
        if not self.connection_waiting():
            self.waiting_since = None
            return False
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        # Once one has waited that long, every worker is busy: take them as gunicorn would,
        # for as long as the queue is not seen empty.
        return now - self.waiting_since >= BUSY_ACCEPT_AFTER_SECONDS

    def connection_waiting(self) -> bool:
        if self._listeners is None:
            self._listeners = select.poll()
            for listener in self.sockets:
                self._listeners.register(listener, select.POLLIN)
        return bool(self._listeners.poll(0))

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.may_accept())

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Look again when a waiting connection's grace is over, not a whole turn later.
        if self.waiting_since is not None:
            left = self.waiting_since + BUSY_ACCEPT_AFTER_SECONDS - time.monotonic()
            timeout = min(timeout, max(left, 0.0))
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener) -> None:
        super().accept(listener)
        # Taken by another worker (gunicorn ignores the EAGAIN) or not: busy is busy.
        if not self.has_free_thread():
            super().set_accept_enabled(False)

    def enqueue_req(self, conn) -> None:
        super().enqueue_req(conn)
        self.in_flight += 1
        if not self.has_free_thread():
            super().set_accept_enabled(False)

    def finish_request(self, conn, fs) -> None:
        # The loop's next turn accepts again if a thread is now free.
        self.in_flight -= 1
        super().finish_request(conn, fs)


class GunicornLogger(Logger):
    """gunicorn's logger (``logger_class`` in ``deploy/gunicorn.conf.py``) without its access
    log: the app writes each request's line itself (``bridge.access``,
    ``bridge.web.request_logging``). gunicorn builds an access line whenever logging is
    configured by dict, even with its access log off."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
