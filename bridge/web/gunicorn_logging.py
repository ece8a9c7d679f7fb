"""gunicorn's logger for the web service, without gunicorn's access log.

``logger_class`` in ``deploy/gunicorn.conf.py`` names it; a logger class overriding
``access`` is one of gunicorn's documented extension points (the ``logger_class`` setting).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class GunicornLogger(Logger):
    """gunicorn's logger without its access log: the app writes each request's line itself
    (``bridge.access``, ``bridge.web.request_logging``). gunicorn builds an access line
    whenever logging is configured by dict, even with its access log off."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
