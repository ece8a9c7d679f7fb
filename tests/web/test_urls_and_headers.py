"""One spelling per URL, nothing cached. The attack: ``/api/v1/invoices/١٧`` (Arabic-Indic
digits) read and cancelled invoice 17, werkzeug's int converter taking any Unicode digit.
Ids are ASCII digits from 1, without leading zeros, on the CRM API, the admin API and the
page; JSON answers and the page's HTML are never cached nor sniffed."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from helpers import ADMIN, ADMIN_TOKEN, issue

OTHER_SPELLINGS = [
    "١٧",  # Arabic-Indic
    "۱۷",  # Extended Arabic-Indic (Persian)
    "१७",  # Devanagari
    "１７",  # fullwidth
    "𝟏𝟕",  # mathematical bold
    "017",  # a leading zero
    "+17",
    "17.0",
    " 17",
]


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def issued(client, crm_headers):
    assert issue(client, crm_headers).status_code == 201
    return client


@pytest.mark.parametrize("spelling", OTHER_SPELLINGS)
def test_another_spelling_of_17_does_not_reach_invoice_17(issued, crm_headers, spelling):
    path = quote(spelling)
    read = issued.get(f"/api/v1/invoices/{path}", headers=crm_headers)
    cancel = issued.post(f"/api/v1/invoices/{path}/cancel", headers=crm_headers)
    update = issued.put(f"/api/v1/invoices/{path}", headers=crm_headers, json={})
    admin = issued.get(f"/admin/invoices/{path}", headers=ADMIN)

    assert [read.status_code, cancel.status_code, update.status_code, admin.status_code] == [
        404
    ] * 4
    assert read.json["success"] is False
    # invoice 17 is as it was: issued, not cancelled
    assert issued.get("/api/v1/invoices/17", headers=crm_headers).json["data"]["state"] == "issued"


def test_another_spelling_on_the_page_is_404(issued):
    form = issued.get("/admin/login").get_data(as_text=True)
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    assert (
        issued.post("/admin/login", data={"csrf_token": token, "token": ADMIN_TOKEN}).status_code
        == 303
    )

    assert issued.get("/admin/invoice/17").status_code == 200
    for spelling in ("١٧", "017"):
        assert issued.get(f"/admin/invoice/{quote(spelling)}").status_code == 404
        assert issued.get(f"/admin/invoice/{quote(spelling)}/preview").status_code == 404


@pytest.mark.parametrize("invoice_id", ["0", "-17"])
def test_ids_start_at_1(client, crm_headers, invoice_id):
    assert client.get(f"/api/v1/invoices/{invoice_id}", headers=crm_headers).status_code == 404


def test_the_openapi_document_still_says_ids_are_integers_from_1(client):
    document = client.get("/openapi.json").json
    path = document["paths"]["/api/v1/invoices/{invoice_id}"]
    (parameter,) = [p for p in path["parameters"] if p.get("name") == "invoice_id"]

    assert parameter["schema"] == {"type": "integer", "minimum": 1}


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("get", "/api/v1/invoices/17", "crm"),  # a success
        ("get", "/api/v1/invoices/99", "crm"),  # an error
        ("get", "/api/v1/invoices/17", None),  # refused
        ("get", "/admin/invoices", "admin"),
        ("get", "/no/such/path", None),
        ("get", "/healthz", None),
        ("get", "/openapi.json", None),
    ],
)
def test_json_answers_are_neither_cached_nor_sniffed(issued, crm_headers, method, path, headers):
    sent = {"crm": crm_headers, "admin": ADMIN, None: {}}[headers]
    response = getattr(issued, method)(path, headers=sent)

    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_is_neither_cached_nor_sniffed(client):
    response = client.get("/admin/login")

    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
