"""A WSGI app for tests of the web service's gunicorn worker (tests/web/test_gunicorn_worker.py).

``/hold`` first creates ``RELEASE_FILE`` + ".held" (a test's sign that a worker's thread
has taken it), then answers only once the file named by ``RELEASE_FILE`` exists (at most
60 s); ``/busy`` after 20 ms; ``/pid`` at once. Each answers with the worker's process id.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_LIMIT_SECONDS = 60


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        release = Path(os.environ["RELEASE_FILE"])
        Path(f"{release}.held").touch()
        deadline = time.monotonic() + HOLD_LIMIT_SECONDS
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    elif environ["PATH_INFO"] == "/busy":
        time.sleep(0.02)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
