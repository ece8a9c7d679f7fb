"""The servers the bench starts, and what it reads about them from /proc (CPU, memory).

Every server is a process group of its own (``start_new_session``), so the bench stops
exactly what it started, and nothing else, when it is done or interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bridge.store import embedded_redis

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = REPO / "deploy" / "gunicorn.conf.py"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces; everything after its ")" is fixed.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU of ``pid`` (plus of its children it has waited for)."""
    try:
        values = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(values[11]) + int(values[12])  # utime, stime
    if reaped_children:
        ticks += int(values[13]) + int(values[14])  # cutime, cstime
    return ticks / _TICKS


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(x) for x in text.split()]
    except (FileNotFoundError, PermissionError):
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int(_stat_fields(int(entry.name))[1]) == pid:
                        found.append(int(entry.name))
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
        return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in kB; empty if it is gone."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    numbers = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = numbers[3] + numbers[4]  # idle, iowait
    return (sum(numbers) - idle) / _TICKS, sum(numbers) / _TICKS


@dataclass
class Server:
    """A server process the bench started: a gunicorn master (its workers are its children),
    a server that serves in its own process (``single_process``: uvicorn), or redis-server."""

    name: str
    pid: int
    url: str
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    single_process: bool = False
    worker_peaks_kb: dict[int, int] = field(default_factory=dict)

    def workers(self) -> list[int]:
        """The worker processes apart from ``pid`` (none for a single-process server)."""
        if self.process is None or self.single_process:
            return []
        return children(self.pid)

    def cpu_seconds(self) -> float:
        """The master, the workers alive now, and the workers already recycled."""
        own = cpu_seconds(self.pid, reaped_children=True)
        return own + sum(self.worker_cpu_seconds().values())

    def worker_cpu_seconds(self) -> dict[int, float]:
        """Each worker alive now: its CPU seconds so far."""
        return {worker: cpu_seconds(worker) for worker in self.workers()}

    def sample_memory(self) -> None:
        for worker in self.workers():
            peak = memory_kb(worker).get("VmHWM")
            if peak:
                self.worker_peaks_kb[worker] = max(peak, self.worker_peaks_kb.get(worker, 0))

    def peak_worker_mb(self) -> float | None:
        return max(self.worker_peaks_kb.values()) / 1024 if self.worker_peaks_kb else None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # gunicorn: quick shutdown; uvicorn: graceful
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this bench started
            process.wait(STOP_TIMEOUT_SECONDS)


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_dir: Path,
    ready_path: str,
    port: int,
    single_process: bool = False,
) -> Server:
    """Run ``command`` (a server on 127.0.0.1:``port``) and wait until ``ready_path`` answers."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    server = Server(name, process.pid, url, log_path, process, single_process)
    wait_ready(server, ready_path)
    return server


def gunicorn_command(app: str, port: int) -> list[str]:
    """gunicorn with the bridge's own settings file, as ``bridge serve`` runs it."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(GUNICORN_CONFIG),
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]


FULL_FINAN_THREADS = 16
# How each Finan stand-in of bench/finan_app.py is served (the bench's report names it).
FINAN_SERVERS = {
    "fast": "uvicorn with uvloop and httptools, one process",
    "full": f"gunicorn, one gthread worker, {FULL_FINAN_THREADS} threads",
}


def start_finan(env: dict[str, str], log_dir: Path, full: bool = False) -> Server:
    """A Finan stand-in in one process, so that its request log sees every request.

    The fast one of ``bench.finan_app`` runs under uvicorn (uvloop, httptools: far less CPU
    per request than gunicorn's threads, so the bench measures the bridge); with ``full``,
    the full one of ``bridge.sandbox`` (it validates every body and computes Finan's
    totals) runs under gunicorn with ``FULL_FINAN_THREADS`` threads.
    """
    port = free_port()
    if full:
        command = [
            sys.executable, "-m", "gunicorn",
            "--workers", "1", "--worker-class", "gthread", "--threads", str(FULL_FINAN_THREADS),
            "--keep-alive", "30", "--backlog", "2048", "--max-requests", "0",
            "--log-level", "warning", "--bind", f"127.0.0.1:{port}",
            "bench.finan_app:full_app()",
        ]  # fmt: skip
        return start_server("finan", command, env, log_dir, "/_standin/requests", port)
    # uvloop and httptools named, not "auto": without them uvicorn would fall back to
    # asyncio and h11 quietly, and the numbers would change.
    command = [
        sys.executable, "-m", "uvicorn",
        "--factory", "bench.finan_app:fast_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
        "--timeout-keep-alive", "30", "--backlog", "2048",
        "--timeout-graceful-shutdown", str(int(STOP_TIMEOUT_SECONDS / 2)),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return start_server(
        "finan", command, env, log_dir, "/_standin/requests", port, single_process=True
    )


def wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as answer:
                if answer.status == 200 and (server.single_process or server.workers()):
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer {path} in time:\n{server.log_tail()}")
        time.sleep(0.1)


def start_redis(data_dir: Path) -> tuple[Server, str]:
    """A dedicated redis-server (the embedded one's binary and settings) on a unix socket."""
    url = embedded_redis.ensure_server(data_dir)
    pid = int((data_dir / "redis.pid").read_text().strip())
    return Server("redis", pid, url), url


def stop_redis(data_dir: Path) -> None:
    embedded_redis.stop_server(data_dir)


@contextmanager
def redis_and_finan(prefix: str) -> Iterator[tuple[Path, str, Server]]:
    """(a work directory, a dedicated Redis's URL, the fast Finan stand-in) for a
    measurement in this process; all stopped and removed after, whatever fails."""
    with ExitStack() as cleanup:  # undone in reverse order
        workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        (workdir / "logs").mkdir()
        cleanup.callback(stop_redis, workdir / "redis")
        _, redis_url = start_redis(workdir / "redis")
        finan = start_finan(dict(os.environ), workdir / "logs")
        cleanup.callback(finan.stop)
        yield workdir, redis_url, finan


class MemorySampler:
    """Samples the workers' peak RSS (VmHWM) a few times a second, in the background.

    gunicorn recycles workers (``max_requests``), so a worker's peak is read while it
    lives; the report takes the highest peak of any worker seen.
    """

    def __init__(self, servers: list[Server], interval: float = 0.25) -> None:
        self._servers = servers
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for server in self._servers:
                server.sample_memory()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for server in self._servers:
            server.sample_memory()
