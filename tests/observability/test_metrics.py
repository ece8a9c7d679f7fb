"""GET /metrics after real operations against Redis and the stand-ins on loopback.

Counters live in the process's default registry, shared by every test, so each test reads
a figure before and after and asserts on the difference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import CRM_TOKEN, FINAN_SECRET, OTHER_CRM_TOKEN, TOURWELL_TOKEN, issue
from prometheus_client.parser import text_string_to_metric_families

from bridge.sandbox.samples import sample_invoices

ISSUE_RULE = "/api/v1/invoices/<int:invoice_id>/issue"


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def value(client, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(scrape(client)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_needs_no_token_and_speaks_prometheus_text(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.get_data(True))}
    assert {"bridge_http_requests", "bridge_finan_calls", "bridge_inline_retries"} <= names


def test_requests_are_counted_by_url_rule_and_status_never_by_raw_path(client, crm_headers):
    before = value(client, "bridge_http_requests_total", endpoint=ISSUE_RULE, status="201")
    refused = value(client, "bridge_http_requests_total", endpoint=ISSUE_RULE, status="401")
    timed = value(client, "bridge_http_request_duration_seconds_count", endpoint=ISSUE_RULE)

    assert issue(client, crm_headers).status_code == 201
    assert issue(client, {}, 18).status_code == 401
    client.get("/no/such/path/raw-path-marker")

    text = scrape(client)
    assert value(client, "bridge_http_requests_total", endpoint=ISSUE_RULE, status="201") == (
        before + 1
    )
    assert value(client, "bridge_http_requests_total", endpoint=ISSUE_RULE, status="401") == (
        refused + 1
    )
    assert value(client, "bridge_http_request_duration_seconds_count", endpoint=ISSUE_RULE) == (
        timed + 2
    )
    assert "/api/v1/invoices/17" not in text and "raw-path-marker" not in text
    assert 'endpoint="unmatched"' in text


def test_an_odd_http_method_does_not_make_a_new_series(client):
    before = value(client, "bridge_http_requests_total", endpoint="unmatched", method="other")

    client.open("/healthz", method="BREW")

    assert "BREW" not in scrape(client)
    assert value(client, "bridge_http_requests_total", endpoint="unmatched", method="other") == (
        before + 1
    )


def test_finan_calls_are_counted_by_outcome_with_their_latency(client, crm_headers, finan):
    accepted = value(client, "bridge_finan_calls_total", outcome="accepted")
    rejected = value(client, "bridge_finan_calls_total", outcome="rejected")
    unavailable = value(client, "bridge_finan_calls_total", outcome="unavailable")
    timed = value(client, "bridge_finan_request_duration_seconds_count")

    assert issue(client, crm_headers, 17).status_code == 201
    finan.state.fail_next("client_error")
    assert issue(client, crm_headers, 18).status_code == 502
    finan.state.fail_next("unavailable", count=3)
    assert issue(client, crm_headers, 19).status_code == 202  # queued for a worker

    assert value(client, "bridge_finan_calls_total", outcome="accepted") == accepted + 1
    assert value(client, "bridge_finan_calls_total", outcome="rejected") == rejected + 1
    assert value(client, "bridge_finan_calls_total", outcome="unavailable") == unavailable + 1
    # One HTTP request each for the first two, three inline tries for the last.
    assert value(client, "bridge_finan_request_duration_seconds_count") == timed + 5


def test_inline_retries_are_counted(client, crm_headers, finan):
    before = value(client, "bridge_inline_retries_total", system="finan")
    finan.state.fail_next("server_error", count=2)

    assert issue(client, crm_headers).status_code == 201

    assert value(client, "bridge_inline_retries_total", system="finan") == before + 2


def test_inline_retries_wait_the_backoff_or_finans_retry_after(
    client, crm_headers, finan, retry_sleeps
):
    """The waits are recorded, not slept (tests/conftest.py): the ones computed are checked."""
    finan.state.fail_next("server_error")
    finan.state.fail_next("unavailable")  # answers Retry-After: 1

    assert issue(client, crm_headers).status_code == 201

    backoff, retry_after = retry_sleeps
    assert 0.2 <= backoff <= 0.4  # 0.2 s, and up to 0.2 s of jitter
    assert retry_after == 1.0  # Finan's Retry-After, longer than the backoff's 0.4-0.6 s


def test_the_crms_retry_after_is_honoured_too(client, crm_headers, tourwell, retry_sleeps):
    tourwell.state.fail_next("rate_limited")  # 429 with Retry-After: 1

    assert issue(client, crm_headers).status_code == 201

    assert retry_sleeps == [1.0]


def test_idempotent_replays_are_counted(client, crm_headers):
    before = value(client, "bridge_idempotent_replays_total")
    headers = {**crm_headers, "Idempotency-Key": "metrics-1"}

    issue(client, headers)
    replay = issue(client, headers)

    assert replay.headers["Idempotent-Replayed"] == "true"
    assert value(client, "bridge_idempotent_replays_total") == before + 1


def test_totals_refusals_are_counted_and_other_422s_are_not(client, crm_headers, finan):
    before = value(client, "bridge_totals_refusals_total")
    wrong_total = json.loads(json.dumps(sample_invoices()[17]))
    wrong_total["total_amount"]["base"] = "1,000"
    no_tax_id = json.loads(json.dumps(sample_invoices()[17]))
    no_tax_id["order_info"]["services"][0]["prices"][0]["vat"]["value"] = 7

    assert issue(client, crm_headers, 17, json=wrong_total).status_code == 422
    assert issue(client, crm_headers, 17, json=no_tax_id).status_code == 422

    assert value(client, "bridge_totals_refusals_total") == before + 1


def test_records_by_state_and_queue_depth_are_read_from_redis_at_scrape_time(
    client, crm_headers, finan
):
    assert value(client, "bridge_records", state="issued") == 0
    assert issue(client, crm_headers, 17).status_code == 201
    finan.state.fail_next("unavailable", count=3)
    assert issue(client, crm_headers, 18).status_code == 202  # queued for a worker

    assert value(client, "bridge_records", state="issued") == 1
    assert value(client, "bridge_records", state="queued") == 1
    assert value(client, "bridge_records", state="dead") == 0
    waiting = sum(
        value(client, "bridge_queue_depth", status=status) for status in ("queued", "scheduled")
    )
    assert waiting == 1


def test_metrics_still_answer_while_redis_is_down(environ, finan):
    import redis as redis_lib

    from bridge.config import load_settings
    from bridge.web.app import create_app

    dead = redis_lib.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    client = create_app(load_settings(environ), dead).test_client()

    text = scrape(client)

    assert "bridge_http_requests_total" in text
    assert "bridge_records" not in text and "bridge_queue_depth" not in text


def test_no_secret_appears_in_metrics(client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.fail_next("client_error")
    issue(client, crm_headers, 18)

    text = scrape(client)

    for secret in (CRM_TOKEN, OTHER_CRM_TOKEN, TOURWELL_TOKEN, FINAN_SECRET):
        assert secret not in text


_WORKER = textwrap.dedent(
    """
    import os, sys
    from bridge.web.app import create_app
    from bridge.config import load_settings

    app = create_app(load_settings(os.environ))
    for _ in range(int(sys.argv[1])):
        assert app.test_client().get("/healthz").status_code == 200
    """
)


def test_multiprocess_mode_adds_up_every_processs_counts(environ, client, tmp_path, monkeypatch):
    """Two processes (as gunicorn workers would) write into one directory; one scrape of a
    third process sees the sum."""
    env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for requests in (2, 3):
        subprocess.run([sys.executable, "-c", _WORKER, str(requests)], env=env, check=True)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    assert value(client, "bridge_http_requests_total", endpoint="/healthz", status="200") == 5
