"""Serve a WSGI app on loopback from a background thread.

The stand-ins for the CRM and Finan are real HTTP servers, so the bridge's clients are
exercised down to the socket (timeouts, dropped connections, headers) in tests and in
``bridge sandbox``. Port 0 lets the OS pick a free port; ``url`` tells you which.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """Drops the one-line-per-request access log; errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackServer:
    """A threaded werkzeug server for ``app``; use as a context manager or start()/stop()."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("LoopbackServer is not running; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._server.port}"

    def start(self) -> LoopbackServer:
        if self._server is not None:
            return self
        try:
            server = make_server(
                self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
            )
        except SystemExit as exc:
            # werkzeug prints the reason and calls sys.exit() when it can't bind; a library
            # caller should get an exception it can handle instead.
            raise OSError(f"can't listen on {self.host}:{self.port}") from exc
        # Daemon threads: a request left hanging on purpose (a "hang" fault) must not keep
        # the process alive or make stop() wait for it.
        server.daemon_threads = True
        self._server = server
        self.port = server.port
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
