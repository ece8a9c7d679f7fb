"""The status page's languages, Vietnam times and đồng amounts, the customer in the list
(search, date filter, CSV export), and the invoice read as an invoice (bridge/web/i18n.py).

The ``client`` fixture reads English (tests/conftest.py); these tests say which language
they ask for, or ask for none.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from cryptography.fernet import Fernet
from helpers import ADMIN, ADMIN_TOKEN, csrf_token, issue, make_failed

import bridge.web
from bridge.store.connection import record_key
from bridge.store.records import fold
from bridge.web.i18n import money, vietnam_day_bounds, vietnam_time_text, vn_time


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


def text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:400]
    return response.get_data(as_text=True)


# --- the language ---


def test_vietnamese_without_a_preference(app):
    client = app.test_client()  # no Accept-Language at all
    html = text(client.get("/admin/login"))
    assert '<html lang="vi">' in html and "Đăng nhập" in html


@pytest.mark.parametrize(
    ("accept", "lang"),
    [("en-US,en;q=0.9", "en"), ("vi-VN,vi;q=0.9,en;q=0.5", "vi"), ("fr-FR,fr", "vi"), ("en", "en")],
)
def test_the_browsers_language_decides_between_vi_and_en(app, accept, lang):
    html = text(app.test_client().get("/admin/login", headers={"Accept-Language": accept}))
    assert f'<html lang="{lang}">' in html
    assert ("Đăng nhập" in html) == (lang == "vi")


def test_the_switch_wins_and_is_remembered(app):
    client = app.test_client()
    switched = client.get("/admin/login?lang=en", headers={"Accept-Language": "vi"})
    assert '<html lang="en">' in text(switched)
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith("bridge_lang=en;") and "Path=/admin" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert '<html lang="en">' in text(client.get("/admin/login", headers={"Accept-Language": "vi"}))
    assert '<html lang="vi">' in text(client.get("/admin/login?lang=vi"))
    assert '<html lang="vi">' in text(client.get("/admin/login"))
    unknown = client.get("/admin/login?lang=fr")  # not ours: ignored, nothing remembered
    assert '<html lang="vi">' in text(unknown) and "Set-Cookie" not in unknown.headers


def test_the_switch_is_no_bad_filter(operator):
    assert '<html lang="vi">' in text(operator.get("/admin/?lang=vi&state=failed"))


def test_the_views_messages_are_translated(app):
    client = app.test_client()
    form = client.get("/admin/login").get_data(as_text=True)
    refused = client.post("/admin/login", data={"csrf_token": csrf_token(form), "token": "nope"})
    assert refused.status_code == 401
    assert "Mã này không nằm trong các mã quản trị" in refused.get_data(as_text=True)


def test_a_resync_says_its_outcome_in_vietnamese(app, crm_headers, finan):
    client = app.test_client()
    form = client.get("/admin/login?lang=vi").get_data(as_text=True)
    client.post("/admin/login", data={"csrf_token": csrf_token(form), "token": ADMIN_TOKEN})
    make_failed(client, crm_headers, finan, 20)
    page = text(client.get("/admin/invoice/20"))
    client.post("/admin/invoice/20/resync", data={"csrf_token": csrf_token(page)})
    after = text(client.get("/admin/invoice/20"))
    assert "Đã đồng bộ lại hóa đơn: Finan đã nhận" in after
    assert 'data-state="issued">đã phát hành</span>' in after


# --- times and amounts ---


def test_times_are_vietnam_time_with_the_utc_instant_on_hover():
    shown = str(vn_time("2026-12-07T12:22:05.123Z"))
    assert shown == (
        '<time datetime="2026-12-07T12:22:05.123Z" title="2026-12-07T12:22:05.123Z UTC">'
        "07/12/2026 19:22</time>"
    )
    assert vietnam_time_text("2026-12-31T17:30:00.000Z") == "01/01/2027 00:30"
    assert str(vn_time(None)) == "—"


def test_amounts_in_dong_exact_in_each_locale():
    assert money(Decimal("40499030"), "vi") == "40.499.030\u00a0₫"
    assert money(Decimal("40499030"), "en") == "40,499,030\u00a0₫"
    assert money(Decimal("12345678901234.5"), "vi") == "12.345.678.901.234,5\u00a0₫"
    assert money("0", "en") == "0\u00a0₫"
    assert money(None, "vi") == "—"


def test_a_vietnam_day_is_from_17_00_utc_the_day_before():
    low, high = vietnam_day_bounds(date(2026, 12, 7), date(2026, 12, 7))
    assert datetime.fromtimestamp(low, UTC).isoformat() == "2026-12-06T17:00:00+00:00"
    assert high - low == 24 * 3600
    assert vietnam_day_bounds(None, None) == (float("-inf"), float("inf"))


# --- the list: customer, total, search by name, dates, CSV ---


def test_the_list_shows_customer_total_and_vietnam_times(operator, crm_headers):
    for invoice_id in (17, 19):
        assert issue(operator, crm_headers, invoice_id).status_code == 201
    html = text(operator.get("/admin/?lang=vi"))
    assert "Phạm Văn Long" in html and "Công ty Cổ phần Thương mại Hoàng Anh" in html
    assert "40.499.030\u00a0₫" in html
    assert re.search(
        r'<time datetime="[^"]+Z" title="[^"]+Z UTC">\d\d/\d\d/20\d\d \d\d:\d\d</time>', html
    )


def test_an_old_record_without_a_customer_shows_a_dash(operator, crm_headers, redis):
    assert issue(operator, crm_headers, 17).status_code == 201
    stored = json.loads(redis.get(record_key(17)))
    del stored["customer"]  # as saved before the bridge kept names
    redis.set(record_key(17), json.dumps(stored))
    html = text(operator.get("/admin/"))
    assert '<td class="customer">—</td>' in html


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("tran thi mai", ["20"]),
        ("TRẦN", ["20"]),
        ("Hoàng Anh", ["19"]),
        ("cong ty", ["19", "18"]),
        ("hd01", ["19", "18", "17"]),
        ("17", ["17"]),
        ("nobody", []),
    ],
)
def test_the_search_finds_customers_by_name_with_or_without_accents(
    operator, crm_headers, finan, query, found
):
    for invoice_id in (17, 18, 19):
        assert issue(operator, crm_headers, invoice_id).status_code == 201
    make_failed(operator, crm_headers, finan, 20)
    listed = operator.get("/admin/invoices", headers=ADMIN, query_string={"q": query}).json
    assert [str(record["invoice_id"]) for record in listed["data"]["invoices"]] == found


def test_a_name_search_keeps_to_the_state_asked(operator, crm_headers, finan):
    assert issue(operator, crm_headers, 18).status_code == 201
    make_failed(operator, crm_headers, finan, 21)
    listed = operator.get(
        "/admin/invoices", headers=ADMIN, query_string={"q": "công ty", "state": "failed"}
    ).json
    assert [record["invoice_id"] for record in listed["data"]["invoices"]] == [21]


def test_fold_drops_case_and_accents():
    assert fold("  Trần   Thị MAI ") == "tran thi mai"
    assert fold("Đỗ Minh Tuấn") == "do minh tuan"


def test_the_date_range_lists_the_days_asked(operator, crm_headers, redis):
    for invoice_id in (17, 18, 19):
        assert issue(operator, crm_headers, invoice_id).status_code == 201
    # 17 changed on 1 December (Vietnam), 18 at 23:59 on 6 December, 19 today.
    redis.zadd("bridge:index:all", {17: vietnam_day_bounds(date(2026, 12, 1), None)[0] + 60})
    redis.zadd("bridge:index:all", {18: vietnam_day_bounds(None, date(2026, 12, 6))[1] - 1})

    def ids(**query):
        answer = operator.get("/admin/invoices", headers=ADMIN, query_string=query)
        assert answer.status_code == 200, answer.json
        return [record["invoice_id"] for record in answer.json["data"]["invoices"]], answer.json

    assert ids(**{"from": "2026-12-01", "to": "2026-12-06"})[0] == [18, 17]
    assert ids(**{"from": "2026-12-02", "to": "2026-12-06"})[0] == [18]
    assert ids(**{"to": "2026-11-30"})[0] == []
    listed, answer = ids(**{"from": "2026-12-06", "per_page": 1, "page": 2})
    assert answer["data"]["total"] == 2 and listed == [18]
    bad = operator.get(
        "/admin/invoices", headers=ADMIN, query_string={"from": "2026-12-07", "to": "2026-12-01"}
    )
    assert bad.status_code == 422 and "from" in bad.json["errors"]
    assert operator.get("/admin/?from=07/12/2026").status_code == 422


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Vietnamese right
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_the_csv_is_what_the_list_shows_on_every_page(operator, crm_headers, finan, redis):
    for invoice_id in (17, 18, 19):
        assert issue(operator, crm_headers, invoice_id).status_code == 201
    make_failed(operator, crm_headers, finan, 20)

    rows = csv_rows(operator.get("/admin/invoices.csv?lang=vi&per_page=1"))
    assert rows[0] == [
        "Mã hóa đơn",
        "Số hóa đơn",
        "Khách hàng",
        "Tổng tiền",
        "Trạng thái",
        "Cập nhật lúc",
    ]
    assert [row[:5] for row in rows[1:]] == [
        ["20", "HD020", "Trần Thị Mai", "", "bị từ chối"],
        ["19", "HD019", "Công ty Cổ phần Thương mại Hoàng Anh", "40499030", "đã phát hành"],
        ["18", "HD018", "Công ty TNHH Phần mềm Sao Việt", "14648400", "đã phát hành"],
        ["17", "HD017", "Phạm Văn Long", "6325000", "đã phát hành"],
    ]
    assert all(re.fullmatch(r"\d\d/\d\d/20\d\d \d\d:\d\d", row[5]) for row in rows[1:])

    failed = csv_rows(operator.get("/admin/invoices.csv?state=failed&lang=en"))
    assert failed[0][0] == "Invoice id" and [row[0] for row in failed[1:]] == ["20"]
    by_name = csv_rows(operator.get("/admin/invoices.csv?q=hoang+anh"))
    assert [row[0] for row in by_name[1:]] == ["19"]
    past = csv_rows(operator.get("/admin/invoices.csv?from=2020-01-01&to=2020-01-02"))
    assert past[1:] == []
    disposition = operator.get("/admin/invoices.csv?from=2020-01-01").headers["Content-Disposition"]
    assert disposition == 'attachment; filename="invoices-2020-01-01.csv"'


def test_the_csv_link_carries_the_filters(operator, crm_headers):
    html = text(operator.get("/admin/?q=long&state=issued&from=2026-12-01&to=2026-12-07"))
    link = re.search(r'<a class="csv" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    for part in ("q=long", "state=issued", "from=2026-12-01", "to=2026-12-07"):
        assert part in link


def test_the_csv_needs_a_login(client):
    answer = client.get("/admin/invoices.csv")
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]


def test_customer_names_are_encrypted_at_rest(make_app, crm_headers, redis):
    app = make_app(
        BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN, BRIDGE_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    client = app.test_client()
    assert issue(client, crm_headers, 17).status_code == 201
    for key in redis.keys("*"):
        if redis.type(key) == b"string":
            assert "Phạm Văn Long".encode() not in redis.get(key)
    listed = client.get("/admin/invoices", headers=ADMIN, query_string={"q": "pham van"}).json
    assert [record["invoice_id"] for record in listed["data"]["invoices"]] == [17]


# --- the invoice as people read it ---


def test_the_invoice_page_reads_the_last_accepted_body(operator, crm_headers):
    assert issue(operator, crm_headers, 18).status_code == 201
    html = text(operator.get("/admin/invoice/18?lang=vi"))
    assert '<dd class="customer">Công ty TNHH Phần mềm Sao Việt</dd>' in html
    assert "Tour Đà Nẵng - Hội An 4N3Đ - Người lớn" in html
    assert "4.990.000\u00a0₫" in html and "10.778.400\u00a0₫" in html  # 2 × 4 990 000 + 8 %
    assert "−200.000\u00a0₫" in html  # the fixed discount
    assert '<td class="num total">14.648.400\u00a0₫</td>' in html  # what Finan answered
    assert "Tổng tiền Finan trả về" not in html  # shown only when it differs
    assert "<details><summary>Xem JSON</summary><pre>" in html  # the raw body, one click away


# --- the catalog: every text translated, and the compiled catalog up to date ---

WEB = Path(bridge.web.__file__).resolve().parent
CATALOG = WEB / "translations" / "vi" / "LC_MESSAGES"


def extracted_texts() -> set[str | tuple[str, ...]]:
    """What pybabel extract (bridge/web/babel.cfg) finds in the views and templates."""
    methods = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    found = set()
    for _name, _line, message, _comments, _context in extract_from_dir(
        str(WEB), methods, keywords=keywords
    ):
        found.add(message)
    return found


def test_every_text_of_the_page_has_its_vietnamese():
    with open(CATALOG / "messages.po", "rb") as po:
        catalog = read_po(po, locale="vi")
    translated = {
        message.id
        for message in catalog
        if message.id
        and all(message.string if isinstance(message.string, tuple) else [message.string])
    }
    missing = sorted(str(text) for text in extracted_texts() if text not in translated)
    assert not missing, f"without Vietnamese (bridge/web/translations/README.md): {missing}"


def test_the_compiled_catalog_is_the_po_compiled():
    with open(CATALOG / "messages.po", "rb") as po:
        catalog = read_po(po, locale="vi")
    with open(CATALOG / "messages.mo", "rb") as mo:
        compiled = read_mo(mo)
    assert pairs(catalog) == pairs(compiled)


def pairs(catalog) -> set:
    def hashable(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    return {(hashable(message.id), hashable(message.string)) for message in catalog if message.id}
