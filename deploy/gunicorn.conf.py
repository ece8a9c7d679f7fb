"""gunicorn settings for the bridge (``bridge serve`` passes this file with ``--config``).

Every value can be overridden from the environment with GUNICORN_<NAME> without editing
this file, e.g. GUNICORN_WORKERS=4.
"""

import multiprocessing
import os


def _env(name: str, default):
    return type(default)(os.environ.get(f"GUNICORN_{name.upper()}", default))


# Threads carry the wait on Finan (I/O bound); processes give CPU parallelism.
worker_class = "gthread"
workers = _env("workers", multiprocessing.cpu_count())
threads = _env("threads", 8)

# The slowest inline operation: a CRM pull (three tries of up to 5 s waiting for a
# rate-limit slot, 3 s connecting and 10 s reading, plus backoff: about 64 s), then Finan
# (three tries of 3 + 10 s plus backoff: about 49 s). A request past this is stuck.
timeout = _env("timeout", 150)
graceful_timeout = _env("graceful_timeout", 30)
keepalive = _env("keepalive", 5)

# Recycle workers now and then, with jitter so they don't all restart at once.
max_requests = _env("max_requests", 5000)
max_requests_jitter = _env("max_requests_jitter", 500)

# Logs to stdout/stderr, for the supervisor (systemd, Docker, Kubernetes) to collect.
accesslog = "-"
errorlog = "-"
loglevel = _env("loglevel", "info")
# No query strings or headers in the access log: nothing secret can reach it.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

# gunicorn's control socket lives at one fixed path per user: two instances on one machine
# (a sandbox beside a service, parallel test runs) would fight over it. Nothing uses it.
control_socket_disable = True
