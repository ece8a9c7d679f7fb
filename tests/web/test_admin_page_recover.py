"""The status page's "re-sync invoice by id" box, through Flask's test client with the
page's login and CSRF token: an invoice the bridge has no record of is previewed (nothing
sent) and re-synced; bad ids and forms without the token are refused."""

from __future__ import annotations

import pytest
from helpers import ADMIN_TOKEN, csrf_token, finan_puts


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)


@pytest.fixture
def operator(client):
    form = client.get("/admin/login").get_data(as_text=True)
    logged = client.post(
        "/admin/login", data={"csrf_token": csrf_token(form), "token": ADMIN_TOKEN}
    )
    assert logged.status_code == 303
    return client


def box(operator, invoice_id: str, action: str, token: str | None = None):
    index = operator.get("/admin/").get_data(as_text=True)
    assert "Re-sync invoice by id" in index
    data = {"invoice_id": invoice_id, "action": action}
    data["csrf_token"] = csrf_token(index) if token is None else token
    return operator.post("/admin/resync-by-id", data=data)


def test_preview_by_id_of_an_invoice_only_the_crm_has_sends_nothing(operator, finan):
    response = box(operator, "18", "preview")

    assert (response.status_code, response.headers["Location"]) == (
        303,
        "/admin/invoice/18/preview",
    )
    page = operator.get("/admin/invoice/18/preview")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html[:500]
    assert "The bridge has no record of this invoice" in html
    assert "HD018" in html  # the mapped body
    assert finan_puts(finan) == []
    assert operator.application.extensions["bridge"].records.get(18) is None


def test_resync_by_id_creates_the_record(operator, finan):
    response = box(operator, "18", "resync")

    assert (response.status_code, response.headers["Location"]) == (303, "/admin/invoice/18")
    html = operator.get("/admin/invoice/18").get_data(as_text=True)
    assert "the bridge had no record of it" in html  # the flashed outcome
    assert len(finan_puts(finan)) == 1
    assert operator.application.extensions["bridge"].records.get(18).state == "issued"


def test_resync_by_id_of_an_invoice_nobody_knows_is_404_naming_the_crm(operator, finan):
    response = box(operator, "999", "resync")

    assert response.status_code == 404
    assert "the CRM has no invoice 999" in response.get_data(as_text=True)
    assert finan_puts(finan) == []


@pytest.mark.parametrize("invoice_id", ["", "0", "-1", "1.5", "17a", "١٧", "1" * 19, "0x11"])
def test_the_box_takes_ascii_digits_only(operator, finan, invoice_id):
    response = box(operator, invoice_id, "resync")

    assert response.status_code == 422
    assert finan_puts(finan) == []


def test_the_box_needs_a_known_action_and_the_csrf_token(operator, finan):
    assert box(operator, "18", "delete").status_code == 422
    assert box(operator, "18", "resync", token="forged").status_code == 403
    assert finan_puts(finan) == []
