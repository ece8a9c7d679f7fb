"""Only an alias, to delete: the web service runs gunicorn's stock ``gthread`` worker, and
its logger is ``bridge.web.gunicorn_logging.GunicornLogger``. Kept until
tests/observability/test_logs.py imports the logger from there."""

from bridge.web.gunicorn_logging import GunicornLogger

__all__ = ["GunicornLogger"]
