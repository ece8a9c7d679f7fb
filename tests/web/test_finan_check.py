"""What Finan holds: ``GET /admin/invoices/{id}/finan`` and ``POST /admin/reconcile``
against the stand-ins, the worker run in process, the gauge, and the status page."""

from __future__ import annotations

import pytest
from helpers import ADMIN, ADMIN_TOKEN, ADMIN_TOKENS, issue, make_failed, run_worker

from bridge.store.records import provider_invoice_id


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS)


@pytest.fixture
def client(app):
    client = app.test_client()
    # The status page's tests read its English; its Vietnamese (the default) and the
    # language switch: tests/web/test_admin_i18n.py.
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def finan_id(app, invoice_id=17):
    return provider_invoice_id(app.extensions["bridge"].settings.tourwell_base_url, invoice_id)


def check(client, invoice_id=17):
    return client.get(f"/admin/invoices/{invoice_id}/finan", headers=ADMIN)


def test_an_invoice_finan_holds_as_sent_is_in_sync(app, client, crm_headers, finan):
    assert issue(client, crm_headers).status_code == 201
    response = check(client)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert response.json["success"] is True
    assert data["in_sync"] is True and data["differences"] == []
    assert data["finan"]["id"] == finan_id(app)
    assert data["finan"]["items"]
    assert data["finan"]["total_amount"] == data["bridge"]["total_amount"]
    detail = [r for r in finan.state.requests if r["method"] == "GET"]
    assert detail[-1]["path"] == f"/api/v1/invoice/detail/{finan_id(app)}"


def test_a_change_at_finan_names_the_fields_that_differ(app, client, crm_headers, finan):
    issue(client, crm_headers)
    sent_total = check(client).json["data"]["bridge"]["total_amount"]
    finan.state.change(
        finan_id(app), {"total_amount": sent_total + 1000, "customer.name": "Someone Else"}
    )
    response = check(client)
    assert response.status_code == 200
    data = response.json["data"]
    assert data["in_sync"] is False
    by_field = {d["field"]: d for d in data["differences"]}
    assert set(by_field) == {"total_amount", "customer.name"}
    assert by_field["total_amount"] == {
        "field": "total_amount",
        "bridge": sent_total,
        "finan": sent_total + 1000,
    }
    assert by_field["customer.name"]["finan"] == "Someone Else"
    assert "total_amount" in response.json["message"]


