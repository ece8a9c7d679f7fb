"""The CRM-facing API against a real Redis and the real stand-ins on loopback.

One test per status code of docs/contract/http.md#errors, per transition rule, and per layer of
idempotency. Finan's request log (the stand-in's) is the witness of what was sent.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid

import pytest
import redis as redis_lib
from helpers import API, CRM_TOKEN, OTHER_CRM_TOKEN, finan_puts, issue

from bridge.config import load_settings
from bridge.integrations.finan.client import FinanClient
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.mapping import MappingConfig
from bridge.invoices.operations import InvoiceOperations
from bridge.invoices.resync import ResyncBatches
from bridge.sandbox.samples import sample_invoices
from bridge.store.connection import lock_key
from bridge.web.app import create_app


def wait_for(condition, what: str, deadline: float = 60.0) -> None:
    """Poll ``condition`` until it holds, failing after a generous ``deadline``."""
    give_up_at = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up_at:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def with_lock_timeout(app, retry_sleep, seconds: float) -> None:
    """``app`` serving with invoice locks of ``seconds``: its operations built with the
    public constructors, as ``build_services`` builds them, with the tests' recording
    ``retry_sleep`` (tests/conftest.py)."""
    services = app.extensions["bridge"]
    settings, connection = services.settings, services.redis
    operations = InvoiceOperations(
        connection,
        services.records,
        TourwellClient(settings, connection, sleep=retry_sleep),
        FinanClient(settings, sleep=retry_sleep),
        MappingConfig.from_settings(settings),
        settings.retry_schedule,
        lock_timeout=seconds,
    )
    app.extensions["bridge"] = dataclasses.replace(
        services,
        operations=operations,
        batches=ResyncBatches(connection, operations, settings.tourwell_rate_limit_per_min),
    )


def test_issue_pulls_the_invoice_and_answers_201_with_the_record(client, crm_headers, finan):
    response = issue(client, crm_headers)

    assert response.status_code == 201, response.json
    body = response.json
    assert body["success"] is True
    data = body["data"]
    assert data["invoice_id"] == 17
    assert data["state"] == "issued"
    assert data["code"] == sample_invoices()[17]["code"]
    assert data["provider_order_code"].startswith("HD")
    assert data["provider_system_code"]
    assert [r["outcome"] for r in finan_puts(finan)] == ["created"]


def test_the_finan_id_is_derived_from_the_crm_invoice_url(client, crm_headers, finan, settings):
    response = issue(client, crm_headers)

    expected = uuid.uuid5(uuid.NAMESPACE_URL, f"{settings.tourwell_base_url}/api/v1/invoices/17")
    assert response.json["data"]["provider_invoice_id"] == str(expected)
    assert str(expected) in finan.state.invoices


def test_the_total_finan_computed_matches_the_crm_invoice(client, crm_headers):
    from decimal import Decimal

    response = issue(client, crm_headers)

    crm_total = Decimal(sample_invoices()[17]["total_amount"]["base"].replace(",", ""))
    assert Decimal(response.json["data"]["total_amount"]) == crm_total


@pytest.mark.parametrize("wrapped", [True, False])
def test_issue_with_the_invoice_in_the_body_does_not_pull(client, crm_headers, tourwell, wrapped):
    invoice = sample_invoices()[18]
    payload = {"data": invoice} if wrapped else invoice

    response = issue(client, crm_headers, 18, json=payload)

    assert response.status_code == 201, response.json
    assert not [r for r in tourwell.state.requests if r["method"] == "GET"]


def test_update_pulls_lays_fields_over_and_answers_200(client, crm_headers, finan):
    issue(client, crm_headers)

    response = client.put(
        f"{API}/17", headers=crm_headers, json={"company_name": "Công ty TNHH Mới"}
    )

    assert response.status_code == 200, response.json
    assert response.json["data"]["state"] == "issued"
    puts = finan_puts(finan)
    assert len(puts) == 2
    assert puts[-1]["body"]["customer"]["name"] == "Công ty TNHH Mới"


def test_cancel_answers_201_with_tourwells_exact_message_and_empties_the_invoice(
    client, crm_headers, finan
):
    issue(client, crm_headers)

    response = client.post(
        f"{API}/17/cancel", headers=crm_headers, json={"cancel_note": "Khách đổi lịch"}
    )

    assert response.status_code == 201, response.json
    assert response.json["message"] == "Invoice Canceled successfully"
    assert response.json["data"]["state"] == "cancelled"
    assert response.json["data"]["cancel_note"] == "Khách đổi lịch"
    sent = finan_puts(finan)[-1]["body"]
    assert sent["items"] == [] and sent["payment_config"] == []


def test_cancel_with_no_body_is_allowed(client, crm_headers):
    issue(client, crm_headers)

    assert client.post(f"{API}/17/cancel", headers=crm_headers).status_code == 201


def test_get_returns_the_record(client, crm_headers):
    issue(client, crm_headers)

    response = client.get(f"{API}/17", headers=crm_headers)

    assert response.status_code == 200
    assert response.json["data"]["state"] == "issued"


# --- 400, 401, 404, 413, 415 ---


def test_malformed_json_is_400(client, crm_headers):
    response = issue(client, crm_headers, data=b'{"data": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json["success"] is False
    assert "JSON" in response.json["message"]


def test_nan_is_not_json_400(client, crm_headers):
    response = client.put(
        f"{API}/17",
        data=b'{"total_amount": NaN}',
        headers={**crm_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400


def _with(path: list, value) -> dict:
    invoice = json.loads(json.dumps(sample_invoices()[17]))
    target = invoice
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return invoice


def test_a_lone_surrogate_escape_is_400_and_nothing_is_sent(client, crm_headers, finan):
    # Half of a pair: not a character, can't be UTF-8 (json.dumps writes it as "\ud800").
    body = json.dumps({"data": _with(["code"], "HD\ud800")})
    response = issue(client, crm_headers, data=body, content_type="application/json")

    assert response.status_code == 400, response.json
    assert "surrogate" in response.json["message"]
    assert finan_puts(finan) == []


def test_a_surrogate_pair_escape_is_a_character_and_is_issued(client, crm_headers, finan):
    body = json.dumps({"data": _with(["code"], "HD\U0001f600")})  # written as two escapes
    response = issue(client, crm_headers, data=body, content_type="application/json")

    assert response.status_code == 201, response.json
    assert response.json["data"]["code"] == "HD\U0001f600"
    assert finan_puts(finan)[0]["body"]["reference_code"] == "HD\U0001f600"


def test_a_cancel_note_with_a_lone_surrogate_is_400_and_the_invoice_stays_issued(
    client, crm_headers, finan
):
    assert issue(client, crm_headers).status_code == 201
    cancel = client.post(
        f"{API}/17/cancel",
        data=rb'{"cancel_note": "\udc00"}',
        headers={**crm_headers, "Content-Type": "application/json"},
    )
    record = client.get(f"{API}/17", headers=crm_headers).json["data"]

    assert cancel.status_code == 400, cancel.json
    assert len(finan_puts(finan)) == 1  # the issue only: Finan and the record still agree
    assert record["state"] == "issued"


def test_a_json_number_is_read_exactly_not_as_a_float(client, crm_headers, finan):
    # The CRM's total written as a JSON number with more digits than a float holds: as a
    # float it would be x.5 and round up past the rows' total; read exactly, it rounds to it.
    total = int(sample_invoices()[17]["total_amount"]["base"].replace(",", ""))
    invoice = _with(["total_amount", "base"], "__TOTAL__")
    body = json.dumps({"data": invoice}).replace('"__TOTAL__"', f"{total}.4999999999999999")
    response = issue(client, crm_headers, data=body, content_type="application/json")

    assert response.status_code == 201, response.json
    assert response.json["data"]["total_amount"] == str(total)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {CRM_TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_a_missing_or_wrong_token_is_401(client, headers, finan):
    response = issue(client, headers)
    assert response.status_code == 401
    assert response.json["success"] is False
    assert finan_puts(finan) == []


def test_every_rotated_crm_token_is_accepted(client):
    response = issue(client, {"Authorization": f"Bearer {OTHER_CRM_TOKEN}"})
    assert response.status_code == 201


def test_an_invoice_unknown_to_the_crm_is_404(client, crm_headers):
    response = issue(client, crm_headers, 999)
    assert response.status_code == 404
    assert "999" in response.json["message"]


def test_get_of_an_invoice_unknown_to_the_bridge_is_404(client, crm_headers):
    assert client.get(f"{API}/17", headers=crm_headers).status_code == 404


def test_an_unknown_route_is_404_in_the_envelope(client, crm_headers):
    response = client.get("/api/v1/nothing", headers=crm_headers)
    assert response.status_code == 404
    assert response.json["success"] is False


def test_a_body_over_1_mib_is_413(client, crm_headers):
    big = json.dumps({"data": {"id": 17, "padding": "x" * (1024 * 1024)}}).encode()
    response = issue(client, crm_headers, data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.json["success"] is False


def test_a_chunked_body_over_1_mib_is_413_not_cut_and_parsed(app, crm_headers):
    import requests

    from bridge.sandbox.loopback import LoopbackServer

    big = json.dumps({"data": {"id": 17, "padding": "x" * (1024 * 1024)}}).encode()
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # no Content-Length

    with LoopbackServer(app) as server:
        response = requests.post(
            f"{server.url}{API}/17/issue",
            data=chunks,
            headers={**crm_headers, "Content-Type": "application/json"},
            timeout=30,
        )

    assert response.status_code == 413, response.text


def test_a_body_that_is_not_json_is_415(client, crm_headers):
    response = issue(client, crm_headers, data=b"id=17", content_type="text/plain")
    assert response.status_code == 415


# --- 409: in flight, and the transition rules ---


def test_an_operation_in_flight_on_the_same_invoice_is_409_with_retry_after(
    client, crm_headers, redis, finan
):
    holder = redis.lock(lock_key(17), timeout=30)
    assert holder.acquire(blocking=False)
    try:
        response = issue(client, crm_headers)
    finally:
        holder.release()

    assert response.status_code == 409
    assert int(response.headers["Retry-After"]) >= 1
    assert finan_puts(finan) == []


def test_update_before_issue_is_409(client, crm_headers, finan):
    response = client.put(f"{API}/17", headers=crm_headers, json={"note": "x"})
    assert response.status_code == 409
    assert finan_puts(finan) == []


def test_cancel_before_issue_is_409(client, crm_headers):
    assert client.post(f"{API}/17/cancel", headers=crm_headers).status_code == 409


def test_update_after_cancel_is_409(client, crm_headers):
    issue(client, crm_headers)
    client.post(f"{API}/17/cancel", headers=crm_headers)

    response = client.put(f"{API}/17", headers=crm_headers, json={"note": "late"})

    assert response.status_code == 409
    assert "cancelled" in response.json["message"]


def test_issue_after_cancel_is_409(client, crm_headers):
    issue(client, crm_headers)
    client.post(f"{API}/17/cancel", headers=crm_headers)

    assert issue(client, crm_headers).status_code == 409


def test_a_second_issue_with_different_content_is_409(client, crm_headers, finan):
    invoice = sample_invoices()[18]
    issue(client, crm_headers, 18, json=invoice)
    changed = json.loads(json.dumps(invoice))
    changed["request_info"]["company_name"] = "Another company"

    response = issue(client, crm_headers, 18, json=changed)

    assert response.status_code == 409
    assert "PUT /api/v1/invoices/18" in response.json["message"]
    assert len(finan_puts(finan)) == 1


def test_a_repeated_cancel_is_answered_from_the_record(client, crm_headers, finan):
    issue(client, crm_headers)
    client.post(f"{API}/17/cancel", headers=crm_headers)

    response = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert response.status_code == 201
    assert response.json["message"] == "Invoice Canceled successfully"
    assert len(finan_puts(finan)) == 2


# --- 422 ---


def test_a_vat_rate_without_a_tax_id_is_422_naming_the_setting(client, crm_headers, finan):
    invoice = json.loads(json.dumps(sample_invoices()[17]))
    invoice["order_info"]["services"][0]["prices"][0]["vat"]["value"] = 7

    response = issue(client, crm_headers, 17, json=invoice)

    assert response.status_code == 422
    assert "PROVIDER_TAX_IDS" in json.dumps(response.json)
    assert finan_puts(finan) == []


def test_totals_that_disagree_are_422_naming_both_figures(client, crm_headers, finan):
    invoice = json.loads(json.dumps(sample_invoices()[17]))
    invoice["total_amount"]["base"] = "1,000"

    response = issue(client, crm_headers, 17, json=invoice)

    assert response.status_code == 422
    assert "1,000" in response.json["message"] or "1000" in response.json["message"]
    assert finan_puts(finan) == []


def test_an_invoice_body_for_another_id_is_422(client, crm_headers):
    response = issue(client, crm_headers, 17, json=sample_invoices()[18])
    assert response.status_code == 422


def test_an_update_field_of_the_wrong_type_is_422(client, crm_headers):
    issue(client, crm_headers)
    response = client.put(f"{API}/17", headers=crm_headers, json={"note": {"not": "a string"}})
    assert response.status_code == 422
    assert "note" in response.json["errors"]


# --- 502 and 503 ---


def test_a_finan_rejection_is_502_with_finans_message_and_code_and_the_record_failed(
    client, crm_headers, finan
):
    finan.state.fail_next("client_error")

    response = issue(client, crm_headers)

    assert response.status_code == 502
    assert "104001" in json.dumps(response.json)
    assert len(finan_puts(finan)) == 1  # a client-class code is never retried
    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert record["state"] == "failed"
    assert record["last_error"]["code"] == 104001


def test_a_failed_issue_can_be_issued_again(client, crm_headers, finan):
    finan.state.fail_next("client_error")
    issue(client, crm_headers)

    response = issue(client, crm_headers)

    assert response.status_code == 201
    assert response.json["data"]["state"] == "issued"
    assert response.json["data"]["last_error"] is None


@pytest.mark.parametrize("repeat", ["same bytes", "same content", "pulled"])
def test_the_issue_repeated_after_a_rejected_update_answers_201_and_leaves_the_update_failed(
    app, client, crm_headers, finan, repeat
):
    from schemas.finan import decode_request

    body = json.dumps(sample_invoices()[18])
    first = issue(client, crm_headers, 18, data=body, content_type="application/json")
    assert first.status_code == 201
    finan.state.fail_next("client_error")
    update = client.put(f"{API}/18", headers=crm_headers, json={"company_address": "12 Hàng Bạc"})
    assert update.status_code == 502
    sent = len(finan_puts(finan))
    again = {
        "same bytes": {"data": body, "content_type": "application/json"},
        "same content": {"json": sample_invoices()[18]},  # laid out differently
        "pulled": {},  # no invoice in the body: the CRM's copy, the same invoice
    }[repeat]

    response = issue(client, crm_headers, 18, **again)

    assert response.status_code == 201, response.json  # Finan holds the issue already
    assert response.json["message"] == "Invoice already issued; nothing changed"
    assert response.json["data"]["state"] == "failed"
    assert len(finan_puts(finan)) == sent
    records = app.extensions["bridge"].operations.records
    record = records.get(18)
    assert (record.state, record.last_error["code"]) == ("failed", 104001)
    assert record.pending.operation == "update"  # still there for an operator
    assert decode_request(record.pending.body)["customer"]["address"] == "12 Hàng Bạc"
    assert records.ids_in_state("failed") == [18]
    latest = records.history(18)[0]
    assert (latest.operation, latest.outcome) == ("update", "failed")


def test_finan_blips_are_retried_inline(client, crm_headers, finan):
    finan.state.fail_next("server_error", count=2)

    response = issue(client, crm_headers)

    assert response.status_code == 201
    assert [r["outcome"] for r in finan_puts(finan)][-1] == "created"
    assert len(finan_puts(finan)) == 3


def test_finan_down_after_the_inline_retries_is_202_queued(client, crm_headers, finan, redis):
    finan.state.fail_next("unavailable", count=10)

    response = issue(client, crm_headers)

    assert response.status_code == 202
    assert response.json["data"]["state"] == "queued"
    assert len(finan_puts(finan)) == 3  # the inline tries, then the queue takes over
    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert record["state"] == "queued"
    assert "503" in record["last_error"]["message"]
    assert redis.zcard("rq:scheduled:bridge") == 1  # its job waits for the first delay


def test_a_crm_refusing_the_bridges_token_is_502_naming_the_setting(environ, redis, crm_headers):
    app = create_app(load_settings({**environ, "TOURWELL_API_TOKEN": "revoked"}), redis)

    response = app.test_client().post(f"{API}/17/issue", headers=crm_headers)

    assert response.status_code == 502
    assert "TOURWELL_API_TOKEN" in response.json["message"]


def test_a_crm_that_keeps_failing_is_503_with_retry_after(client, crm_headers, tourwell):
    tourwell.state.fail_next("unavailable", count=10)

    response = issue(client, crm_headers)

    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_redis_unavailable_is_503_and_nothing_is_sent(environ, crm_headers, finan):
    dead = redis_lib.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    app = create_app(load_settings(environ), dead)

    response = app.test_client().post(f"{API}/17/issue", headers=crm_headers)

    assert response.status_code == 503
    assert response.json["success"] is False
    assert finan_puts(finan) == []
    assert app.test_client().get("/readyz").status_code == 503


# --- the content layer ---


def test_a_repeated_issue_sends_nothing_and_answers_201(client, crm_headers, finan):
    first = issue(client, crm_headers)
    second = issue(client, crm_headers)

    assert second.status_code == 201
    assert second.json["data"] == first.json["data"]
    assert len(finan_puts(finan)) == 1


def test_the_same_issue_request_again_is_answered_from_the_record_without_the_lock(
    client, crm_headers, redis, finan
):
    body = json.dumps(sample_invoices()[18])
    first = issue(client, crm_headers, 18, data=body, content_type="application/json")
    holder = redis.lock(lock_key(18), timeout=30)  # another operation is in flight
    assert holder.acquire(blocking=False)
    try:
        same_bytes = issue(client, crm_headers, 18, data=body, content_type="application/json")
        same_content = issue(client, crm_headers, 18, json=sample_invoices()[18])
    finally:
        holder.release()

    assert same_bytes.status_code == 201, same_bytes.json
    assert same_bytes.json["message"] == "Invoice already issued; nothing changed"
    assert same_bytes.json["data"] == first.json["data"]
    assert same_content.status_code == 409  # laid out differently: mapped again, under the lock
    assert len(finan_puts(finan)) == 1


def test_the_first_issue_request_after_an_update_is_mapped_again_and_refused(
    client, crm_headers, finan
):
    body = json.dumps(sample_invoices()[18])
    issue(client, crm_headers, 18, data=body, content_type="application/json")
    updated = client.put(f"{API}/18", headers=crm_headers, json={"company_address": "12 Hàng Bạc"})
    assert updated.status_code == 200, updated.json

    response = issue(client, crm_headers, 18, data=body, content_type="application/json")

    assert response.status_code == 409  # Finan holds the update now, not that issue
    assert len(finan_puts(finan)) == 2


def test_the_first_issue_request_after_a_cancel_is_409(client, crm_headers, finan):
    body = json.dumps(sample_invoices()[18])
    issue(client, crm_headers, 18, data=body, content_type="application/json")
    client.post(f"{API}/18/cancel", headers=crm_headers)

    response = issue(client, crm_headers, 18, data=body, content_type="application/json")

    assert response.status_code == 409
    assert "cancelled" in response.json["message"]


def test_an_update_that_changes_nothing_sends_nothing_and_answers_200(client, crm_headers, finan):
    issue(client, crm_headers)

    response = client.put(f"{API}/17", headers=crm_headers, json={})

    assert response.status_code == 200
    assert len(finan_puts(finan)) == 1


def test_an_undated_invoice_keeps_its_first_date_so_a_repeat_sends_nothing(
    client, crm_headers, finan
):
    invoice = json.loads(json.dumps(sample_invoices()[18]))
    invoice["created_at"] = invoice["request_info"]["request_at"] = None  # dated "now"
    first = issue(client, crm_headers, 18, json=invoice)
    time.sleep(0.01)  # "now" has moved on: only the kept date maps to the same bytes

    # Laid out differently, so that it is mapped again rather than recognised by its bytes.
    reformatted = json.dumps(invoice, indent=2)
    repeat = issue(client, crm_headers, 18, data=reformatted, content_type="application/json")

    assert first.status_code == repeat.status_code == 201, repeat.json
    assert len(finan_puts(finan)) == 1


def test_the_bridges_own_write_back_echoed_as_an_update_sends_nothing(client, crm_headers, finan):
    data = issue(client, crm_headers).json["data"]
    echo = {"total_amount": data["total_amount"], "lookup_url": "https://finan.example/x"}

    response = client.put(f"{API}/17", headers=crm_headers, json=echo)

    assert response.status_code == 200
    assert response.json["data"]["lookup_url"] == "https://finan.example/x"
    assert len(finan_puts(finan)) == 1


# --- the request layer: Idempotency-Key ---


def test_the_same_key_and_body_replays_the_stored_response(client, crm_headers, finan):
    headers = {**crm_headers, "Idempotency-Key": "k-1"}
    first = client.put(f"{API}/17", headers=headers, json={"note": "a"})  # 409: not stored
    assert first.status_code == 409
    issued = issue(client, headers)
    replay = issue(client, headers)

    assert issued.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in issued.headers
    assert replay.json == issued.json
    assert len(finan_puts(finan)) == 1


def test_the_same_key_with_another_body_is_422(client, crm_headers):
    headers = {**crm_headers, "Idempotency-Key": "k-2"}
    issue(client, headers, 18, json=sample_invoices()[18])
    other = json.loads(json.dumps(sample_invoices()[18]))
    other["code"] = "HD999"

    response = issue(client, headers, 18, json=other)

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json["errors"]


def test_failures_are_not_stored_so_the_key_can_be_retried(client, crm_headers, tourwell):
    headers = {**crm_headers, "Idempotency-Key": "k-3"}
    tourwell.state.fail_next("unavailable", count=3)  # every inline pull fails
    assert issue(client, headers).status_code == 503

    response = issue(client, headers)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_a_body_that_is_not_json_under_a_key_is_400_and_the_key_stays_free(
    client, crm_headers, finan
):
    headers = {**crm_headers, "Idempotency-Key": "k-json"}
    body = json.dumps(sample_invoices()[18])

    broken = issue(client, headers, 18, data=body[:-1], content_type="application/json")
    response = issue(client, headers, 18, data=body, content_type="application/json")

    assert broken.status_code == 400
    assert response.status_code == 201, response.json
    assert "Idempotent-Replayed" not in response.headers
    assert len(finan_puts(finan)) == 1


def test_keys_are_scoped_by_caller_token(client, crm_headers):
    issue(client, {**crm_headers, "Idempotency-Key": "shared"})

    response = issue(
        client, {"Authorization": f"Bearer {OTHER_CRM_TOKEN}", "Idempotency-Key": "shared"}
    )

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_a_key_in_flight_is_409_with_retry_after(app, crm_headers, finan):
    # The first request is held at Finan for 5 s, far longer than the second needs (and
    # well within the bridge's 10 s read timeout, so it is answered, not retried).
    finan.state.fail_next("hang", delay=5)
    headers = {**crm_headers, "Idempotency-Key": "slow"}
    answers = {}
    first = threading.Thread(
        target=lambda: answers.setdefault(
            "first", app.test_client().post(f"{API}/17/issue", headers=headers)
        )
    )
    first.start()
    # The fault is taken when the first request reaches Finan.
    wait_for(lambda: not finan.state.pending_faults(), "the first request to reach Finan")

    second = app.test_client().post(f"{API}/17/issue", headers=headers)
    first.join()

    assert second.status_code == 409
    assert "Idempotency-Key" in second.json["message"]  # the request layer, not the lock
    assert "Retry-After" in second.headers
    assert answers["first"].status_code == 201


# --- the concurrency promise ---


def test_20_identical_issues_at_once_make_one_finan_request(settings, redis, finan):
    import requests

    from bridge.sandbox.loopback import LoopbackServer

    app = create_app(settings, redis)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def send(url: str) -> None:
        barrier.wait()
        response = requests.post(
            f"{url}{API}/17/issue", headers={"Authorization": f"Bearer {CRM_TOKEN}"}, timeout=30
        )
        statuses.append(response.status_code)

    with LoopbackServer(app) as server:
        threads = [threading.Thread(target=send, args=(server.url,)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(statuses) == 20
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    assert len(finan_puts(finan)) == 1


# --- hostile input: a clear 4xx, never a 500 ---


PRICE = ["order_info", "services", 0, "prices", 0]


@pytest.mark.parametrize(
    "invoice",
    [
        _with(["total_amount", "base"], "1" + "0" * 30),
        _with(["total_amount", "base"], 1e308),
        _with([*PRICE, "quantity"], 10**30),
        _with([*PRICE, "unit_price", "original"], "1.500"),
        _with(["request_info", "request_at"], "0001-01-01T00:00:00"),
        _with(["request_info", "request_at"], "9999-12-31 23:59:59"),
        _with(["order_info", "services"], "not a list"),
        _with(["id"], "seventeen"),
    ],
    ids=["huge-total", "1e308", "huge-quantity", "ambiguous-dot", "year-1", "year-9999",
         "services-not-a-list", "id-not-a-number"],
)  # fmt: skip
def test_hostile_invoices_are_422_and_nothing_is_sent(client, crm_headers, finan, invoice):
    response = issue(client, crm_headers, 17, json=invoice)

    assert response.status_code == 422, response.json
    assert response.json["success"] is False and response.json["errors"]
    assert finan_puts(finan) == []


@pytest.mark.parametrize("payload", [[], "text", 17, None, {"data": []}])
def test_an_issue_body_that_is_not_an_invoice_object_is_422(client, crm_headers, payload):
    response = issue(
        client, crm_headers, 17, data=json.dumps(payload), content_type="application/json"
    )
    # Only an empty body means "no invoice, pull it"; JSON null is neither that nor an invoice.
    assert response.status_code == 422, response.json
    assert "object" in response.json["errors"]["_schema"][0]


def test_an_accepted_issue_costs_four_round_trips_to_redis(client, crm_headers, redis, round_trips):
    """The failed-authentication limit's check (auth_limits.py: one GET), the read that
    recognises a repeat, the lock with the record, and the save with the lock's release."""
    body = json.dumps(sample_invoices()[17])
    # A first call: the client is remembered as one that authenticated (a write, then once
    # every ten minutes), so the overall limit on failures costs a correct call nothing.
    assert client.get(f"{API}/18", headers=crm_headers).status_code == 404
    round_trips.clear()
    response = issue(client, crm_headers, data=body, content_type="application/json")
    assert response.status_code == 201
    assert len(round_trips) == 4, [command[:2] for command in round_trips]
    assert redis.exists(lock_key(17)) == 0


