"""``python -m bench``: H, N, B1, B2 (and F, D) side by side, in alternating rounds.

Scenarios (H, N and the bridge all run under deploy/gunicorn.conf.py, as ``bridge serve``):

- H   Flask hello-world JSON (``bench.hello_app``): the ceiling of the web stack.
- N   the naive hand-written chain (``bench.naive_app``): the baseline.
- B1  the bridge's issue, the invoice in the body, a fresh invoice id per request.
- L   the same issue through the bridge's own parts chained as leanly as they go
      (``bench.lean_app``): schema, mapping, signed Finan client, no guarantees; what
      the design's libraries cost at the least, for B1 to be read against.
- B2  the same issues again: the content layer answers, nothing goes to Finan.
- B2k the same issues again with their ``Idempotency-Key``: the stored answer.
- F   the Finan stand-in alone (one signed PUT, over and over): its ceiling, to show it
      is not what limits N or B1. The stand-in is the fast one of ``bench/finan_app.py``
      (checks signatures, parses the JSON, sums the rows) under uvicorn, in one process;
      ``--full-finan`` serves the full one of ``bridge/sandbox/finan_standin.py``
      (validates every field) under gunicorn instead.
- D   200 identical issues of one new invoice at once: Finan must get exactly one.

Each round runs every throughput scenario once, in a rotated order, then D and the
unloaded latencies (one connection); the report gives the median over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import (
    CRM_HEADERS,
    CRM_TOKEN,
    FINAN_CLIENT_ID,
    FINAN_PREFIX,
    FINAN_SECRET,
    ISSUE_PATH,
    PAYMENT_CONFIG,
    TAX_IDS,
    TOURWELL_BASE_URL,
    bridge_environment,
)
from bench.duplicates import duplicate_issues, summarise
from bench.invoice import ROWS_PER_SERVICE, SERVICES, bench_invoice, body_template, issue_body
from bench.processes import (
    FINAN_SERVERS,
    GUNICORN_CONFIG,
    REPO,
    MemorySampler,
    Server,
    free_port,
    gunicorn_command,
    machine_busy_seconds,
    start_finan,
    start_redis,
    start_server,
    stop_redis,
)
from bridge.config import SETTINGS_TABLE
from bridge.store.records import provider_invoice_id

RESULTS = REPO / "bench" / "results" / "latest.json"
APPS = ("hello", "naive", "lean", "bridge")  # the gunicorn apps, whose workers are watched
REPLAY_POOL = 256  # invoices issued before the rounds, which B2 and B2k issue again

# name -> (direction, bound)
TARGETS = {
    "B1/H": (">=", 0.25),
    "B1/N": (">=", 2.0),
    "B2/H": (">=", 0.5),
    "B1 unloaded p50 ms": ("<=", 3.0),
    "peak RSS per bridge worker MB": ("<=", 100.0),
}

# Above this share of the machine's CPU taken by processes the bench did not start, the
# report warns that its numbers are not those of a quiet machine.
OTHER_LOAD_WARNING = 0.05

# Id ranges, far apart, so no scenario ever meets another's invoices.
POOL_BASE = 10_000_000
B1_BASE = 100_000_000
N_BASE = 200_000_000
L_BASE = 500_000_000
UNLOADED_BASE = 300_000_000
D_BASE = 400_000_000
ROUND_STRIDE = 1_000_000  # ids per round, far more than a round sends


# The Finan stand-in the bench serves (--full-finan picks the full one).
FINAN_STANDINS = {
    "fast": "bench/finan_app.py: checks the signature, parses the JSON, sums the rows",
    "full": "bridge/sandbox/finan_standin.py: also validates every field, Finan's totals",
}


def finan_kind(options: argparse.Namespace) -> str:
    return "full" if options.full_finan else "fast"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str  # whose CPU is "the server's" for this scenario
    load: Callable[[int], loadgen.Load]  # round number -> what to send
    uses_finan: bool = False


def _post(url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
        self.servers: dict[str, Server] = {}
        self.wrk: str | None = None
        self.template = self.workdir / "issue-template.json"
        self.template.write_text(body_template(), "utf-8")

    # --- servers ---------------------------------------------------------------------

    def start(self) -> None:
        logs = self.workdir / "logs"
        logs.mkdir()
        self.servers["redis"], redis_url = start_redis(self.workdir / "redis")
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS_TABLE}

        finan = self.servers["finan"] = start_finan(env, logs, full=self.options.full_finan)

        port = free_port()
        command = gunicorn_command("bench.hello_app:app", port)
        self.servers["hello"] = start_server("hello", command, env, logs, "/hello", port)

        port = free_port()
        naive_env = {**env, "BENCH_REDIS_URL": redis_url, "BENCH_FINAN_URL": finan.url}
        command = gunicorn_command("bench.naive_app:create_app()", port)
        self.servers["naive"] = start_server("naive", command, naive_env, logs, "/healthz", port)

        bridge_env = {**env, **bridge_environment(redis_url, finan.url)}
        port = free_port()
        command = gunicorn_command("bench.lean_app:create_app()", port)
        self.servers["lean"] = start_server("lean", command, bridge_env, logs, "/healthz", port)

        port = free_port()
        # Exactly `bridge serve`: it execs gunicorn with deploy/gunicorn.conf.py.
        command = [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        self.servers["bridge"] = start_server("bridge", command, bridge_env, logs, "/readyz", port)

    def start_and_warm_up(self) -> list[Scenario]:
        """Start the servers, send one request down every path, issue the replay pool, then
        run every scenario for ``options.warmup`` seconds (round -1: ids of its own)."""
        self.start()
        self.check_paths()
        self.issue_replay_pool()
        scenarios = self.scenarios()
        print("bench: warming up ...", flush=True)
        for scenario in scenarios:
            loadgen.run(scenario.load(-1), self.options.warmup, self.options.connections, self.wrk)
            self.reset_finan()
        return scenarios

    def stop(self) -> None:
        for name, server in self.servers.items():
            if name != "redis":
                server.stop()
        stop_redis(self.workdir / "redis")
        if not self.options.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def reset_finan(self) -> None:
        _post(self.servers["finan"].url + "/_standin/reset")

    def finan_puts(self, invoice_id: int) -> int:
        target = provider_invoice_id(TOURWELL_BASE_URL, invoice_id)
        with urllib.request.urlopen(self.servers["finan"].url + "/_standin/requests") as answer:
            log = json.load(answer)["requests"]
        return sum(1 for r in log if r["method"] == "PUT" and target in r["path"])

    # --- scenarios -------------------------------------------------------------------

    def issue(self, server: str, invoice_id: int, key: str | None = None) -> tuple[int, bytes]:
        headers = dict(CRM_HEADERS)
        if key:
            headers["Idempotency-Key"] = key
        url = self.servers[server].url + ISSUE_PATH.format(invoice_id=invoice_id)
        return _post(url, issue_body(invoice_id), headers)

    def check_paths(self) -> None:
        """One request down every path, before measuring: a fast failure is no result."""
        for server in ("bridge", "naive", "lean"):
            status, body = self.issue(server, POOL_BASE - 1)
            if status != 201:
                raise RuntimeError(f"{server} answered an issue with {status}: {body[:500]!r}")

    def issue_replay_pool(self) -> None:
        def one(invoice_id: int) -> int:
            return self.issue("bridge", invoice_id, key=f"bench-{invoice_id}")[0]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(POOL_BASE, POOL_BASE + REPLAY_POOL)))
        if set(statuses) != {201}:
            raise RuntimeError(f"issuing the replay pool got {sorted(set(statuses))}")
        self.reset_finan()

    def fresh_issues(self, url: str, base: int) -> loadgen.Load:
        """Issues of invoices ``base``, ``base + 1``, ...: a new invoice every request."""
        auth = tuple(CRM_HEADERS.items())
        return loadgen.Load(url + "/", "issue", (str(self.template), str(base)), auth)

    def signed_finan_put(self) -> loadgen.Load:
        """One signed update-invoice, signed now: Finan's window is 30 s, a run is shorter."""
        from bridge.integrations.finan.signing import signature
        from bridge.invoices.mapping import MappingConfig, map_invoice
        from schemas.finan import encode_request
        from schemas.tourwell import load_invoice

        config = MappingConfig(tax_ids=TAX_IDS, payment_config=PAYMENT_CONFIG)
        body = encode_request(map_invoice(load_invoice(bench_invoice(1)), config))
        body_file = self.workdir / "finan-body.json"
        body_file.write_bytes(body)
        path = f"/api/v1/invoice/update-invoice/{provider_invoice_id(TOURWELL_BASE_URL, 1)}"
        timestamp = int(time.time())
        headers = (
            ("Content-Type", "application/json"),
            ("x-client-id", FINAN_CLIENT_ID),
            ("x-timestamp", str(timestamp)),
            ("x-signature", signature(FINAN_SECRET, "PUT", path, body, timestamp)),
        )
        url = self.servers["finan"].url + FINAN_PREFIX + path
        return loadgen.Load(url, "static", (str(body_file), "PUT"), headers)

    def scenarios(self) -> list[Scenario]:
        template = str(self.template)
        auth = tuple(CRM_HEADERS.items())
        bridge, naive = self.servers["bridge"].url, self.servers["naive"].url
        lean = self.servers["lean"].url

        def issues(url: str, base: int) -> Callable[[int], loadgen.Load]:
            return lambda r: self.fresh_issues(url, base + (r + 1) * ROUND_STRIDE)

        def replays(mode: str) -> Callable[[int], loadgen.Load]:
            args = (template, str(POOL_BASE), str(REPLAY_POOL))
            return lambda r: loadgen.Load(bridge + "/", mode, args, auth)

        hello = self.servers["hello"].url + "/hello"
        return [
            Scenario("H", "Flask hello-world JSON", "hello", lambda r: loadgen.Load(hello, "get")),
            Scenario("N", "naive chain (issue)", "naive", issues(naive, N_BASE), True),
            Scenario("B1", "bridge issue, fresh invoice", "bridge", issues(bridge, B1_BASE), True),
            Scenario("L", "lean chain of the bridge's parts", "lean", issues(lean, L_BASE), True),
            Scenario("B2", "bridge replay (content layer)", "bridge", replays("replay")),
            Scenario("B2k", "bridge replay (Idempotency-Key)", "bridge", replays("replay-key")),
            Scenario(
                "F",
                f"Finan stand-in alone ({finan_kind(self.options)})",
                "finan",
                lambda r: self.signed_finan_put(),
                uses_finan=True,
            ),
        ]

    def measure(self, scenario: Scenario, round_number: int, seconds: float, connections: int):
        load = scenario.load(round_number)
        names = (*APPS, "finan", "redis")
        cpu_before = {n: self.servers[n].cpu_seconds() for n in names}
        workers_before = self.servers[scenario.server].worker_cpu_seconds()
        busy_before, total_before = machine_busy_seconds()
        result = loadgen.run(load, seconds, connections, self.wrk)
        busy_after, total_after = machine_busy_seconds()
        cpu = {n: self.servers[n].cpu_seconds() - cpu_before[n] for n in names}
        workers_after = self.servers[scenario.server].worker_cpu_seconds()
        worker_cpu = [
            workers_after[w] - workers_before[w] for w in workers_before if w in workers_after
        ]
        cpu["load generator"] = result.client_cpu_seconds
        if scenario.uses_finan:
            self.reset_finan()  # the stand-in keeps every request; let it forget them
        # Whatever else kept the machine busy: another process, or the kernel's own work.
        cpu["rest of machine"] = max(0.0, (busy_after - busy_before) - sum(cpu.values()))
        count = max(result.requests, 1)
        cores = os.cpu_count() or 1
        return {
            "rps": result.rps,
            "requests": result.requests,
            "errors": result.failed,
            "latency_ms": result.latency_ms,
            "cpu_ms_per_request": {name: 1000 * value / count for name, value in cpu.items()},
            # The CPU this scenario cost on the whole: what its rate is bounded by.
            "bench_cpu_ms_per_request": 1000
            * sum(v for n, v in cpu.items() if n != "rest of machine")
            / count,
            "machine_busy": (busy_after - busy_before) / max(total_after - total_before, 1e-9),
            "other_load": cpu["rest of machine"] / (cores * max(result.seconds, 1e-9)),
            # How evenly the server's workers shared the work: 1 / workers is even, 1.0 is
            # every request on one worker (connections kept alive on the worker that took them).
            "busiest_worker_share": max(worker_cpu) / sum(worker_cpu)
            if len(worker_cpu) > 1 and sum(worker_cpu)
            else None,
        }

    def duplicates(self, round_number: int, callers: int) -> dict[str, Any]:
        invoice_id = D_BASE + round_number
        self.reset_finan()
        answers = duplicate_issues(
            self.servers["bridge"].url, CRM_TOKEN, invoice_id, issue_body(invoice_id), callers
        )
        verdict = summarise(answers, self.finan_puts(invoice_id))
        self.reset_finan()
        return verdict


