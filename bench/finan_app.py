"""The Finan stand-in of ``bridge.sandbox`` as a WSGI app for gunicorn.

It checks every signature and body and computes Finan's totals, like in the tests. The
bench serves it from one process (so its request log counts every request, for D) with
many threads, and measures that it is not what limits the bridge.
"""

from __future__ import annotations

from bench.common import FINAN_CLIENT_ID, FINAN_PREFIX, FINAN_SECRET
from bridge.sandbox.finan_standin import create_finan_app

app = create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
