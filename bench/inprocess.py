"""``python -m bench.inprocess``: the bridge's CPU per request, in one process.

B1 (issue with the invoice in the body, a new invoice each time), B2 (the same issues
again) and L (the same new issues through ``bench.lean_app``, the bridge's parts without
its guarantees) through Flask's test client, against a dedicated Redis and the Finan stand-in (a
separate process, so its CPU is not counted). No gunicorn, no other threads, logs off:
the CPU of the bridge's own code path, far steadier than a rate measured under load, for
comparing two versions of the code. Prints the best and the median of 20-request batches.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from bench.common import CRM_HEADERS, ISSUE_PATH, bridge_environment
from bench.invoice import issue_body
from bench.processes import redis_and_finan

BATCH = 20
FIRST_ID = 5000


def cpu_per_request(client, headers, bodies: dict[int, bytes]) -> tuple[float, float]:
    """(best, median) CPU ms per request over batches of BATCH issues of ``bodies``."""
    ids = sorted(bodies)
    batches = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        began = time.process_time()
        for invoice_id in chunk:
            path = ISSUE_PATH.format(invoice_id=invoice_id)
            response = client.post(path, data=bodies[invoice_id], headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"issue {invoice_id}: {response.status_code} {response.json}")
        batches.append(1000 * (time.process_time() - began) / len(chunk))
    return min(batches), statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="issues per scenario")
    args = parser.parse_args()

    from bench.lean_app import create_app as create_lean_app
    from bridge.config import load_settings
    from bridge.web.app import create_app

    with redis_and_finan("bench-") as (_, redis_url, finan):
        environment = bridge_environment(redis_url, finan.url)
        clients = {
            "B1": create_app(load_settings(environment)).test_client(),
            "L": create_lean_app(environment).test_client(),
        }
        clients["B2"] = clients["B1"]  # B2 issues B1's invoices again
        logging.disable(logging.CRITICAL)
        warm = {i: issue_body(i) for i in range(1, 1 + 2 * BATCH)}
        bodies = {i: issue_body(i) for i in range(FIRST_ID, FIRST_ID + args.requests)}
        for client in clients.values():  # first requests: sessions, connections
            cpu_per_request(client, CRM_HEADERS, warm)
        results = {}
        for key, client in clients.items():
            best, median = cpu_per_request(client, CRM_HEADERS, bodies)
            results[key] = {"best_ms": round(best, 3), "median_ms": round(median, 3)}
            print(f"{key}: CPU per request {best:.2f} ms (best batch), {median:.2f} ms (median)")
        print(json.dumps(results))


if __name__ == "__main__":
    main()
