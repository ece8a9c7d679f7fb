"""The bench's own parts work: its invoice, the naive baseline, scenario D, and its fast
Finan stand-in (served by uvicorn as the bench serves it, next to the full one under
gunicorn).

No timing is asserted here (the bench measures; tests check behaviour). Everything runs
against the real stand-ins and Redis of conftest.py, served on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from helpers import API, CRM_TOKEN, finan_puts

from bench import instructions, loadgen
from bench.common import (
    CRM_HEADERS,
    FINAN_CLIENT_ID,
    FINAN_PREFIX,
    FINAN_SECRET,
    PAYMENT_CONFIG,
    TAX_IDS,
    bridge_environment,
)
from bench.duplicates import Answer, duplicate_issues, summarise
from bench.invoice import bench_invoice, body_template, issue_body
from bench.lean_app import create_app as create_lean_app
from bench.naive_app import create_app as create_naive_app
from bench.processes import REPO, start_finan
from bridge.integrations.finan.signing import FinanAuth
from bridge.invoices.mapping import MappingConfig, finan_totals, map_invoice
from bridge.sandbox.finan_standin import create_finan_app
from bridge.sandbox.loopback import LoopbackServer
from bridge.sandbox.samples import SANDBOX_PAYMENT_CONFIG, SANDBOX_TAX_IDS
from bridge.store.connection import record_key
from schemas.finan import ResponseEnvelopeSchema, code_class, encode_request
from schemas.tourwell import load_invoice


def test_the_bench_invoice_has_twenty_rows_two_rates_and_a_total_finan_agrees_with():
    invoice = load_invoice(bench_invoice(7))
    rows = [row for s in invoice["order_info"]["services"] for row in s["prices"]]
    assert len(rows) == 20
    assert {row["vat"]["value"] for row in rows} == {Decimal(8), Decimal(10)}
    config = MappingConfig(tax_ids=SANDBOX_TAX_IDS, payment_config=SANDBOX_PAYMENT_CONFIG)
    total, _ = finan_totals(map_invoice(invoice, config))  # map_invoice checks it too
    assert total == invoice["total_amount"].base


def test_the_load_generator_template_renders_the_same_invoice_with_any_id():
    assert body_template().count('"__INVOICE_ID__"') == 1
    assert json.loads(issue_body(123)) == {"data": bench_invoice(123)}


def test_the_naive_chain_issues_one_signed_invoice_and_refuses_a_second(redis_url, redis):
    # The full Finan stand-in (the bench's --full-finan), which validates the body too.
    standin = create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
    with LoopbackServer(standin) as finan:
        client = create_naive_app(redis_url, finan.url).test_client()
        first = client.post(f"{API}/31/issue", data=issue_body(31), content_type="application/json")
        again = client.post(f"{API}/31/issue", data=issue_body(31), content_type="application/json")

    assert first.status_code == 201, first.json
    assert again.status_code == 409
    puts = standin.extensions["finan_standin"].requests_snapshot()
    assert [(r["method"], r["outcome"]) for r in puts] == [("PUT", "created")]  # signed, valid


def test_the_lean_chain_issues_one_signed_invoice_checks_the_token_and_refuses_a_second(
    redis_url, redis
):
    standin = create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
    with LoopbackServer(standin) as finan:
        client = create_lean_app(bridge_environment(redis_url, finan.url)).test_client()
        path, body = f"{API}/32/issue", issue_body(32)
        stranger = client.post(path, data=body, headers={"Authorization": "Bearer nobody"})
        first = client.post(path, data=body, headers=CRM_HEADERS)
        again = client.post(path, data=body, headers=CRM_HEADERS)

    assert stranger.status_code == 401
    assert first.status_code == 201, first.json
    assert (
        Decimal(first.json["data"]["total_amount"])
        == load_invoice(bench_invoice(32))["total_amount"].base
    )
    assert again.status_code == 409
    puts = standin.extensions["finan_standin"].requests_snapshot()
    assert [(r["method"], r["outcome"]) for r in puts] == [("PUT", "created")]  # signed, valid


def test_duplicate_issues_reach_finan_once_and_every_caller_gets_201_or_409(app, finan):
    with LoopbackServer(app) as bridge:
        answers = duplicate_issues(bridge.url, CRM_TOKEN, 41, issue_body(41), callers=20)

    verdict = summarise(answers, len(finan_puts(finan)))
    assert verdict["finan_requests"] == 1
    assert verdict["ok"], verdict
    assert sum(verdict["statuses"].values()) == 20


def test_the_verdict_fails_when_finan_got_two_requests_or_an_answer_is_missing():
    good = [Answer(201, None), Answer(409, "2")]
    assert summarise(good, 1)["ok"]
    assert not summarise(good, 2)["ok"]
    assert not summarise([Answer(201, None), Answer(None, None)], 1)["ok"]
    assert not summarise([Answer(201, None), Answer(409, None)], 1)["ok"]


def test_the_python_load_generator_issues_a_fresh_invoice_per_request(app, finan, tmp_path):
    # The fallback for a machine without wrk: its connections interleave the invoice ids,
    # so every request is a new invoice and none meets another in flight.
    template = tmp_path / "issue-template.json"
    template.write_text(body_template(), "utf-8")
    auth = (("Authorization", f"Bearer {CRM_TOKEN}"), ("Content-Type", "application/json"))
    with LoopbackServer(app) as bridge:
        load = loadgen.Load(bridge.url + "/", "issue", (str(template), "1000"), auth)
        result = loadgen.run(load, seconds=0.5, connections=2, wrk=None)

    assert result.requests > 0 and result.failed == 0, result.errors
    paths = [r["path"] for r in finan_puts(finan)]
    assert len(paths) == len(set(paths)) == result.requests


# --- the Finan stand-ins the bench serves ----------------------------------------------------


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """The fast (uvicorn) and the full (gunicorn) Finan stand-in, as ``python -m bench``
    starts them."""
    logs = tmp_path_factory.mktemp("finan-logs")
    env = dict(os.environ)
    started = {}
    try:
        started["fast"] = start_finan(env, logs)
        started["full"] = start_finan(env, logs, full=True)
        yield started
    finally:
        for server in started.values():
            server.stop()


def bench_finan_body() -> bytes:
    config = MappingConfig(tax_ids=TAX_IDS, payment_config=PAYMENT_CONFIG)
    return encode_request(map_invoice(load_invoice(bench_invoice(5)), config))


def put(server, invoice_id: str, body: bytes, auth: FinanAuth | None) -> requests.Response:
    base = server.url + FINAN_PREFIX
    url = f"{base}/api/v1/invoice/update-invoice/{invoice_id}"
    headers = {"Content-Type": "application/json"}
    return requests.put(url, data=body, headers=headers, auth=auth, timeout=10)


def logged(server) -> list[dict]:
    answer = requests.get(server.url + "/_standin/requests", timeout=10)
    assert answer.status_code == 200
    return answer.json()["requests"]


def reset(server) -> None:
    assert requests.post(server.url + "/_standin/reset", timeout=10).status_code == 200


def signer(server, client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, skew=0.0) -> FinanAuth:
    return FinanAuth(client_id, secret, server.url + FINAN_PREFIX, lambda: time.time() + skew)


REFUSALS = {
    # name: (FinanAuth arguments, or None for no signature; id; body; status, code)
    "wrong secret": ({"secret": "not-the-secret"}, None, None, 401, 104010),
    "unknown client id": ({"client_id": "someone-else"}, None, None, 401, 104010),
    "signed 31 s ago": ({"skew": -31.0}, None, None, 401, 104010),
    "signed 31 s ahead": ({"skew": 31.0}, None, None, 401, 104010),
    "no signature": (None, None, None, 401, 104010),
    "id not a UUID": ({}, "HD-42", None, 400, 104000),
    "body not JSON": ({}, None, b"value_at=2026-11-20", 400, 104000),
    "body not UTF-8": ({}, None, b'{"items": "\xff"}', 400, 104000),
    "body not an object": ({}, None, b"[]", 400, 104000),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_the_fast_finan_standin_refuses_what_the_full_one_refuses_with_its_answer(standins, case):
    auth_args, invoice_id, body, status, code = REFUSALS[case]
    answers = {}
    for kind, server in standins.items():
        auth = None if auth_args is None else signer(server, **auth_args)
        answer = put(server, invoice_id or str(uuid.uuid4()), body or bench_finan_body(), auth)
        envelope = answer.json()
        # The seconds in a stale-signature message may differ by one between the two.
        message = re.sub(r"[0-9]+", "N", envelope["message"]["content"])
        answers[kind] = (answer.status_code, envelope["code"], message, envelope["data"])

    assert answers["fast"] == answers["full"]
    assert answers["fast"][:2] == (status, code)


def test_the_fast_finan_standin_takes_a_signed_invoice_and_counts_every_request(standins):
    fast, full = standins["fast"], standins["full"]
    reset(fast)
    invoice_id = str(uuid.uuid4())
    body = bench_finan_body()
    read = ResponseEnvelopeSchema().load  # what the bridge's Finan client reads

    refused = put(fast, invoice_id, body, signer(fast, secret="not-the-secret"))
    first = put(fast, invoice_id, body, signer(fast))
    again = put(fast, invoice_id, body, signer(fast))
    by_full = read(put(full, invoice_id, body, signer(full)).json())

    assert refused.status_code == 401
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.headers["server"] == "uvicorn"  # the server the bench measures with
    first, again = read(first.json()), read(again.json())
    assert (first["code"], again["code"]) == (102001, 102000)  # created, then updated
    assert code_class(first["code"]) == code_class(again["code"]) == "success"
    assert first["data"]["id"] == invoice_id
    assert first["data"]["order_code"] == again["data"]["order_code"] == "HD1"
    assert first["data"]["system_code"]
    # For the bench's invoice, the fast stand-in's plain sum is exactly Finan's total.
    totals = (first["data"]["total_amount"], first["data"]["tax_amount"])
    assert totals == (by_full["data"]["total_amount"], by_full["data"]["tax_amount"])
    assert totals[0] > totals[1] > 0

    log = logged(fast)
    path = f"/api/v1/invoice/update-invoice/{invoice_id}"
    assert [(r["method"], r["path"], r["status"], r["outcome"]) for r in log] == [
        ("PUT", path, 401, "unauthorized"),
        ("PUT", path, 200, "created"),
        ("PUT", path, 200, "updated"),
    ]
    reset(fast)
    assert logged(fast) == []


def test_the_fast_finan_standin_refuses_items_it_cannot_sum(standins):
    fast = standins["fast"]
    reset(fast)
    body = json.dumps({"items": [{"price": 100_000, "quantity": "two"}]}).encode()

    answer = put(fast, str(uuid.uuid4()), body, signer(fast))

    assert answer.status_code == 400
    assert answer.json()["code"] == 104000 and answer.json()["data"] is None
    assert [r["outcome"] for r in logged(fast)] == ["invalid"]


# --- the instruction counter's workload ----------------------------------------------------


def run_driver(given: Path, scenario: str) -> subprocess.CompletedProcess:
    """``bench/instructions_driver.py`` run plainly (no valgrind), one round."""
    command = [
        sys.executable,
        str(instructions.DRIVER),
        str(given),
        scenario,
        "1",
        "bridge.web.app",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("scenario", "finan_requests"), [("B1", 40), ("B2", 20)])
def test_the_instruction_counters_workload_issues_what_it_says(
    standins, redis_url, redis, tmp_path, scenario, finan_requests
):
    """The driver ``bench.instructions`` runs under valgrind, run plainly: one round of 20
    after the 20 warm-up issues; only B1's reach Finan (B2 repeats the warm-up ones)."""
    fast = standins["fast"]
    reset(fast)
    given = tmp_path / "input.json"
    instructions.write_input(given, redis_url, fast.url, rounds=1)

    done = run_driver(given, scenario)

    assert done.returncode == 0, done.stderr
    puts = [r for r in logged(fast) if r["method"] == "PUT"]
    assert len(puts) == finan_requests
    assert redis.exists(record_key(instructions.FIRST_FRESH_ID)) == (scenario == "B1")


def test_the_instruction_counters_workload_fails_loudly_on_an_answer_other_than_201(
    standins, redis_url, redis, tmp_path
):
    given = tmp_path / "input.json"
    instructions.write_input(given, redis_url, standins["fast"].url, rounds=1)
    broken = json.loads(given.read_text())
    broken["headers"]["Authorization"] = "Bearer not-the-token"
    given.write_text(json.dumps(broken))

    done = run_driver(given, "B2")

    assert done.returncode != 0
    assert "401" in done.stderr
