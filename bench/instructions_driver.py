"""The workload ``bench.instructions`` counts under callgrind; run by its path, not imported.

``python instructions_driver.py INPUT SCENARIO ROUNDS APP_MODULE``: build the bridge from the
settings in INPUT (JSON written by ``bench.instructions``), issue its warm-up invoices,
then ROUNDS rounds of the scenario through Flask's test client, logs off:
B1 issues the next fresh invoices, B2 the warm-up ones again. It imports only the
bridge's ``create_app`` (from APP_MODULE: ``bridge.web.app``, or ``bridge.app`` before
0.3) and ``load_settings``, from whichever tree ``PYTHONPATH`` names, so one driver
serves the code of any revision. Exits non-zero unless every answer is 201.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys

from bridge.config import load_settings


def main() -> None:
    path, scenario, rounds, app_module = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    create_app = importlib.import_module(app_module).create_app
    with open(path) as file:
        given = json.load(file)
    client = create_app(load_settings(given["environment"])).test_client()
    logging.disable(logging.CRITICAL)
    headers = given["headers"]
    warm, fresh = given["warm"], given["fresh"]

    def issue(path: str, body: str) -> None:
        response = client.post(path, data=body, headers=headers)
        if response.status_code != 201:
            sys.exit(f"{path}: {response.status_code} {response.get_data(as_text=True)}")

    for path, body in warm:
        issue(path, body)
    if scenario == "B1":
        for path, body in fresh[: rounds * len(warm)]:
            issue(path, body)
    else:
        for _ in range(rounds):
            for path, body in warm:
                issue(path, body)


if __name__ == "__main__":
    main()
