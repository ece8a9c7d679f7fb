"""gunicorn settings for the bridge (``bridge serve`` passes this file with ``--config``).

Every value can be overridden from the environment with GUNICORN_<NAME> without editing
this file, e.g. GUNICORN_WORKERS=4.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path


def _env(name: str, default):
    return type(default)(os.environ.get(f"GUNICORN_{name.upper()}", default))


# Threads carry the wait on Finan (I/O bound); processes give CPU parallelism. gunicorn's
# stock threaded worker: the CRM sends at most 60 requests a minute, far below what one
# worker of 8 threads serves. A worker accepts up to worker_connections connections and
# serves them with its threads; a kept-alive connection stays with the worker that
# accepted it and is closed after keepalive seconds idle.
worker_class = "gthread"
workers = _env("workers", multiprocessing.cpu_count())
threads = _env("threads", 8)
worker_connections = _env("worker_connections", 1000)

# The slowest inline operation: a CRM pull (three tries of up to 5 s waiting for a
# rate-limit slot, 3 s connecting and 10 s reading, plus backoff: about 64 s), then Finan
# (three tries of 3 + 10 s plus backoff: about 49 s). A request past this is stuck.
timeout = _env("timeout", 150)
graceful_timeout = _env("graceful_timeout", 30)
keepalive = _env("keepalive", 5)

# Recycle workers now and then, with jitter so they don't all restart at once: a guard
# against a slow leak in some library. Not often: a worker's memory stays flat (66 MB
# through the benchmark), a start costs about half a second of CPU, and each recycled
# worker leaves metrics files that every scrape reads.
max_requests = _env("max_requests", 50000)
max_requests_jitter = _env("max_requests_jitter", 5000)

# Logs: JSON lines on stdout, for the supervisor (systemd, Docker, Kubernetes) to collect.
# gunicorn's error log and the app's own lines share one formatter
# (bridge/observability/logs.py). The app writes one line per request itself (logger
# "bridge.access": method, path, status, size, time, request id, and the invoice and
# operation), so gunicorn's access log is off (bridge/web/gunicorn_logging.py): one line
# per request, not two.
loglevel = _env("loglevel", "info")
accesslog = None
logger_class = "bridge.web.gunicorn_logging.GunicornLogger"
_json_to_stdout = {
    "class": "logging.StreamHandler",
    "formatter": "json",
    "stream": "ext://sys.stdout",
}
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "bridge.observability.logs.JsonFormatter"}},
    "handlers": {"stdout": _json_to_stdout},
    "root": {"level": loglevel.upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stdout"], "propagate": False},
    },
}

# gunicorn's control socket lives at one fixed path per user: two instances on one machine
# (a sandbox beside a service, parallel test runs) would fight over it. Nothing uses it.
control_socket_disable = True

# Metrics (bridge/observability/metrics.py): every worker writes its counters to files in
# one directory and a scrape of any worker adds them all up (prometheus-client's
# multiprocess mode). The variable must be set before a worker imports the app; without
# one from the environment, the master makes a private directory at start and removes it
# at exit.
_made_metrics_dir = None


def on_starting(server):
    global _made_metrics_dir
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not metrics_dir:
        metrics_dir = _made_metrics_dir = tempfile.mkdtemp(prefix="bridge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Files left by an earlier run would be added to this run's counts.
    for leftover in Path(metrics_dir).glob("*.db"):
        leftover.unlink()


def child_exit(server, worker):
    # A dead worker's live gauges must stop counting; its counters stay in the totals.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)
