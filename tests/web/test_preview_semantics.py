"""The preview compares with what Finan last accepted, and says plainly what a re-sync
would do: a failed update, a failed issue, an unchanged issued invoice, a failed update
whose CRM content went back to what Finan holds. Real Redis and the stand-ins; Finan's
request log is the witness that nothing is sent."""

from __future__ import annotations

import pytest
from helpers import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_TOKENS,
    API,
    csrf_token,
    finan_puts,
    issue,
    make_failed,
)

from bridge.invoices import rules


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS, BRIDGE_RETRY_SCHEDULE="0,0,0")


def preview(client, invoice_id):
    response = client.get(f"/admin/invoices/{invoice_id}/preview", headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json


def fail_an_update(client, crm_headers, finan, tourwell, invoice_id=17):
    """Invoice ``invoice_id`` issued, then an update with a new address refused by Finan."""
    assert issue(client, crm_headers, invoice_id).status_code == 201
    tourwell.state.invoices[invoice_id]["request_info"]["company_address"] = "9 Hàng Bạc"
    finan.state.fail_next("client_error")
    response = client.put(f"{API}/{invoice_id}", headers=crm_headers, json={})
    assert response.status_code == 502, response.json


def test_a_failed_update_is_compared_with_what_finan_accepted(client, crm_headers, finan, tourwell):
    fail_an_update(client, crm_headers, finan, tourwell)
    sent = len(finan_puts(finan))

    answer = preview(client, 17)

    data = answer["data"]
    accepted = finan_puts(finan)[0]["body"]
    assert data["compared_with"]["customer"]["address"] == accepted["customer"]["address"]
    assert data["compared_with"]["customer"]["address"] != "9 Hàng Bạc"
    assert '+    "address": "9 Hàng Bạc"' in data["diff"]  # the change Finan does not hold
    assert (data["changed"], data["would_send"]) == (True, True)
    assert data["summary"] == rules.PREVIEW_DIFFERS
    assert answer["message"] == rules.PREVIEW_DIFFERS
    assert len(finan_puts(finan)) == sent


def test_a_failed_update_back_to_what_finan_holds_still_sends(client, crm_headers, finan, tourwell):
    original = tourwell.state.invoices[17]["request_info"].get("company_address")
    fail_an_update(client, crm_headers, finan, tourwell)
    tourwell.state.invoices[17]["request_info"]["company_address"] = original  # put back

    data = preview(client, 17)["data"]

    assert data["diff"] == "" and data["changed"] is False  # Finan holds exactly this
    assert data["would_send"] is True  # failed: a re-sync sends it anyway
    assert data["summary"] == rules.PREVIEW_SAME_UNSETTLED.format(state="failed")


def test_a_failed_issue_was_never_accepted_and_a_resync_sends_it(client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)

    data = preview(client, 20)["data"]

    assert data["record"]["state"] == "failed"
    assert data["compared_with"] is None
    assert (data["changed"], data["would_send"]) == (True, True)
    assert data["diff"].startswith("--- accepted by Finan")  # against nothing: all added
    assert data["summary"] == rules.PREVIEW_NEVER_ACCEPTED


def test_an_issued_invoice_finan_holds_sends_nothing_unless_forced(client, crm_headers):
    assert issue(client, crm_headers, 17).status_code == 201

    data = preview(client, 17)["data"]

    assert data["compared_with"] == data["body"]
    assert (data["changed"], data["would_send"], data["diff"]) == (False, False, "")
    assert data["summary"] == rules.PREVIEW_SAME


# --- the page says it too ---


@pytest.fixture
def operator(client):
    form = client.get("/admin/login").get_data(as_text=True)
    logged = client.post(
        "/admin/login", data={"csrf_token": csrf_token(form), "token": ADMIN_TOKEN}
    )
    assert logged.status_code == 303
    return client


def test_the_preview_page_says_what_a_resync_would_do(operator, crm_headers, finan):
    make_failed(operator, crm_headers, finan, 20)
    assert issue(operator, crm_headers, 17).status_code == 201

    never = operator.get("/admin/invoice/20/preview").get_data(as_text=True)
    same = operator.get("/admin/invoice/17/preview").get_data(as_text=True)

    assert "Finan has never accepted this invoice; a re-sync sends it as its first issue" in never
    assert "Finan has never accepted a body for this invoice" in never  # no diff shown
    assert "No changes" not in never
    assert "Finan already holds exactly this; a re-sync sends nothing unless forced" in same