# --- the run -------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    packages = ("flask", "werkzeug", "gunicorn", "marshmallow", "redis", "requests")
    for package in packages + ("uvicorn", "uvloop", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def gunicorn_settings() -> dict[str, Any]:
    """What deploy/gunicorn.conf.py resolves to here (GUNICORN_* variables may override)."""
    values = runpy.run_path(str(GUNICORN_CONFIG))
    names = ("worker_class", "workers", "threads", "keepalive", "max_requests")
    return {name: values[name] for name in names}


def run(options: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(options)
    wrk = None if options.no_wrk else loadgen.ensure_wrk(install=not options.no_install)
    bench.wrk = wrk
    if wrk is None:
        print(
            "bench: WARNING: no wrk (missing, or --no-wrk): the Python load generator runs "
            "instead; it takes far more CPU from the servers than wrk, so compare its numbers "
            "only with runs of the same generator",
            flush=True,
        )
    started = time.monotonic()
    try:
        print(f"bench: starting servers (work directory {bench.workdir}) ...", flush=True)
        # A worker's peak RSS (VmHWM) counts from its start, and no worker is recycled
        # during the warm-up (max_requests is far more): the sampler sees its peaks too.
        scenarios = bench.start_and_warm_up()
        measured = {s.key: [] for s in scenarios}
        unloaded: dict[str, list[dict[str, float]]] = {"H": [], "B1": [], "B2": []}
        duplicates = []
        watched = [bench.servers[n] for n in APPS]
        by_key = {scenario.key: scenario for scenario in scenarios}
        with MemorySampler(watched):
            for r in range(options.rounds):
                order = scenarios[r % len(scenarios) :] + scenarios[: r % len(scenarios)]
                line = []
                for scenario in order:
                    result = bench.measure(scenario, r, options.duration, options.connections)
                    measured[scenario.key].append(result)
                    flag = f" ({result['errors']} errors)" if result["errors"] else ""
                    line.append(f"{scenario.key} {result['rps']:.0f}{flag}")
                duplicates.append(bench.duplicates(r, options.callers))
                bridge = bench.servers["bridge"].url
                single_loads = {
                    "H": by_key["H"].load(r),
                    "B1": bench.fresh_issues(bridge, UNLOADED_BASE + r * ROUND_STRIDE),
                    "B2": by_key["B2"].load(r),
                }
                for key, load in single_loads.items():
                    unloaded[key].append(loadgen.run(load, options.unloaded, 1, wrk).latency_ms)
                d = duplicates[-1]
                print(
                    f"bench: round {r + 1}/{options.rounds}: req/s "
                    + ", ".join(line)
                    + f"; D: {d['finan_requests']} Finan request(s), answers {d['statuses']}",
                    flush=True,
                )
        report = summarise_run(bench, scenarios, measured, unloaded, duplicates, options)
        report["seconds"] = round(time.monotonic() - started, 1)
        report["load_generator"] = "wrk" if wrk else "python (bench/loadgen.py)"
        return report
    finally:
        bench.stop()


def summarise_run(bench, scenarios, measured, unloaded, duplicates, options) -> dict[str, Any]:
    results: dict[str, Any] = {}
    cores = os.cpu_count() or 1
    for scenario in scenarios:
        rounds = measured[scenario.key]
        components = {name for r in rounds for name in r["cpu_ms_per_request"]}
        cpu = {
            name: round(_median([r["cpu_ms_per_request"].get(name, 0.0) for r in rounds]), 3)
            for name in sorted(components)
        }
        bench_cpu = _median([r["bench_cpu_ms_per_request"] for r in rounds])
        results[scenario.key] = {
            "label": scenario.label,
            "rps_median": _median([r["rps"] for r in rounds]),
            "rps_rounds": [round(r["rps"], 1) for r in rounds],
            "p50_ms_median": _median([r["latency_ms"]["p50"] for r in rounds]),
            "p99_ms_median": _median([r["latency_ms"]["p99"] for r in rounds]),
            "errors": sum(r["errors"] for r in rounds),
            "server_cpu_ms_per_request": cpu.get(scenario.server),
            "bench_cpu_ms_per_request": round(bench_cpu, 3),
            # The rate the scenario would reach if its processes had every core to themselves.
            "cpu_bound_rps": round(cores * 1000 / bench_cpu, 1) if bench_cpu else None,
            "cpu_ms_per_request_median": cpu,
            "machine_busy_median": round(_median([r["machine_busy"] for r in rounds]), 3),
            "other_load_median": round(_median([r["other_load"] for r in rounds]), 3),
            "busiest_worker_share_rounds": [
                None if r["busiest_worker_share"] is None else round(r["busiest_worker_share"], 2)
                for r in rounds
            ],
        }
    other_load = _median([r["other_load"] for rounds in measured.values() for r in rounds])
    rps = {key: value["rps_median"] for key, value in results.items()}
    unloaded_p50 = {key: _median([x["p50"] for x in v]) for key, v in unloaded.items()}
    memory = {name: bench.servers[name].peak_worker_mb() for name in APPS}
    values = {
        "B1/H": rps["B1"] / rps["H"],
        "B1/N": rps["B1"] / rps["N"],
        "B2/H": rps["B2"] / rps["H"],
        "B1 unloaded p50 ms": unloaded_p50["B1"],
        "peak RSS per bridge worker MB": memory["bridge"],
    }
    targets = {}
    for name, (direction, bound) in TARGETS.items():
        value = values[name]
        met = value is not None and (value >= bound if direction == ">=" else value <= bound)
        targets[name] = {"value": value, "target": f"{direction} {bound}", "met": met}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": machine(),
        "gunicorn": gunicorn_settings(),
        "finan_standin": finan_kind(options),
        "finan_server": FINAN_SERVERS[finan_kind(options)],
        "settings": {
            "rounds": options.rounds,
            "seconds_per_scenario": options.duration,
            "connections": options.connections,
            "unloaded_seconds": options.unloaded,
            "duplicate_callers": options.callers,
            "invoice_rows": SERVICES * ROWS_PER_SERVICE,
        },
        "scenarios": results,
        "ratios": {k: values[k] for k in ("B1/H", "B1/N", "B2/H")}
        | {"B2k/H": rps["B2k"] / rps["H"], "L/H": rps["L"] / rps["H"], "B1/L": rps["B1"] / rps["L"]}
        | {"F/B1": rps["F"] / rps["B1"]},
        # The same ratios from the CPU each request cost (less sensitive to other load).
        "cpu_bound_ratios": {
            f"{a}/{b}": results[a]["cpu_bound_rps"] / results[b]["cpu_bound_rps"]
            for a, b in (
                ("B1", "H"),
                ("B1", "N"),
                ("B2", "H"),
                ("B2k", "H"),
                ("L", "H"),
                ("B1", "L"),
            )
        },
        "other_load_median": round(other_load, 3),
        "unloaded_p50_ms": unloaded_p50,
        "peak_rss_per_worker_mb": memory,
        "duplicates": duplicates,
        "duplicates_ok": all(d["ok"] for d in duplicates),
        "targets": targets,
    }


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"{'':4}{'scenario':34}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'server CPU':>11}{'all CPU':>9}{'CPU-bound':>10}  (CPU in ms per request)"
    )
    for key, value in report["scenarios"].items():
        errors = f"  ({value['errors']} errors)" if value["errors"] else ""
        print(
            f"{key:4}{value['label']:34}{value['rps_median']:7.0f}"
            f"{value['p50_ms_median']:8.2f}{value['p99_ms_median']:8.2f}"
            f"{value['server_cpu_ms_per_request']:11.2f}{value['bench_cpu_ms_per_request']:9.2f}"
            f"{value['cpu_bound_rps'] or 0:10.0f}{errors}"
        )
    shares = {
        key: max(value["busiest_worker_share_rounds"])
        for key, value in report["scenarios"].items()
        if None not in value["busiest_worker_share_rounds"]
    }
    print(
        "busiest worker's share of its server's CPU, worst round (1/workers is even): "
        + ", ".join(f"{key} {share:.2f}" for key, share in shares.items())
    )
    other = report["other_load_median"]
    print(
        f"\nother processes used {100 * other:.0f}% of the machine's CPU during the runs (median)"
    )
    if other > OTHER_LOAD_WARNING:
        print(
            "WARNING: the machine was not quiet; req/s and latencies are lower than this code "
            "can do. The CPU-bound columns and ratios are far less affected."
        )
    kind = report["finan_standin"]
    print(f"Finan stand-in: {kind} ({FINAN_STANDINS[kind]}), served by {report['finan_server']}")
    print()
    unloaded = ", ".join(f"{k} {v:.2f} ms" for k, v in report["unloaded_p50_ms"].items())
    print(f"unloaded median latency (one connection): {unloaded}")
    memory = ", ".join(
        f"{k} {v:.0f} MB" for k, v in report["peak_rss_per_worker_mb"].items() if v is not None
    )
    print(f"peak RSS per gunicorn worker: {memory}")
    print("ratios (req/s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["ratios"].items()))
    cpu_ratios = report["cpu_bound_ratios"].items()
    print("ratios (CPU-bound): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu_ratios))
    for d in report["duplicates"]:
        print(
            f"D: {d['callers']} identical issues -> {d['finan_requests']} Finan request(s), "
            f"answers {d['statuses']}: {'ok' if d['ok'] else 'BROKEN'}"
        )
    print()
    for name, target in report["targets"].items():
        value = target["value"]
        shown = "n/a" if value is None else f"{value:.2f}"
        print(
            f"{'met   ' if target['met'] else 'MISSED'} {name}: {shown} (target {target['target']})"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (about 40 s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per scenario")
    parser.add_argument("--unloaded", type=float, default=2.0, help="seconds per latency run")
    parser.add_argument("--callers", type=int, default=200, help="concurrent issues in D")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python load generator, not wrk"
    )
    parser.add_argument(
        "--full-finan",
        action="store_true",
        help="serve the full Finan stand-in (validates every field, computes Finan's totals) "
        "instead of the fast one, for comparison",
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.duration, options.warmup, options.unloaded = 1, 3.0, 1.0, 1.0
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    # Ctrl-C or a supervisor's TERM: stop the servers this run started, then exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(options)
    print_report(report)
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {options.json}")
    if not report["duplicates_ok"] or any(v["errors"] for v in report["scenarios"].values()):
        sys.exit(1)  # a correctness failure, not a missed speed target
