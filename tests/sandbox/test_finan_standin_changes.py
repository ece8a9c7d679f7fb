"""The Finan stand-in's detail answers the stored invoice, and its control routes change or
forget one, as an edit in Finan or a restored backup would (what a reconciliation finds)."""

from __future__ import annotations

import json

import requests
from helpers import FINAN_CLIENT_ID, FINAN_PREFIX, FINAN_SECRET

from bridge.config import load_settings
from bridge.integrations.finan.client import FinanClient
from bridge.sandbox.samples import sandbox_provider_settings

INVOICE = "2f21da03-4559-5b02-906a-f596c77b9db1"
BODY = {
    "value_at": "2024-09-05T16:59:59.999Z",
    "due_at": "2024-10-05T16:59:59.999Z",
    "reference_code": "HD017",
    "tax_type": "price_excluding_tax",
    "items": [{"name": "Tour", "price": 100000, "quantity": 2, "taxes": []}],
    "customer": {"name": "Nhan"},
    "payment_config": [],
    "discounts": [],
}


def client_for(finan):
    settings = load_settings(
        {
            "BRIDGE_CRM_TOKENS": "unused",
            "TOURWELL_BASE_URL": "http://127.0.0.1:9",
            "TOURWELL_API_TOKEN": "unused",
            "PROVIDER_BASE_URL": finan.url + FINAN_PREFIX,
            "PROVIDER_CLIENT_ID": FINAN_CLIENT_ID,
            "PROVIDER_SECRET_KEY": FINAN_SECRET,
            **sandbox_provider_settings(),
        }
    )
    return FinanClient(settings, sleep=lambda seconds: None)


def stored(finan):
    client = client_for(finan)
    client.update_invoice(INVOICE, json.dumps(BODY, separators=(",", ":")).encode())
    return client


def test_detail_answers_the_stored_invoice_in_finans_envelope(finan):
    client = stored(finan)
    answer = client.get_invoice(INVOICE)
    assert answer is not None and answer.code == 102000
    data = answer.data
    assert data["id"] == INVOICE and data["order_code"] == "HD1"
    assert data["total_amount"] == 200000 and data["payment_due_amount"] == 200000
    assert data["items"] == BODY["items"] and data["reference_code"] == "HD017"
    assert data["contact_info"] == {"contact_name": "Nhan", "contact_number": ""}
    assert client.get_invoice("00000000-0000-4000-8000-000000000000") is None


def test_change_sets_fields_until_the_next_update(finan):
    client = stored(finan)
    url = f"{finan.url}/_standin/invoices/{INVOICE}/change"
    changed = requests.post(
        url, json={"set": {"total_amount": 1, "items.0.price": 5, "customer.name": "X"}}
    )
    assert changed.status_code == 200, changed.text
    data = client.get_invoice(INVOICE).data
    assert (data["total_amount"], data["items"][0]["price"], data["customer"]["name"]) == (
        1,
        5,
        "X",
    )
    stored(finan)  # the bridge sends it again: Finan holds the body sent
    assert client.get_invoice(INVOICE).data["total_amount"] == 200000


def test_change_refuses_what_it_cannot_do(finan):
    stored(finan)
    url = f"{finan.url}/_standin/invoices/{INVOICE}/change"
    assert requests.post(url, json={"set": {"items.9.price": 1}}).status_code == 400
    assert requests.post(url, json={}).status_code == 400
    other = f"{finan.url}/_standin/invoices/00000000-0000-4000-8000-000000000000/change"
    assert requests.post(other, json={"set": {"total_amount": 1}}).status_code == 404


def test_forget_drops_the_invoice(finan):
    client = stored(finan)
    url = f"{finan.url}/_standin/invoices/{INVOICE}/forget"
    assert requests.post(url).json() == {"forgotten": INVOICE}
    assert client.get_invoice(INVOICE) is None
    assert requests.post(url).status_code == 404