def test_an_item_changed_at_finan_is_named_by_its_place(app, client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.change(finan_id(app), {"items.0.price": 1})
    fields = [d["field"] for d in check(client).json["data"]["differences"]]
    assert fields == ["items[0].price"]


def test_an_invoice_finan_forgot_is_out_of_sync(app, client, crm_headers, finan):
    issue(client, crm_headers)
    assert finan.state.forget(finan_id(app))
    response = check(client)
    assert response.status_code == 200
    data = response.json["data"]
    assert data["in_sync"] is False and data["finan"] is None
    assert [d["field"] for d in data["differences"]] == ["invoice"]
    assert "does not know" in response.json["message"]


def test_an_invoice_finan_never_accepted_is_409(client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)
    response = check(client, 20)
    assert response.status_code == 409
    assert "never accepted" in response.json["message"]


def test_an_invoice_unknown_to_the_bridge_is_404(client):
    assert check(client, 999).status_code == 404


def test_finan_unavailable_is_503_with_a_clear_message(client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.fail_next("unavailable", count=3)
    response = check(client)
    assert response.status_code == 503
    assert "Finan is unavailable" in response.json["message"]
    assert response.headers["Retry-After"]


def test_a_crm_token_is_refused(client, crm_headers):
    assert client.get("/admin/invoices/17/finan", headers=crm_headers).status_code == 401


def test_out_of_sync_is_remembered_counted_and_cleared_by_a_resync(app, client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.forget(finan_id(app))
    check(client)
    assert "bridge_out_of_sync_invoices 1.0" in client.get("/metrics").text
    page = login(client).get("/admin/")
    assert b"Out of sync with Finan" in page.data and b"/admin/invoice/17" in page.data

    resynced = client.post("/admin/invoices/17/resync?force=1", headers=ADMIN)
    assert resynced.status_code == 200, resynced.json
    assert "bridge_out_of_sync_invoices 0.0" in client.get("/metrics").text
    assert check(client).json["data"]["in_sync"] is True


def test_a_later_check_in_sync_clears_the_mark(app, client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.change(finan_id(app), {"reference_code": "EDITED"})
    check(client)
    services = app.extensions["bridge"]
    assert services.finan_checks.out_of_sync.count() == 1
    finan.state.change(finan_id(app), {"reference_code": check_body(client)["reference_code"]})
    assert check(client).json["data"]["in_sync"] is True
    assert services.finan_checks.out_of_sync.count() == 0


def check_body(client):
    return check(client).json["data"]["bridge"]


# --- reconciliation through the admin API, run by the worker ---


def test_reconcile_by_state_runs_in_the_worker(app, client, crm_headers, finan):
    for invoice_id in (17, 18, 19):
        assert issue(client, crm_headers, invoice_id).status_code == 201
    finan.state.change(finan_id(app, 18), {"tax_amount": 1})
    finan.state.forget(finan_id(app, 19))

    started = client.post("/admin/reconcile", json={"state": "issued"}, headers=ADMIN)
    assert started.status_code == 202, started.json
    batch_id = started.json["data"]["batch_id"]
    assert f"/admin/reconcile/{batch_id}" in started.json["message"]

    run_worker(app)

    progress = client.get(f"/admin/reconcile/{batch_id}", headers=ADMIN)
    assert progress.status_code == 200
    batch = progress.json["data"]
    assert batch["finished"] is True and batch["done"] == 3
    assert batch["counts"] == {"in_sync": 1, "out_of_sync": 2, "not_accepted": 0, "error": 0}
    problems = {p["invoice_id"]: p for p in batch["problems"]}
    assert set(problems) == {18, 19}
    assert "tax_amount" in problems[18]["message"]
    assert "does not know" in problems[19]["message"]
    assert "bridge_out_of_sync_invoices 2.0" in client.get("/metrics").text
    # A reconciliation is not a bulk re-sync, nor the other way round.
    assert client.get(f"/admin/resync/{batch_id}", headers=ADMIN).status_code == 404


def test_reconcile_refuses_unknown_ids_and_bad_bodies(client, crm_headers):
    issue(client, crm_headers)
    unknown = client.post("/admin/reconcile", json={"ids": [17, 999]}, headers=ADMIN)
    assert unknown.status_code == 404 and "999" in unknown.json["message"]
    both = client.post("/admin/reconcile", json={"ids": [17], "state": "issued"}, headers=ADMIN)
    assert both.status_code == 422
    extra = client.post("/admin/reconcile", json={"ids": [17], "force": True}, headers=ADMIN)
    assert extra.status_code == 422
    assert client.get("/admin/reconcile/nope", headers=ADMIN).status_code == 404


def test_reconcile_counts_invoices_finan_never_accepted_apart(app, client, crm_headers, finan):
    issue(client, crm_headers)
    make_failed(client, crm_headers, finan, 20)
    started = client.post("/admin/reconcile", json={"ids": [17, 20]}, headers=ADMIN)
    run_worker(app)
    batch = client.get(f"/admin/reconcile/{started.json['data']['batch_id']}", headers=ADMIN)
    assert batch.json["data"]["counts"]["in_sync"] == 1
    assert batch.json["data"]["counts"]["not_accepted"] == 1


# --- the status page ---


def login(client):
    page = client.get("/admin/login")
    token = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": token})
    assert response.status_code == 303
    return client


def test_the_invoice_page_shows_finan_side_by_side(app, client, crm_headers, finan):
    issue(client, crm_headers)
    finan.state.change(finan_id(app), {"customer.name": "Renamed At Finan"})
    login(client)
    invoice_page = client.get("/admin/invoice/17")
    assert b"/admin/invoice/17/finan" in invoice_page.data  # the "Check Finan" link
    page = client.get("/admin/invoice/17/finan")
    assert page.status_code == 200
    assert b"Renamed At Finan" in page.data
    assert b"customer.name" in page.data
    assert b"Out of sync" in page.data


def test_the_page_check_of_an_invoice_finan_never_accepted_says_so(client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)
    login(client)
    page = client.get("/admin/invoice/20/finan")
    assert page.status_code == 409
    assert b"never accepted" in page.data
