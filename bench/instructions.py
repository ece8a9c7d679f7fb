"""``python -m bench.instructions [--base REV]``: instructions per B1 and B2 request,
counted by valgrind's callgrind, to compare two versions of the code.

CPU time on a shared machine drifts by 10-20 % in an hour; the number of instructions a
request executes does not (same code, same input, ``PYTHONHASHSEED=0``), whatever else the
machine is doing. Each scenario runs twice under callgrind, in one process through Flask's
test client (``bench/instructions_driver.py``): once with only the warm-up, once with
ROUNDS rounds of 20 requests more (the warm-up alone is the same run for both scenarios,
so it is counted once). The difference, divided by those requests, is what one request
costs: start-up and warm-up cancel out. Redis and the Finan stand-in run as
processes of their own, not counted.

With ``--base REV`` the same is counted for a git revision (checked out in a temporary
worktree, run with this checkout's Python environment) and both are printed side by side.
valgrind is installed with apt-get when it is missing. About two minutes per version (three
runs of about 40 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.common import CRM_HEADERS, ISSUE_PATH, bridge_environment
from bench.invoice import issue_body
from bench.loadgen import ensure_program
from bench.processes import REPO, redis_and_finan

DRIVER = Path(__file__).with_name("instructions_driver.py")
BATCH = 20  # requests per round, and warm-up invoices
FIRST_FRESH_ID = 10_000
SCENARIOS = {"B1": "issue, fresh invoice", "B2": "the same issue again"}
_COLLECTED = re.compile(r"Collected : (\d+)")
RUN_TIMEOUT_SECONDS = 900  # one run under callgrind takes about 40 s here


def write_input(path: Path, redis_url: str, finan_url: str, rounds: int) -> None:
    def requests(first: int, count: int) -> list[tuple[str, str]]:
        ids = range(first, first + count)
        return [(ISSUE_PATH.format(invoice_id=i), issue_body(i).decode()) for i in ids]

    given = {
        "environment": bridge_environment(redis_url, finan_url),
        "headers": CRM_HEADERS,
        "warm": requests(1, BATCH),
        "fresh": requests(FIRST_FRESH_ID, rounds * BATCH),
    }
    path.write_text(json.dumps(given))


def collected(valgrind: str, tree: Path, given: Path, scenario: str, rounds: int) -> int:
    """Instructions the driver executed for ``scenario`` with the code of ``tree``."""
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(DRIVER),
        str(given),
        scenario,
        str(rounds),
        "bridge.app" if (tree / "bridge" / "app.py").exists() else "bridge.web.app",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
    )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        tail = "\n".join(result.stderr.splitlines()[-5:])
        raise SystemExit(f"bench: the {scenario} run failed in {tree}:\n{tail}")
    return int(found.group(1))


def per_request(valgrind: str, tree: Path, redis_url: str, given: Path, rounds: int) -> dict:
    """Instructions per request of each scenario, with the code of ``tree``."""
    connection = redis.Redis.from_url(redis_url)

    def run(scenario: str, extra: int) -> int:
        connection.flushall()  # every run starts from an empty Redis
        return collected(valgrind, tree, given, scenario, extra)

    warm_up_only = run("B2", 0)  # with no rounds, both scenarios are the warm-up alone
    counts = {}
    for scenario in SCENARIOS:
        counts[scenario] = round((run(scenario, rounds) - warm_up_only) / (rounds * BATCH))
        print(f"bench: {tree}: {scenario} {counts[scenario]:,} instructions per request")
    return counts


@contextmanager
def git_worktree(revision: str, where: Path) -> Iterator[Path]:
    """``revision`` checked out at ``where``, removed (and forgotten by git) after."""
    git = ["git", "-C", str(REPO), "worktree"]
    try:
        subprocess.run([*git, "add", "--detach", "-q", str(where), revision], check=True)
        yield where
    finally:
        subprocess.run([*git, "remove", "--force", str(where)], check=False, capture_output=True)
        subprocess.run([*git, "prune"], check=False)


def report(counts: dict[str, dict[str, int]]) -> None:
    names = list(counts)
    print("\ninstructions per request (callgrind, PYTHONHASHSEED=0)")
    header = f"{'':4}{'scenario':24}" + "".join(f"{name:>16}" for name in names)
    if len(names) == 2:
        header += f"{'ratio':>9}"
    print(header)
    for scenario, what in SCENARIOS.items():
        values = [counts[name][scenario] for name in names]
        line = f"{scenario:4}{what:24}" + "".join(f"{value:>16,}" for value in values)
        if len(values) == 2:
            line += f"{values[0] / values[1]:>9.3f}"
        print(line)
    if len(names) == 2:
        print(f"ratio: {names[0]} / {names[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--base", help="a git revision to count side by side with this tree")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 20 requests counted")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/instructions.json")
    parser.add_argument("--no-install", action="store_true", help="never apt-get valgrind")
    args = parser.parse_args()
    valgrind = ensure_program("valgrind", install=not args.no_install)
    if valgrind is None:
        raise SystemExit("bench: valgrind is needed to count instructions")

    with redis_and_finan("bench-instructions-") as (workdir, redis_url, finan):
        given = workdir / "input.json"
        write_input(given, redis_url, finan.url, args.rounds)
        counts = {"this tree": per_request(valgrind, REPO, redis_url, given, args.rounds)}
        if args.base:
            with git_worktree(args.base, workdir / "base") as base:
                counts[args.base] = per_request(valgrind, base, redis_url, given, args.rounds)
        report(counts)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(counts, indent=2) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
