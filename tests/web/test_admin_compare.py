"""The invoice's three columns (``/admin/invoice/<id>/compare``): the CRM now, what Finan
last accepted and what Finan holds now, as people read them, the differing cells marked;
the raw JSON of each side one click away. With the Flask test client and the stand-ins."""

from __future__ import annotations

import re

import pytest
from helpers import ADMIN_TOKEN, issue, make_failed

from bridge.store.records import provider_invoice_id


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=f"lan={ADMIN_TOKEN}")


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def login(client):
    page = client.get("/admin/login")
    token = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": token})
    assert response.status_code == 303
    return client


def cells(html: str, field: str) -> dict[str, tuple[str, bool]]:
    """The row of ``field``: each side's text and whether it is marked as differing."""
    row = re.search(rf'<tr data-field="{re.escape(field)}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, field
    found = {}
    for side, classes, inner in re.findall(
        r'<td data-side="(\w+)" class="([^"]*)">(.*?)</td>', row.group(1), re.S
    ):
        text = re.sub(r"<[^>]+>", "", inner).replace("differs", "").strip()
        found[side] = (text, "differs" in classes.split())
    return found


def test_the_invoice_page_links_the_comparison_and_it_asks_nothing_by_itself(
    client, crm_headers, finan, tourwell
):
    issue(client, crm_headers)
    login(client)
    gets_before = len(finan.state.requests) + len(tourwell.state.requests)
    page = client.get("/admin/invoice/17")
    assert b'href="/admin/invoice/17/compare"' in page.data
    assert b"Logged in as lan" in page.data  # the header names the operator
    assert len(finan.state.requests) + len(tourwell.state.requests) == gets_before


def test_three_sides_that_agree_show_no_difference(client, crm_headers, finan):
    issue(client, crm_headers)
    login(client)
    page = client.get("/admin/invoice/17/compare")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-differing="0"' in html
    customer = cells(html, "customer.name")
    assert customer == {side: ("Phạm Văn Long", False) for side in ("crm", "accepted", "finan")}
    total = cells(html, "total")
    assert total["crm"] == total["accepted"] == total["finan"]
    assert re.fullmatch(r"6,325,000\s*₫", total["accepted"][0].replace("\u00a0", " "))
    assert cells(html, "items.0.price")["finan"][1] is False
    assert html.count("<details") == 3 and html.count("<pre>") == 3  # the JSON of each side
    assert any(r["method"] == "GET" for r in finan.state.requests)  # Finan was asked


def test_a_change_at_finan_and_in_the_crm_marks_the_cells_that_differ(
    app, client, crm_headers, finan, tourwell
):
    issue(client, crm_headers)
    finan_id = provider_invoice_id(app.extensions["bridge"].settings.tourwell_base_url, 17)
    finan.state.change(finan_id, {"items.0.price": 1})
    with tourwell.state.lock:
        tourwell.state.invoices[17]["order_info"]["customer"]["name"] = "Phạm Văn Lâm"
    login(client)
    html = client.get("/admin/invoice/17/compare").get_data(as_text=True)
    customer = cells(html, "customer.name")
    assert customer["crm"] == ("Phạm Văn Lâm", True)  # what a re-sync would send
    assert customer["accepted"] == ("Phạm Văn Long", False)
    assert customer["finan"] == ("Phạm Văn Long", False)
    price = cells(html, "items.0.price")
    assert price["finan"][1] is True and price["crm"][1] is False
    assert price["finan"][0].startswith("1")
    assert cells(html, "items.0.total")["finan"][1] is True
    assert 'data-differing="0"' not in html


def test_an_invoice_finan_never_accepted_shows_the_crm_and_says_why_finan_is_empty(
    client, crm_headers, finan
):
    make_failed(client, crm_headers, finan, 20)
    login(client)
    page = client.get("/admin/invoice/20/compare")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Finan has never accepted a body for this invoice." in html
    assert cells(html, "customer.name")["crm"][0] == "Trần Thị Mai"
    assert cells(html, "customer.name")["accepted"] == ("—", False)


def test_the_crm_unavailable_still_shows_finan(client, crm_headers, finan, tourwell):
    issue(client, crm_headers)
    login(client)
    tourwell.state.fail_next("unavailable", count=10)
    page = client.get("/admin/invoice/17/compare")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert cells(html, "customer.name")["finan"] == ("Phạm Văn Long", False)
    assert 'class="problems"' in html


def test_in_vietnamese_and_for_unknown_invoices_and_strangers(client, crm_headers, finan):
    assert client.get("/admin/invoice/17/compare").status_code == 302  # not logged in
    issue(client, crm_headers)
    login(client)
    assert client.get("/admin/invoice/99/compare").status_code == 404
    html = client.get("/admin/invoice/17/compare?lang=vi").get_data(as_text=True)
    assert "Đăng nhập: lan" in html
    assert "Nội dung Finan chấp nhận lần cuối" in html
