"""The web service's gunicorn worker: gthread, taking a new connection only with a thread free.

gunicorn's own gthread worker accepts every connection it can (up to ``worker_connections``,
1000), busy or not, and keeps serving a kept-alive connection in the worker that accepted
it. When a client opens several connections at once and keeps them (a reverse proxy's
upstream pool, a CRM's HTTP session), one worker can take them all while the others sit
idle: in the benchmark one of two workers took all 16 of wrk's connections in about one
run in three, and served half the requests the two would have (docs/performance.md).

This worker leaves new connections in the listening socket's queue while all its threads
are busy, for a worker with a free thread to take (gunicorn issue 3433). Everything else is
gunicorn's: the connections a worker already holds are still served by it, and when every
worker is busy a new connection waits in the queue for the first thread to come free
instead of in one worker's thread pool.

It counts the connections handed to its thread pool, on the worker's main thread (where
gunicorn calls these three methods), and relies on gunicorn 27's gthread worker: its loop
asks ``set_accept_enabled`` on every turn whether to accept, and every request goes
through ``enqueue_req`` and back through ``finish_request``. ``tests/test_gunicorn_worker.py``
checks the behaviour against a live gunicorn.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # connections handed to the thread pool and not yet finished

    def has_free_thread(self) -> bool:
        return self.in_flight < self.cfg.threads

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.has_free_thread())

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        if not self.has_free_thread():
            self.set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        # The loop's next turn accepts again if a thread is now free.
        self.in_flight -= 1
        super().finish_request(conn, fs)
