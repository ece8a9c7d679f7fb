"""``python -m bench.profile``: where a bridge worker's time goes on B1, B2 and B2k.

It starts the same servers as ``python -m bench``, puts load on one scenario at a time
with wrk, and samples every bridge worker with py-spy (``pip install py-spy``; it reads
the workers' memory, so it needs root or ptrace rights). For each scenario it prints the
functions with the largest share of samples, inclusive (the function and what it calls)
and self (the function's own code), and keeps the raw stacks in the results folder
(``bench/results/profile-<scenario>.txt``, collapsed-stack format for flame graphs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from bench import loadgen
from bench.processes import REPO
from bench.run import RESULTS, Bench, parse_args

PROFILED = ("B1", "B2", "B2k")

# Where a sample's time goes: the frame nearest the leaf that matches decides, so a
# json.dumps inside the record store counts for the record store, and a Redis command
# anywhere counts for Redis.
STARTUP = ("Worker.init_process", "Arbiter.spawn_worker")
# A gthread worker's main thread: its loop (poll, accept, hand over to a thread, keep-alive
# connections) runs inside ``init_process`` too, but is not start-up.
MAIN_LOOP = "gthread.py:ThreadWorker.run"
CATEGORIES = (
    (
        "logging",
        ("logging/", "pythonjsonlogger/", "bridge/observability/logs.py", "gunicorn/glogging.py"),
    ),
    ("metrics", ("prometheus_client/", "bridge/observability/metrics.py")),
    ("Redis commands (redis-py)", ("redis/",)),
    ("signing", ("bridge/integrations/finan/signing.py",)),
    (
        "HTTP call to Finan (requests)",
        ("requests/", "urllib3/", "http/client.py", "tenacity/", "bridge/integrations/"),
    ),
    ("load the CRM invoice (marshmallow)", ("schemas/tourwell.py",)),
    ("map to Finan's body", ("bridge/invoices/mapping.py",)),
    ("encode Finan's body", ("schemas/finan.py:encode_request",)),
    ("decode the last body sent", ("schemas/finan.py:decode_request",)),
    ("record (de)serialisation", ("bridge/store/records.py", "bridge/store/encryption.py")),
    ("idempotency key", ("bridge/store/idempotency.py",)),
    ("answer envelope", ("schemas/bridge.py",)),
    (
        "bridge request handling (auth, body, JSON)",
        ("bridge/web/crm_api.py", "bridge/web/http.py", "schemas/json_input.py"),
    ),
    ("other bridge code (operations)", ("bridge/",)),
    ("Flask and werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn (HTTP parsing, I/O)", ("gunicorn/",)),
)
_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>.+?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("bench.profile: py-spy is missing: pip install py-spy")
    return found


def _short(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``file.py:function`` with a package hint."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", f"{REPO}/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{match['function']}"


def category(frames: list[str]) -> str:
    """The area a stack (outermost frame first) belongs to."""
    if any(frame.endswith(MAIN_LOOP) for frame in frames):
        return "gunicorn's main loop (poll, accept, keep-alive)"
    if any(marker in frame for frame in frames for marker in STARTUP):
        return "worker start-up (gunicorn recycles workers)"
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarise(stacks_file: Path, top: int, within: str | None = None) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in stacks_file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # py-spy puts the process and thread first, then the outermost frame first.
        frames = [_short(f) for f in stack.split(";") if " (" in f]
        if not frames or (within and not any(within in f for f in frames)):
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
        areas[category(frames)] += count
    lines = [f"{total} samples", "by area:"]
    for name, count in areas.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines.append("inclusive (the function and everything it calls):")
    plumbing = ("threading.py", "concurrent/", "<frozen", "selectors.py")
    shown = [(n, c) for n, c in inclusive.most_common() if not n.startswith(plumbing)]
    for name, count in shown[:top]:
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines.append("self (the function's own code):")
    for name, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def profile(
    bench: Bench, scenario_key: str, seconds: float, connections: int, out: Path, wall: bool
) -> Path:
    scenario = next(s for s in bench.scenarios() if s.key == scenario_key)
    stacks = out / f"profile-{scenario_key}{'-wall' if wall else ''}.txt"
    command = [
        py_spy(),
        "record",
        "--pid",
        str(bench.servers["bridge"].pid),
        "--subprocesses",
        # CPU: only the thread holding the GIL (where the CPU goes, not who waits for it);
        # wall: every thread that is not idle (where a request's time goes, waits included).
        *(("--nonblocking", "--idle") if wall else ("--gil",)),
        "--rate",
        "200",
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(stacks),
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result: list[loadgen.LoadResult] = []
    load = threading.Thread(
        target=lambda: result.append(
            loadgen.run(scenario.load(0), seconds + 1, connections, bench.wrk)
        )
    )
    load.start()
    _, errors = spy.communicate()
    load.join()
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
    print(f"{scenario_key}: {result[0].rps:.0f} req/s while sampled", flush=True)
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenarios", nargs="*", default=list(PROFILED), choices=PROFILED)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--wall", action="store_true", help="wall-clock time of busy threads, not CPU (GIL)"
    )
    args = parser.parse_args()
    bench = Bench(parse_args([]))
    bench.wrk = loadgen.ensure_wrk(install=True)
    out = RESULTS.parent
    out.mkdir(parents=True, exist_ok=True)
    try:
        bench.start_and_warm_up()
        for key in args.scenarios:
            stacks = profile(bench, key, args.seconds, args.connections, out, args.wall)
            bench.reset_finan()
            # Wall-clock samples include the idle threads: keep those inside a request.
            within = "crm_operation" if args.wall else None
            print(f"--- {key} ({stacks})\n{summarise(stacks, args.top, within)}\n", flush=True)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