def test_an_operation_that_outlives_its_lock_saves_nothing_and_a_repeat_converges(
    app, client, crm_headers, finan, retry_sleeps, caplog
):
    with_lock_timeout(app, retry_sleeps, 2)
    # Finan answers 6 s after the call, which starts with at most the lock's 2 s left: the
    # lock has long expired (and the answer is within the bridge's 10 s read timeout).
    finan.state.fail_next("hang", delay=6)

    late = issue(client, crm_headers)

    assert late.status_code == 503
    assert "lost its lock" in late.json["message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "lock on bridge:lock:invoice:17 expired before saving Finan's answer" in warnings
    assert client.get(f"{API}/17", headers=crm_headers).status_code == 404  # nothing saved
    repeat = issue(client, crm_headers)
    assert repeat.status_code == 201
    assert [r.get("fault") for r in finan_puts(finan)] == ["hang", None]  # the late one sent
    assert len(finan.state.invoices) == 1  # both PUTs landed on the one derived id


def test_a_cancel_after_a_rejected_first_issue_sends_the_cancel_body(client, crm_headers, finan):
    # A rejected issue may follow tries that reached Finan: a cancel must still be possible.
    finan.state.fail_next("client_error")
    assert issue(client, crm_headers).status_code == 502

    response = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert response.status_code == 201, response.json
    assert response.json["data"]["state"] == "cancelled"
    sent = finan_puts(finan)[-1]
    assert sent["path"].endswith(f"/update-invoice/{response.json['data']['provider_invoice_id']}")
    assert sent["body"]["items"] == [] and sent["body"]["payment_config"] == []
    assert issue(client, crm_headers).status_code == 409


def test_a_cancel_after_a_rejected_update_is_built_from_the_body_finan_accepted(
    client, crm_headers, finan
):
    assert issue(client, crm_headers).status_code == 201
    accepted = finan_puts(finan)[-1]["body"]
    finan.state.fail_next("client_error")
    update = client.put(f"{API}/17", headers=crm_headers, json={"company_address": "1 Lê Lợi"})
    assert update.status_code == 502

    response = client.post(f"{API}/17/cancel", headers=crm_headers)

    assert response.status_code == 201
    sent = finan_puts(finan)[-1]["body"]
    assert sent["items"] == [] and sent["customer"] == accepted["customer"]
