"""The operator-facing admin API against a real Redis, the stand-ins and RQ in burst mode.

Finan's request log (the stand-in's) is the witness of what was sent, the CRM stand-in's of
what was pulled and written back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
import schemathesis
from helpers import (
    ADMIN,
    ADMIN_TOKENS,
    API,
    CRM_TOKEN,
    crm_writes,
    finan_puts,
    issue,
    make_failed,
    queue_is_empty,
    run_worker,
    served_openapi_document,
)
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from bridge.config import load_settings
from bridge.invoices.resync import OPEN_BATCHES_KEY
from bridge.sandbox.loopback import LoopbackServer
from bridge.store.queue import bridge_queue
from bridge.store.records import Record, RecordStore, provider_invoice_id
from bridge.web.app import create_app


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS, BRIDGE_RETRY_SCHEDULE="0,0,0")


def crm_gets(tourwell) -> list[dict]:
    with tourwell.state.lock:
        return [r for r in tourwell.state.requests if r["method"] == "GET"]


# --- who may call ---


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {CRM_TOKEN}"}, {"Authorization": "Bearer nope"}],
    ids=["no token", "a CRM token", "a wrong token"],
)
def test_only_admin_tokens_are_let_in(client, headers):
    response = client.get("/admin/invoices", headers=headers)

    assert response.status_code == 401
    assert response.json["success"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/admin/invoices", headers=ADMIN).status_code == 200


def test_with_no_admin_tokens_configured_everyone_is_refused(environ, redis):
    client = create_app(load_settings(environ), redis).test_client()

    response = client.post("/admin/invoices/17/resync", headers=ADMIN)

    assert response.status_code == 401
    assert "BRIDGE_ADMIN_TOKENS" in response.json["message"]


# --- lists and search ---


def test_lists_are_newest_first_filtered_searchable_and_paged(client, crm_headers, finan, tourwell):
    for invoice_id in (17, 18, 19):
        assert issue(client, crm_headers, invoice_id).status_code == 201
    make_failed(client, crm_headers, finan, 20)
    tourwell.state.invoices[21]["code"] = "XK-21"
    assert issue(client, crm_headers, 21).status_code == 201

    everything = client.get("/admin/invoices", headers=ADMIN).json["data"]
    failed = client.get("/admin/invoices?state=failed", headers=ADMIN).json["data"]
    by_code = client.get("/admin/invoices?q=hd0", headers=ADMIN).json["data"]
    by_id = client.get("/admin/invoices?q=18", headers=ADMIN).json["data"]
    by_unicode_digit = client.get("/admin/invoices?q=1%C2%B2", headers=ADMIN)
    page_2 = client.get("/admin/invoices?per_page=2&page=2", headers=ADMIN).json["data"]

    assert [r["invoice_id"] for r in everything["invoices"]] == [21, 20, 19, 18, 17]
    assert everything["counts"] == {
        "issued": 4,
        "cancelled": 0,
        "queued": 0,
        "failed": 1,
        "dead": 0,
    }
    assert [r["invoice_id"] for r in failed["invoices"]] == [20]
    assert failed["invoices"][0]["last_error"]["message"] == "invalid invoice"
    assert [r["invoice_id"] for r in by_code["invoices"]] == [20, 19, 18, 17]
    assert [r["invoice_id"] for r in by_id["invoices"]] == [18]
    assert (by_unicode_digit.status_code, by_unicode_digit.json["data"]["invoices"]) == (200, [])
    assert (page_2["total"], [r["invoice_id"] for r in page_2["invoices"]]) == (5, [19, 18])
    issued_hd = client.get("/admin/invoices?q=HD&state=issued", headers=ADMIN).json["data"]
    assert [r["invoice_id"] for r in issued_hd["invoices"]] == [19, 18, 17]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("state=bogus", "state"),
        ("colour=red", "colour"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=x", "page"),
        ("state=failed&state=dead", "state"),
    ],
)
def test_bad_list_queries_are_422_naming_the_parameter(client, query, named):
    response = client.get(f"/admin/invoices?{query}", headers=ADMIN)

    assert response.status_code == 422
    assert named in response.json["errors"]


# --- one invoice ---


def test_one_record_has_its_history_and_last_body(client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)
    assert issue(client, crm_headers, 17).status_code == 201
    assert client.put(f"{API}/17", headers=crm_headers, json={"note": "x"}).status_code == 200

    failed = client.get("/admin/invoices/20", headers=ADMIN).json["data"]
    issued = client.get("/admin/invoices/17", headers=ADMIN).json["data"]

    (event,) = failed["history"]
    assert (event["operation"], event["actor"], event["outcome"]) == ("issue", "crm", "failed")
    assert event["message"] == "invalid invoice" and event["code"] == 104001
    assert failed["last_body"] is None
    assert failed["pending_body"]["reference_code"] == "HD020"
    assert failed["record"]["pending"]["operation"] == "issue"
    assert (
        issued["last_body"] == finan.state.invoices[issued["record"]["provider_invoice_id"]]["body"]
    )
    assert [e["outcome"] for e in issued["history"]] == ["issued"]  # the update sent nothing
    assert client.get("/admin/invoices/999", headers=ADMIN).status_code == 404


# --- preview ---


def test_preview_pulls_maps_and_diffs_but_sends_nothing(client, crm_headers, finan, tourwell):
    assert issue(client, crm_headers).status_code == 201
    sent = len(finan_puts(finan))

    unchanged = client.get("/admin/invoices/17/preview", headers=ADMIN).json["data"]
    tourwell.state.invoices[17]["request_info"]["company_address"] = "1 Tràng Tiền <Hà Nội>"
    changed = client.get("/admin/invoices/17/preview", headers=ADMIN).json["data"]

    assert (unchanged["would_send"], unchanged["changed"], unchanged["diff"]) == (False, False, "")
    assert unchanged["operation"] == "update"
    assert changed["would_send"] is True
    assert changed["body"]["customer"]["address"] == "1 Tràng Tiền <Hà Nội>"
    assert '+    "address": "1 Tràng Tiền <Hà Nội>"' in changed["diff"]
    assert changed["compared_with"]["customer"]["address"] != "1 Tràng Tiền <Hà Nội>"
    assert len(finan_puts(finan)) == sent
    assert len(crm_gets(tourwell)) == 3  # the issue's pull and the two previews'


def test_preview_of_a_cancelled_invoice_is_its_cancel_body(client, crm_headers):
    issue(client, crm_headers)
    assert client.post(f"{API}/17/cancel", headers=crm_headers).status_code == 201

    preview = client.get("/admin/invoices/17/preview", headers=ADMIN).json["data"]

    assert preview["operation"] == "cancel"
    assert preview["body"]["items"] == [] and preview["body"]["payment_config"] == []
    assert preview["would_send"] is False


# --- re-sync one ---


def test_resync_of_a_failed_invoice_sends_it_and_writes_back(
    app, client, crm_headers, finan, tourwell, redis
):
    make_failed(client, crm_headers, finan, 20)

    response = client.post("/admin/invoices/20/resync", headers=ADMIN)

    assert response.status_code == 200, response.json
    assert response.json["data"]["result"] == "sent"
    assert response.json["data"]["record"]["state"] == "issued"
    assert response.json["data"]["record"]["last_error"] is None
    assert [r["outcome"] for r in finan_puts(finan)] == ["fault:client_error", "created"]
    run_worker(app)  # the write-back job, scheduled with the record
    (write,) = crm_writes(tourwell, 20)
    assert "Finan invoice issued" in write["body"]["note"]
    history = client.get("/admin/invoices/20", headers=ADMIN).json["data"]["history"]
    assert [(e["actor"], e["outcome"]) for e in history] == [
        ("worker", "written_back"),
        ("operator", "issued"),
        ("crm", "failed"),
    ]


def test_resync_of_unchanged_content_sends_nothing_unless_forced(client, crm_headers, finan, redis):
    issue(client, crm_headers)

    plain = client.post("/admin/invoices/17/resync", headers=ADMIN)
    assert (plain.status_code, plain.json["data"]["result"]) == (200, "unchanged")
    assert len(finan_puts(finan)) == 1

    forced = client.post("/admin/invoices/17/resync?force=1", headers=ADMIN)
    assert (forced.status_code, forced.json["data"]["result"]) == (200, "sent")
    assert [r["outcome"] for r in finan_puts(finan)] == ["created", "updated"]
    body_force = client.post("/admin/invoices/17/resync", headers=ADMIN, json={"force": True})
    assert body_force.json["data"]["result"] == "sent"


def test_an_unchanged_resync_keeps_a_code_the_record_lacked(app, client, crm_headers, finan):
    issue(client, crm_headers)
    records = app.extensions["bridge"].records
    record = records.get(17)
    code, record.code = record.code, None  # a record kept before the bridge kept codes
    records.save(record)
    redis = app.extensions["bridge"].redis
    redis.delete("bridge:index:code")
    assert client.get(f"/admin/invoices?q={code}", headers=ADMIN).json["data"]["invoices"] == []

    plain = client.post("/admin/invoices/17/resync", headers=ADMIN)

    assert plain.json["data"]["result"] == "unchanged"
    assert len(finan_puts(finan)) == 1
    assert records.get(17).code == code
    found = client.get(f"/admin/invoices?q={code}", headers=ADMIN).json["data"]["invoices"]
    assert [r["invoice_id"] for r in found] == [17]


def test_resync_never_uncancels(client, crm_headers, finan, tourwell):
    issue(client, crm_headers)
    client.post(f"{API}/17/cancel", headers=crm_headers, json={"cancel_note": "off"})

    forced = client.post("/admin/invoices/17/resync?force=true", headers=ADMIN)

    assert forced.status_code == 200
    assert forced.json["data"]["record"]["state"] == "cancelled"
    assert finan_puts(finan)[-1]["body"]["items"] == []
    assert len(crm_gets(tourwell)) == 1  # no pull for a cancel: the issue's only


def test_a_failed_cancel_is_resent_as_a_cancel(client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.fail_next("client_error")
    assert client.post(f"{API}/17/cancel", headers=crm_headers).status_code == 502

    response = client.post("/admin/invoices/17/resync", headers=ADMIN)

    assert response.json["data"]["record"]["state"] == "cancelled"
    assert finan_puts(finan)[-1]["body"]["items"] == []


def test_resync_with_finan_down_is_queued_and_the_worker_finishes_it(
    client, crm_headers, finan, redis
):
    make_failed(client, crm_headers, finan, 20)
    finan.state.fail_next("unavailable", count=3)

    response = client.post("/admin/invoices/20/resync", headers=ADMIN)

    assert response.status_code == 202
    assert response.json["data"]["result"] == "queued"
    run_worker(client.application)
    record = client.get("/admin/invoices/20", headers=ADMIN).json["data"]["record"]
    assert record["state"] == "issued"
    assert queue_is_empty(redis)


def test_a_rejected_resync_is_502_and_stays_failed(client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)
    finan.state.fail_next("client_error")

    response = client.post("/admin/invoices/20/resync", headers=ADMIN)

    assert response.status_code == 502
    record = client.get("/admin/invoices/20", headers=ADMIN).json["data"]["record"]
    assert record["state"] == "failed"


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/admin/invoices/999/resync", 404, None),
        ("/admin/invoices/17/resync?force=maybe", 422, "force"),
        ("/admin/invoices/17/resync?forse=1", 422, "forse"),
    ],
)
def test_bad_resync_requests(client, crm_headers, path, status, named):
    issue(client, crm_headers)

    response = client.post(path, headers=ADMIN)

    assert response.status_code == status
    if named:
        assert named in response.json["errors"]


def test_a_resync_body_with_unknown_fields_is_422_naming_them(client, crm_headers, finan):
    issue(client, crm_headers)

    response = client.post("/admin/invoices/17/resync", headers=ADMIN, json={"forced": True})

    assert response.status_code == 422
    assert "forced" in response.json["errors"]
    assert len(finan_puts(finan)) == 1


# --- bulk re-sync ---


def test_bulk_resync_by_state_runs_in_the_queue_and_reports_progress(
    client, crm_headers, finan, redis
):
    for invoice_id in (18, 20):
        make_failed(client, crm_headers, finan, invoice_id)
    issue(client, crm_headers, 17)

    accepted = client.post("/admin/resync", headers=ADMIN, json={"state": "failed"})

    assert accepted.status_code == 202, accepted.json
    batch = accepted.json["data"]
    assert (batch["total"], batch["done"], batch["finished"]) == (2, 0, False)
    run_worker(client.application)
    progress = client.get(f"/admin/resync/{batch['batch_id']}", headers=ADMIN).json["data"]
    assert (progress["done"], progress["finished"]) == (2, True)
    assert progress["counts"]["sent"] == 2 and progress["problems"] == []
    failed = client.get("/admin/invoices?state=failed", headers=ADMIN).json["data"]
    assert failed["total"] == 0
    assert not redis.sismember(OPEN_BATCHES_KEY, batch["batch_id"])


def test_bulk_resync_reports_each_problem(client, crm_headers, finan, tourwell, redis):
    for invoice_id in (18, 20):
        make_failed(client, crm_headers, finan, invoice_id)
    del tourwell.state.invoices[18]  # the CRM no longer knows it
    finan.state.fail_next("client_error")  # and Finan refuses 20 again

    batch_id = client.post("/admin/resync", headers=ADMIN, json={"ids": [18, 20, 18]}).json["data"][
        "batch_id"
    ]
    run_worker(client.application)

    progress = client.get(f"/admin/resync/{batch_id}", headers=ADMIN).json["data"]
    assert progress["total"] == 2  # the repeated id once
    assert progress["counts"]["error"] == 1 and progress["counts"]["failed"] == 1
    problems = {p["invoice_id"]: p for p in progress["problems"]}
    assert "unknown to the CRM" in problems[18]["message"]
    assert problems[20]["message"] == "104001: invalid invoice"


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"state": "issued"}, 422, "state"),
        ({"ids": [17], "state": "failed"}, 422, "_schema"),
        ({}, 422, "_schema"),
        ({"ids": [17], "colour": "red"}, 422, "colour"),
        ({"ids": ["17"]}, 422, "ids"),
        ({"ids": []}, 422, "ids"),
    ],
)
def test_bad_bulk_requests(client, crm_headers, redis, body, status, named):
    issue(client, crm_headers)

    response = client.post("/admin/resync", headers=ADMIN, json=body)

    assert response.status_code == status, response.json
    assert named in response.json["errors"]
    assert bridge_queue(redis).count == 0


def test_an_unknown_batch_is_404(client):
    assert client.get("/admin/resync/" + "0" * 32, headers=ADMIN).status_code == 404
    assert client.get("/admin/resync/x;y", headers=ADMIN).status_code == 404


def test_a_bulk_resync_of_10000_ids_is_accepted_at_once_and_paced(
    make_app, redis, tourwell, finan, round_trips
):
    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS, TOURWELL_RATE_LIMIT_PER_MIN="6")
    settings = app.extensions["bridge"].settings
    store = RecordStore(redis, settings.tourwell_base_url)
    ids = list(range(100_000, 110_000))
    with redis.pipeline(transaction=False) as pipe:  # 10 000 failed records, quickly
        for invoice_id in ids:
            record = Record(invoice_id, provider_invoice_id(settings.tourwell_base_url, invoice_id))
            record.state = "failed"
            pipe.set(f"bridge:record:{invoice_id}", record.to_json())
        pipe.execute()
    assert store.exists([ids[0], ids[-1]]) == [True, True]

    round_trips.clear()
    accepted = app.test_client().post("/admin/resync", headers=ADMIN, json={"ids": ids})

    assert accepted.status_code == 202
    # At once: nothing pulled from the CRM or sent to Finan, and a few round trips to Redis
    # whatever the number of ids (none per invoice); two of them the failed-token limit's
    # check and the note that this client authenticated (auth_limits.py).
    assert crm_gets(tourwell) == [] and finan.state.requests_snapshot() == []
    assert len(round_trips) <= 7, [command[0][:60] for command in round_trips]
    assert accepted.json["data"]["total"] == 10_000
    assert bridge_queue(redis).count == 1  # one job carries the batch, slice by slice
    before = datetime.now(UTC).timestamp()
    run_worker(app)
    after = datetime.now(UTC).timestamp()
    batch_id = accepted.json["data"]["batch_id"]
    batch = app.extensions["bridge"].batches.get(batch_id)
    # 6 CRM calls a minute leave 2 re-syncs a minute for bulk work: two done, then a pause.
    assert batch.done == 2
    assert len(crm_gets(tourwell)) == 2
    registry = bridge_queue(redis).scheduled_job_registry
    (job_id,) = registry.get_job_ids()
    # The next slice waits for the CRM's window (a minute from its first call, made after
    # ``before``), however long the worker took.
    scheduled = registry.get_scheduled_time(job_id).timestamp()
    assert before + 20 < scheduled <= after + 61
    assert batch.next_slice_at is not None


def test_a_batch_whose_job_was_lost_gets_a_new_one(app, client, crm_headers, finan, redis):
    make_failed(client, crm_headers, finan, 20)
    batch_id = client.post("/admin/resync", headers=ADMIN, json={"ids": [20]}).json["data"][
        "batch_id"
    ]
    bridge_queue(redis).empty()  # as a Redis without AOF would lose it

    batches = app.extensions["bridge"].batches
    assert batches.recover_stranded() == [batch_id]
    run_worker(app)
    assert batches.get(batch_id).finished
    assert batches.recover_stranded() == []


# --- schemathesis on the admin API, with an admin token ---

ADMIN_DOCUMENT = schemathesis.openapi.from_dict(served_openapi_document()).include(
    path_regex=r"^/admin/(invoices|resync)"
)
ADMIN_DOCUMENT.config.generation.update(max_examples=25, deterministic=True, database="none")
# The body's "ids or state, not both" is a rule JSON Schema here does not carry: 422.
ADMIN_DOCUMENT.config.checks.positive_data_acceptance.expected_statuses.append("422")


@pytest.fixture
def live_admin_bridge(make_app):
    # The fuzzer's many wrong tokens are not limited to 10 a minute (test_brute_force.py).
    app = make_app(
        BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS,
        TOURWELL_RATE_LIMIT_PER_MIN="100000",
        BRIDGE_AUTH_FAILURES_PER_CLIENT_PER_MIN="100000",
        BRIDGE_AUTH_FAILURES_PER_MIN="100000",
    )
    with LoopbackServer(app) as server:
        for invoice_id in (17, 18):  # records to list, preview and re-sync
            response = requests.post(
                f"{server.url}/api/v1/invoices/{invoice_id}/issue",
                headers={"Authorization": f"Bearer {CRM_TOKEN}"},
                timeout=30,
            )
            assert response.status_code == 201, response.text
        yield server


@ADMIN_DOCUMENT.parametrize()
@hypothesis_settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_on_the_admin_api_finds_no_server_error(case, live_admin_bridge):
    if case.path_parameters and "invoice_id" in case.path_parameters:
        # Valid cases on an invoice the bridge knows, so they get past the 404.
        if case.meta is not None and case.meta.generation.mode.is_positive:
            case.path_parameters["invoice_id"] = 17
    case.call_and_validate(base_url=live_admin_bridge.url, headers=ADMIN)
