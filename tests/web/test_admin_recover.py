"""Recovering the never-seen through the admin API: an invoice the CRM has but the bridge has
no record of (the CRM's call never came) is previewed, re-synced one by one and in bulk, and
an id neither knows is refused (one) or a failed item (bulk). Real Redis, the stand-ins, RQ
in burst mode; the stand-ins' request logs are the witnesses."""

from __future__ import annotations

import pytest
from helpers import ADMIN, ADMIN_TOKENS, crm_writes, finan_puts, issue, queue_is_empty, run_worker


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS, BRIDGE_RETRY_SCHEDULE="0,0,0")


def detail(client, invoice_id):
    response = client.get(f"/admin/invoices/{invoice_id}", headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json["data"]


def test_the_preview_of_an_invoice_only_the_crm_has_sends_and_saves_nothing(client, finan):
    response = client.get("/admin/invoices/18/preview", headers=ADMIN)

    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["record"] is None and data["compared_with"] is None
    assert data["operation"] == "issue"
    assert (data["changed"], data["would_send"]) == (True, True)
    assert data["body"]["items"]  # the mapped invoice
    added = [line for line in data["diff"].splitlines() if line.startswith("+")]
    assert data["diff"].startswith("--- accepted by Finan") and len(added) > 3
    assert not any(
        line.startswith("-") and line != "--- accepted by Finan"
        for line in data["diff"].splitlines()
    )
    assert "no record" in response.json["message"]
    assert finan_puts(finan) == []
    assert client.get("/admin/invoices/18", headers=ADMIN).status_code == 404


def test_a_resync_of_an_invoice_only_the_crm_has_issues_it_and_writes_back(
    client, finan, tourwell, redis
):
    response = client.post("/admin/invoices/18/resync", headers=ADMIN)

    assert response.status_code == 200, response.json
    assert response.json["data"]["result"] == "sent"
    assert "no record" in response.json["message"]
    puts = finan_puts(finan)
    assert len(puts) == 1 and puts[0]["outcome"] == "created"
    data = detail(client, 18)
    assert data["record"]["state"] == "issued"
    assert data["record"]["code"]  # the CRM's invoice code, from the pull
    assert [(e["operation"], e["actor"], e["outcome"]) for e in data["history"]] == [
        ("issue", "operator", "issued")
    ]
    assert crm_writes(tourwell, 18) == []  # queued, not written inline
    assert not queue_is_empty(redis)
    run_worker(client.application)
    writes = crm_writes(tourwell, 18)
    assert len(writes) == 1 and "Finan invoice issued" in writes[0]["body"]["note"]
    assert detail(client, 18)["history"][0]["outcome"] == "written_back"
    # From now on it is an invoice like any other: unchanged, nothing sent.
    again = client.post("/admin/invoices/18/resync", headers=ADMIN)
    assert again.json["data"]["result"] == "unchanged"
    assert len(finan_puts(finan)) == 1


def test_the_crm_can_still_issue_it_afterwards_as_a_repeat(client, crm_headers, finan):
    assert client.post("/admin/invoices/18/resync", headers=ADMIN).status_code == 200

    late = issue(client, crm_headers, 18)  # the CRM's call, arriving at last

    assert late.status_code == 201
    assert late.json["message"] == "Invoice already issued; nothing changed"
    assert len(finan_puts(finan)) == 1


@pytest.mark.parametrize("path", ["/admin/invoices/999/preview", "/admin/invoices/999/resync"])
def test_an_invoice_neither_knows_is_404_naming_the_crm(client, finan, path):
    method = client.get if path.endswith("preview") else client.post

    response = method(path, headers=ADMIN)

    assert response.status_code == 404
    assert response.json["message"] == (
        "the CRM has no invoice 999 (and the bridge has no record of it)"
    )
    assert finan_puts(finan) == []
    assert client.get("/admin/invoices/999", headers=ADMIN).status_code == 404


def test_finan_down_queues_the_recovered_invoice_like_any_resync(client, finan, tourwell, redis):
    finan.state.fail_next("unavailable", count=3)  # every inline try

    response = client.post("/admin/invoices/18/resync", headers=ADMIN)

    assert response.status_code == 202, response.json
    assert response.json["data"]["result"] == "queued"
    data = detail(client, 18)
    assert data["record"]["state"] == "queued"
    assert data["record"]["pending"]["operation"] == "issue"
    assert (data["history"][0]["actor"], data["history"][0]["outcome"]) == ("operator", "queued")
    run_worker(client.application)  # the queued attempt (schedule 0), then its write-back
    assert detail(client, 18)["record"]["state"] == "issued"
    assert finan_puts(finan)[-1]["outcome"] == "created"
    assert len(crm_writes(tourwell, 18)) == 1
    assert queue_is_empty(redis)


def test_bulk_by_ids_recovers_the_never_seen_and_fails_an_id_nobody_knows(
    client, crm_headers, finan, tourwell
):
    assert issue(client, crm_headers, 17).status_code == 201

    accepted = client.post("/admin/resync", headers=ADMIN, json={"ids": [17, 18, 999]})

    assert accepted.status_code == 202, accepted.json
    batch_id = accepted.json["data"]["batch_id"]
    assert accepted.json["data"]["total"] == 3
    run_worker(client.application)
    progress = client.get(f"/admin/resync/{batch_id}", headers=ADMIN).json["data"]
    assert progress["finished"] and progress["done"] == 3
    assert {k: v for k, v in progress["counts"].items() if v} == {
        "unchanged": 1,
        "sent": 1,
        "failed": 1,
    }
    assert progress["problems"] == [
        {
            "invoice_id": 999,
            "result": "failed",
            "state": None,
            "message": "the CRM has no invoice 999 (and the bridge has no record of it)",
        }
    ]
    assert detail(client, 18)["record"]["state"] == "issued"
    assert [p["outcome"] for p in finan_puts(finan)] == ["created", "created"]  # 17, then 18
    assert len(crm_writes(tourwell, 18)) == 1  # the write-back job the re-sync queued
    assert client.get("/admin/invoices/999", headers=ADMIN).status_code == 404


def test_the_document_says_what_a_404_now_means(client):
    document = client.get("/openapi.json").json
    for path, method in [
        ("/admin/invoices/{invoice_id}/preview", "get"),
        ("/admin/invoices/{invoice_id}/resync", "post"),
    ]:
        described = document["paths"][path][method]["responses"]["404"]["description"]
        assert described.startswith("The CRM has no invoice by this id")
    assert "404" not in document["paths"]["/admin/resync"]["post"]["responses"]
