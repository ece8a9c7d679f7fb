"""The bench's own parts work: its invoice, the naive baseline, and scenario D.

No timing is asserted here (the bench measures; tests check behaviour). Everything runs
against the real stand-ins and Redis of conftest.py, served on loopback.
"""

from __future__ import annotations

import json
from decimal import Decimal

from conftest import CRM_TOKEN

from bench import loadgen
from bench.common import FINAN_CLIENT_ID, FINAN_PREFIX, FINAN_SECRET
from bench.duplicates import Answer, duplicate_issues, summarise
from bench.invoice import bench_invoice, body_template, issue_body
from bench.naive_app import create_app as create_naive_app
from bridge.mapping import MappingConfig, finan_totals, map_invoice
from bridge.sandbox.finan_standin import create_finan_app
from bridge.sandbox.loopback import LoopbackServer
from bridge.sandbox.samples import SANDBOX_PAYMENT_CONFIG, SANDBOX_TAX_IDS
from schemas.tourwell import load_invoice

API = "/api/v1/invoices"


def finan_puts(finan) -> list[dict]:
    with finan.state.lock:
        return [r for r in finan.state.requests if r["method"] == "PUT"]


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
    # The bench's own Finan stand-in (bench.finan_app), with the bench's credentials.
    standin = create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
    with LoopbackServer(standin) as finan:
        client = create_naive_app(redis_url, finan.url).test_client()
        first = client.post(f"{API}/31/issue", data=issue_body(31), content_type="application/json")
        again = client.post(f"{API}/31/issue", data=issue_body(31), content_type="application/json")

    assert first.status_code == 201, first.json
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
