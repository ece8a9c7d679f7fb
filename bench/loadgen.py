"""The load generator: wrk (installed with apt-get when missing), else a Python fallback.

wrk is written in C and drives thousands of requests a second from one thread, so on a
2-core machine it takes little from the servers it measures. The fallback (threads and
``http.client``) needs far more CPU per request, so its numbers compare only with its own;
the report says which generator ran.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import ISSUE_PATH
from bench.invoice import ID_PLACEHOLDER

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
RESULT_MARKER = "BENCH_RESULT "
WRK_THREADS = 1  # one is enough (see above), and leaves the cores to the servers


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    client_cpu_seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def ensure_wrk(install: bool = True) -> str | None:
    """The path of wrk, installing Debian's package if it is missing; None if impossible."""
    return ensure_program("wrk", install)


def ensure_program(name: str, install: bool = True) -> str | None:
    """The path of ``name``, installing Debian's package of that name if it is missing;
    None if impossible."""
    found = shutil.which(name)
    if found or not install:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print(f"bench: {name} is missing and can't be installed here (needs root and apt-get)")
        return None
    print(f"bench: installing {name} with apt-get ...", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = [apt, "install", "-y", "-q", name]
    if subprocess.run(install_cmd, env=env, **quiet).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env, **quiet)
        subprocess.run(install_cmd, env=env, **quiet)
    return shutil.which(name)


@dataclass(frozen=True)
class Load:
    """What to send: the mode and arguments of bench/wrk.lua, and the headers."""

    url: str
    mode: str
    args: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


def run(load: Load, seconds: float, connections: int, wrk: str | None) -> LoadResult:
    if wrk:
        return _run_wrk(wrk, load, seconds, connections)
    return _run_python(load, seconds, connections)


def _run_wrk(wrk: str, load: Load, seconds: float, connections: int) -> LoadResult:
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{max(connections, WRK_THREADS)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_SCRIPT),
    ]
    for name, value in load.headers:
        command += ["-H", f"{name}: {value}"]
    command += [load.url, "--", load.mode, *load.args, str(WRK_THREADS)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    raw = json.loads(line[len(RESULT_MARKER) :])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        latency_ms={k: v / 1000 for k, v in raw["latency_us"].items()},
        client_cpu_seconds=cpu,
    )


# --- the fallback --------------------------------------------------------------------------


def _request_for(
    load: Load, data: bytes, counter: int, thread_index: int, threads: int
) -> tuple[str, str, bytes, dict]:
    """The same requests bench/wrk.lua builds, for the Python fallback; ``data`` is the
    content of the load's file (the body, or the issue template)."""
    path = urlsplit(load.url).path or "/"
    headers = dict(load.headers)
    if load.mode == "get":
        return "GET", path, b"", headers
    if load.mode == "static":
        return load.args[1], path, data, headers
    base = int(load.args[1])
    n = counter * threads + thread_index  # interleaved, as in wrk.lua
    invoice_id = base + (n if load.mode == "issue" else n % int(load.args[2]))
    if load.mode == "replay-key":
        headers["Idempotency-Key"] = f"bench-{invoice_id}"
    body = data.replace(f'"{ID_PLACEHOLDER}"'.encode(), str(invoice_id).encode())
    return "POST", ISSUE_PATH.format(invoice_id=invoice_id), body, headers


def _run_python(load: Load, seconds: float, connections: int) -> LoadResult:
    parts = urlsplit(load.url)
    # Read once, not once per request: the fallback's own CPU is taken from the servers.
    data = b"" if load.mode == "get" else Path(load.args[0]).read_bytes()
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        mine: list[float] = []
        failed = {"read": 0, "status": 0}
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        counter = 0
        while time.monotonic() < deadline:
            method, path, body, headers = _request_for(load, data, counter, index, connections)
            counter += 1
            started = time.perf_counter()
            try:
                conn.request(method, path, body or None, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                failed["read"] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                continue
            mine.append(time.perf_counter() - started)
            if response.status >= 400:
                failed["status"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for key, value in failed.items():
                errors[key] += value

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    cpu_before = time.process_time()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        latency_ms={
            "p50": percentile(50),
            "p90": percentile(90),
            "p99": percentile(99),
            "max": ordered[-1] * 1000,
            "mean": statistics.fmean(ordered) * 1000,
        },
        client_cpu_seconds=time.process_time() - cpu_before,
    )


if __name__ == "__main__":  # a quick manual check: python -m bench.loadgen URL
    result = run(Load(sys.argv[1], "get"), 2, 8, ensure_wrk(install=False))
    print(f"{result.rps:.0f} req/s, p50 {result.latency_ms['p50']:.2f} ms")
