"""The Finan link (PROVIDER_LOOKUP_URL_TEMPLATE) on every success: the CRM's own answer
carries it for inline successes, the record keeps it, and a write-back carries it where
the CRM has no answer of its own (docs/contract/semantics.md#write-back)."""

from __future__ import annotations

import pytest
from helpers import ADMIN, ADMIN_TOKENS, API, crm_writes, issue, run_worker

TEMPLATE = "https://finan.example/invoices/{provider_invoice_id}"


@pytest.fixture
def app(make_app):
    return make_app(
        PROVIDER_LOOKUP_URL_TEMPLATE=TEMPLATE,
        BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS,
        BRIDGE_RETRY_SCHEDULE="0,0,0",
    )


def link_of(record):
    return TEMPLATE.format(provider_invoice_id=record["provider_invoice_id"])


def test_an_inline_issue_answers_with_the_link_and_the_record_keeps_it(
    client, crm_headers, tourwell
):
    response = issue(client, crm_headers)
    assert response.status_code == 201, response.json
    record = response.json["data"]
    assert record["lookup_url"] == link_of(record)
    kept = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert kept["lookup_url"] == link_of(record)
    assert crm_writes(tourwell) == []  # the CRM got the answer: no write-back


def test_an_inline_update_answers_with_the_link_whatever_the_crm_sends(client, crm_headers):
    issue(client, crm_headers)
    response = client.put(
        f"{API}/17", headers=crm_headers, json={"note": "changed", "lookup_url": "https://x/1"}
    )
    assert response.status_code == 200, response.json
    assert response.json["data"]["lookup_url"] == link_of(response.json["data"])


def test_a_cancel_keeps_the_link(client, crm_headers):
    issue(client, crm_headers)
    response = client.post(f"{API}/17/cancel", headers=crm_headers, json={})
    assert response.status_code == 201, response.json
    assert response.json["data"]["lookup_url"] == link_of(response.json["data"])


def test_a_queued_first_issue_has_no_link_until_finan_accepts_it_then_it_is_written_back(
    app, client, crm_headers, finan, tourwell
):
    finan.state.fail_next("unavailable", count=3)
    response = issue(client, crm_headers)
    assert response.status_code == 202, response.json
    assert response.json["data"]["lookup_url"] is None  # Finan may hold nothing yet
    run_worker(app)
    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert record["state"] == "issued"
    assert record["lookup_url"] == link_of(record)
    writes = crm_writes(tourwell)
    assert [w["body"]["lookup_url"] for w in writes] == [link_of(record)]


def test_a_resync_answers_keeps_and_writes_back_the_link(app, client, crm_headers, tourwell):
    response = client.post("/admin/invoices/17/resync", headers=ADMIN)  # never seen before
    assert response.status_code == 200, response.json
    record = response.json["data"]["record"]
    assert record["lookup_url"] == link_of(record)
    run_worker(app)
    assert [w["body"]["lookup_url"] for w in crm_writes(tourwell)] == [link_of(record)]


def test_without_the_template_the_link_is_null_and_nothing_is_written(
    make_app, crm_headers, finan, tourwell
):
    app = make_app(BRIDGE_RETRY_SCHEDULE="0,0,0")
    client = app.test_client()
    assert issue(client, crm_headers).json["data"]["lookup_url"] is None
    finan.state.fail_next("unavailable", count=3)
    assert (
        client.put(f"{API}/17", headers=crm_headers, json={"company_name": "Other Co"}).status_code
        == 202
    )
    run_worker(app)
    writes = crm_writes(tourwell)
    assert writes and all("lookup_url" not in w["body"] for w in writes)
    assert client.get(f"{API}/17", headers=crm_headers).json["data"]["lookup_url"] is None


def test_the_invoice_page_shows_the_finan_link_and_who_resynced(client, crm_headers):
    import re

    from helpers import ADMIN_TOKEN

    issue(client, crm_headers)
    form = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    logged = client.post("/admin/login", data={"csrf_token": csrf, "token": ADMIN_TOKEN})
    assert logged.status_code == 303, logged.get_data(as_text=True)[:300]
    html = client.get("/admin/invoice/17").get_data(as_text=True)
    record = client.get(f"{API}/17", headers=crm_headers).json["data"]
    assert f'href="{link_of(record)}"' in html
