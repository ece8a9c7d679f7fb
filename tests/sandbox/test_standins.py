"""The Finan and Tourwell stand-ins, driven over real HTTP on loopback."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from bridge.integrations.finan.signing import FinanAuth
from bridge.sandbox.finan_rules import compute_totals
from bridge.sandbox.finan_standin import create_finan_app
from bridge.sandbox.loopback import LoopbackServer
from bridge.sandbox.samples import FINAN_WORKED_EXAMPLE, sample_invoices
from bridge.sandbox.tourwell_standin import create_tourwell_app

CLIENT_ID = "tourwell-bridge"
SECRET = "finan-secret-2024"
PREFIX = "/open"
INVOICE_ID = "f6906b54-edfb-427f-9204-5f74948b33e8"
VAT10 = FINAN_WORKED_EXAMPLE["items"][0]["taxes"][0]["tax_id"]

WORKED_EXAMPLE = FINAN_WORKED_EXAMPLE  # 594,000 total, 60,000 tax


def _compact(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _session(auth: requests.auth.AuthBase | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never route through an environment proxy
    session.auth = auth
    return session


# --- Finan ------------------------------------------------------------------------------


class Finan:
    """A running Finan stand-in and a correctly signing client for it."""

    def __init__(self, server: LoopbackServer, app) -> None:
        self.server = server
        self.state = app.extensions["finan_standin"]
        self.base = server.url + PREFIX
        self.session = _session(FinanAuth(CLIENT_ID, SECRET, self.base))

    def url(self, path: str) -> str:
        return self.base + path

    def put(
        self, body: object = WORKED_EXAMPLE, invoice_id: str = INVOICE_ID, **kwargs
    ) -> requests.Response:
        return self.session.put(
            self.url(f"/api/v1/invoice/update-invoice/{invoice_id}"),
            data=body if isinstance(body, bytes) else _compact(body),
            headers={"Content-Type": "application/json"},
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )


@pytest.fixture(scope="module")
def finan_server() -> Iterator[tuple[LoopbackServer, object]]:
    # One server for the module (starting and stopping one per test is most of the run
    # time); each test gets it with its state wiped.
    app = create_finan_app(client_id=CLIENT_ID, secret=SECRET, prefix=PREFIX)
    with LoopbackServer(app) as server:
        yield server, app


@pytest.fixture
def finan(finan_server: tuple[LoopbackServer, object]) -> Iterator[Finan]:
    server, app = finan_server
    client = Finan(server, app)
    client.state.reset()
    yield client
    client.state.reset()
    client.session.close()


def _assert_client_class(response: requests.Response, status: int) -> dict:
    assert response.status_code == status
    envelope = response.json()
    code = str(envelope["code"])
    assert len(code) == 6 and code[2] == "4", code
    assert envelope["data"] is None and envelope["request_id"]
    return envelope


def test_finan_accepts_the_worked_example_and_computes_its_totals(finan: Finan) -> None:
    response = finan.put()

    assert response.status_code == 200
    envelope = response.json()
    assert envelope["code"] == 102001
    data = envelope["data"]
    assert (data["total_amount"], data["tax_amount"]) == (594000, 60000)
    assert data["payment_due_amount"] == 594000
    assert data["id"] == INVOICE_ID
    assert data["order_code"] == "HD1"
    assert len(data["system_code"]) == 8 and data["system_code"].isupper()
    assert data["contact_info"] == {"contact_name": "NhanTr10abc", "contact_number": ""}
    assert data["value_at"] == WORKED_EXAMPLE["value_at"]
    assert finan.state.invoices[INVOICE_ID]["body"] == WORKED_EXAMPLE


def test_finan_upserts_by_id_and_keeps_the_invoice_codes(finan: Finan) -> None:
    first = finan.put().json()["data"]
    changed = {**WORKED_EXAMPLE, "discounts": []}
    second = finan.put(changed).json()

    assert second["code"] == 102000
    assert second["data"]["total_amount"] == 660000
    for field in ("order_code", "system_code", "created_at"):
        assert second["data"][field] == first[field]

    other = finan.put(invoice_id="0b3c8a52-5d5e-4d8a-9a53-3f5cc3f0b6f1").json()["data"]
    assert other["order_code"] == "HD2"

    detail = finan.session.get(finan.url(f"/api/v1/invoice/detail/{INVOICE_ID}?lang=vi"))
    assert detail.status_code == 200
    assert detail.json()["data"]["total_amount"] == 660000


def test_finan_create_makes_a_new_invoice(finan: Finan) -> None:
    response = finan.session.post(
        finan.url("/api/v1/invoice/create"), data=_compact(WORKED_EXAMPLE)
    )
    assert response.status_code == 200
    assert response.json()["code"] == 102001
    assert response.json()["data"]["id"] in finan.state.invoices


def test_finan_detail_of_an_unknown_invoice_is_a_client_error(finan: Finan) -> None:
    response = finan.session.get(finan.url(f"/api/v1/invoice/detail/{INVOICE_ID}"))
    _assert_client_class(response, 404)


def _signed_put(finan: Finan) -> requests.PreparedRequest:
    """A correctly signed update-invoice request, for a test to spoil before sending."""
    return requests.Request(
        "PUT",
        finan.url(f"/api/v1/invoice/update-invoice/{INVOICE_ID}"),
        data=_compact(WORKED_EXAMPLE),
        auth=finan.session.auth,
    ).prepare()


def test_finan_refuses_a_tampered_body(finan: Finan) -> None:
    request = _signed_put(finan)
    request.body = _compact({**WORKED_EXAMPLE, "discounts": []})
    request.headers["Content-Length"] = str(len(request.body))

    response = finan.session.send(request, timeout=30)

    envelope = _assert_client_class(response, 401)
    assert envelope["message"]["content"] == "signature mismatch"
    assert not finan.state.invoices


@pytest.mark.parametrize(
    ("auth_kwargs", "why"),
    [
        ({"secret": "not-the-secret"}, "signature mismatch"),
        ({"client_id": "someone-else"}, "unknown client id"),
        ({"clock": lambda: time.time() - 45}, "is stale"),
        ({"clock": lambda: time.time() + 45}, "in the future"),
    ],
    ids=["wrong-secret", "wrong-client", "stale", "future"],
)
def test_finan_refuses_a_badly_signed_request(finan: Finan, auth_kwargs: dict, why: str) -> None:
    args = {"client_id": CLIENT_ID, "secret": SECRET, "base_url": finan.base, **auth_kwargs}
    finan.session.auth = FinanAuth(**args)

    envelope = _assert_client_class(finan.put(), 401)

    assert envelope["code"] == 104010
    assert why in envelope["message"]["content"]
    assert finan.state.requests[-1]["outcome"] == "unauthorized"


@pytest.mark.parametrize("header", ["x-client-id", "x-timestamp", "x-signature"])
def test_finan_refuses_a_missing_header(finan: Finan, header: str) -> None:
    request = _signed_put(finan)
    del request.headers[header]

    envelope = _assert_client_class(finan.session.send(request, timeout=30), 401)
    assert envelope["message"]["content"] == f"missing header {header}"


def test_finan_signs_without_its_prefix(finan: Finan) -> None:
    # Signing the prefixed path (a base URL without /open) must fail at the stand-in.
    finan.session.auth = FinanAuth(CLIENT_ID, SECRET, finan.server.url)
    _assert_client_class(finan.put(), 401)


def _edit(**changes: object) -> dict:
    body = copy.deepcopy(WORKED_EXAMPLE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[leaf] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_edit(items__0__quantity=1.5), "items[0].quantity"),
        (_edit(items__1__taxes__0__tax_id="VAT10"), "items[1].taxes[0].tax_id"),
        (_edit(items__0__taxes__0__rate=10.5), "items[0].taxes[0].rate"),
        (_edit(customer={"phone": "+84912345678"}), "customer.name"),
        (_edit(customer={"name": "A", "phone": "0912 345 678"}), "customer.phone"),
        (_edit(tax_type="vat_included"), "tax_type"),
        (_edit(value_at="2024-09-05 16:59:59"), "value_at"),
        (_edit(due_at="2024-10-05T16:59:59Z"), "due_at"),
        (_edit(payment_config=["cash"]), "payment_config[0]"),
        (_edit(discounts=[{"is_rate": False, "value": 10_000_000}]), "discounts"),
        ([WORKED_EXAMPLE], "body"),
        (b"{not json", "body"),
    ],
)
def test_finan_validates_the_body_and_names_the_field(finan: Finan, body, field: str) -> None:
    envelope = _assert_client_class(finan.put(body), 400)
    assert envelope["code"] == 104000
    assert envelope["message"]["content"].startswith(f"{field}: ")
    assert not finan.state.invoices


def test_finan_validates_the_id_is_a_uuid(finan: Finan) -> None:
    envelope = _assert_client_class(finan.put(invoice_id="HD017"), 400)
    assert envelope["message"]["content"].startswith("id: ")


def test_finan_arithmetic_for_each_tax_type() -> None:
    body = _edit(discounts=[{"is_rate": False, "value": 6000}])
    items = [
        {
            "name": "a",
            "price": Decimal("100000"),
            "quantity": 2,
            "taxes": [{"tax_id": VAT10, "rate": 8}],
        },
        {"name": "b", "price": 33333, "quantity": 1, "taxes": [{"tax_id": VAT10, "rate": 10}]},
        {"name": "c", "price": 50000, "quantity": 1, "taxes": []},
    ]
    body["items"] = items
    excluding = compute_totals({**body, "tax_type": "price_excluding_tax"})
    including = compute_totals({**body, "tax_type": "price_including_tax"})
    untaxed = compute_totals({**body, "tax_type": "tax_not_applicable"})

    # 216,000 + 36,666.3 + 50,000 - 6,000 = 296,666.3; tax 16,000 + 3,333.3
    assert excluding == (Decimal(296666), Decimal(19333))
    # 283,333 - 6,000; tax 200,000 x 8/108 + 33,333 x 10/110 = 14,814.8 + 3,030.3
    assert including == (Decimal(277333), Decimal(17845))
    assert untaxed == (Decimal(277333), Decimal(0))


# --- Finan faults -----------------------------------------------------------------------


def test_finan_server_error_then_recovers(finan: Finan) -> None:
    finan.state.fail_next("server_error", count=2)

    for _ in range(2):
        response = finan.put()
        assert response.status_code == 500
        assert response.json()["code"] == 105000
    assert finan.put().status_code == 200
    outcomes = [entry["outcome"] for entry in finan.state.requests]
    assert outcomes == ["fault:server_error", "fault:server_error", "created"]


def test_finan_server_error_with_http_200(finan: Finan) -> None:
    finan.state.fail_next("server_error_200")
    response = finan.put()
    assert response.status_code == 200
    assert str(response.json()["code"])[2] == "5"


def test_finan_unavailable_is_a_bare_503(finan: Finan) -> None:
    finan.state.fail_next("unavailable")
    response = finan.put()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "json" not in response.headers["Content-Type"]


def test_finan_client_error_fault(finan: Finan) -> None:
    finan.state.fail_next("client_error")
    envelope = _assert_client_class(finan.put(), 400)
    assert (envelope["code"], envelope["message"]["content"]) == (104001, "invalid invoice")
    assert not finan.state.invoices


def test_finan_hang_answers_late(finan: Finan) -> None:
    finan.state.fail_next("hang", delay=0.3)
    started = time.monotonic()
    response = finan.put()
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200

    # Held ten times longer than the caller's read timeout: it gives up first, however busy.
    finan.state.fail_next("hang", delay=1.0)
    with pytest.raises(requests.Timeout):
        finan.put(timeout=(30, 0.1))
    # The stand-in still finishes the abandoned request; wait for it so it can't land in
    # the next test's state.
    deadline = time.monotonic() + 60
    while len(finan.state.requests) < 2:
        assert time.monotonic() < deadline, "the stand-in never finished the request"
        time.sleep(0.02)
    assert finan.state.requests[-1]["outcome"] == "updated"


def test_finan_reset_drops_the_connection(finan: Finan) -> None:
    finan.state.fail_next("reset")
    with pytest.raises(requests.ConnectionError):
        finan.put()
    assert finan.state.requests[-1]["outcome"] == "fault:reset"
    assert not finan.state.invoices
    assert finan.put().status_code == 200  # the next request is served normally


def test_finan_control_routes(finan: Finan) -> None:
    plain = _session()
    control = finan.server.url + "/_standin"
    assert plain.post(control + "/faults", json={"mode": "unavailable"}).status_code == 200
    assert plain.post(control + "/faults", json={"mode": "melt"}).status_code == 400

    assert finan.put().status_code == 503
    assert finan.put().status_code == 200

    log = plain.get(control + "/requests").json()["requests"]
    assert [(e["method"], e["status"], e["outcome"]) for e in log] == [
        ("PUT", 503, "fault:unavailable"),
        ("PUT", 200, "created"),
    ]
    assert log[1]["path"] == f"/api/v1/invoice/update-invoice/{INVOICE_ID}"
    assert log[1]["body"]["reference_code"] == "NhanTest"

    assert plain.post(control + "/reset").status_code == 200
    assert finan.state.requests == [] and finan.state.invoices == {}


# --- Tourwell ---------------------------------------------------------------------------

TOKEN = "tw-api-token-0123456789"


class Tourwell:
    def __init__(self, server: LoopbackServer, app) -> None:
        self.server = server
        self.state = app.extensions["tourwell_standin"]
        self.session = _session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def url(self, path: str) -> str:
        return self.server.url + path


@pytest.fixture
def tourwell_factory() -> Iterator:
    servers: list[LoopbackServer] = []

    def start(**kwargs) -> Tourwell:
        app = create_tourwell_app(token=TOKEN, invoices=sample_invoices(), **kwargs)
        server = LoopbackServer(app).start()
        servers.append(server)
        return Tourwell(server, app)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def tourwell(tourwell_factory) -> Tourwell:
    return tourwell_factory()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", TOKEN, "Bearer "])
def test_tourwell_checks_the_token(tourwell: Tourwell, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _session().get(tourwell.url("/api/v1/invoices/17"), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Unauthenticated."}


def test_tourwell_get_and_404(tourwell: Tourwell) -> None:
    response = tourwell.session.get(tourwell.url("/api/v1/invoices/17"))
    assert response.status_code == 200
    assert response.json() == {"data": sample_invoices()[17]}

    missing = tourwell.session.get(tourwell.url("/api/v1/invoices/999"))
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Invoice not found"}


def test_tourwell_put_lays_the_fields_on_the_invoice(tourwell: Tourwell) -> None:
    update = {
        "total_amount": "6,000,000",
        "note": "Finan HD1 / SOSPMFBA",
        "company_name": "Công ty TNHH Du lịch Sen Vàng",
        "lookup_url": "https://pay.finan.example/f6906b54",
    }
    response = tourwell.session.put(tourwell.url("/api/v1/invoices/17"), json=update)

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Invoice updated successfully",
        "data": {"code": "HD017"},
    }
    invoice = tourwell.session.get(tourwell.url("/api/v1/invoices/17")).json()["data"]
    assert invoice["total_amount"] == {"foreign": 0, "base": "6,000,000"}
    assert invoice["request_info"]["note"] == "Finan HD1 / SOSPMFBA"
    assert invoice["request_info"]["company_name"] == "Công ty TNHH Du lịch Sen Vàng"
    assert invoice["request_info"]["forward_email"] == "long.pv@gmail.com"  # untouched
    assert invoice["lookup_url"] == "https://pay.finan.example/f6906b54"


def test_tourwell_put_refuses_non_string_fields(tourwell: Tourwell) -> None:
    response = tourwell.session.put(
        tourwell.url("/api/v1/invoices/17"), json={"total_amount": 6000000}
    )
    assert response.status_code == 422
    assert "total_amount" in response.json()["errors"]


def test_tourwell_cancel(tourwell: Tourwell) -> None:
    response = tourwell.session.post(
        tourwell.url("/api/v1/invoices/17/cancel"), json={"cancel_note": "Hóa đơn xuất sai số tiền"}
    )
    assert response.status_code == 201
    assert response.json() == {
        "success": True,
        "message": "Invoice Canceled successfully",
        "data": {"code": "HD017"},
    }
    assert tourwell.state.cancelled == {17: "Hóa đơn xuất sai số tiền"}

    bare = tourwell.session.post(tourwell.url("/api/v1/invoices/18/cancel"))
    assert bare.status_code == 201
    assert tourwell.session.post(tourwell.url("/api/v1/invoices/999/cancel")).status_code == 404


def test_tourwell_rate_limit_over_a_sliding_window(tourwell_factory) -> None:
    now = [1000.0]
    tourwell = tourwell_factory(rate_limit_per_min=3, clock=lambda: now[0])
    url = tourwell.url("/api/v1/invoices/17")

    for step in range(3):
        now[0] = 1000.0 + 10 * step  # requests at 1000, 1010, 1020
        assert tourwell.session.get(url).status_code == 200
    now[0] = 1030.0
    refused = tourwell.session.get(url)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"  # until the request at 1000 leaves
    assert refused.json()["success"] is False

    now[0] = 1060.0  # the first request has left the window
    assert tourwell.session.get(url).status_code == 200
    assert tourwell.session.get(url).status_code == 429


def test_tourwell_faults(tourwell: Tourwell) -> None:
    url = tourwell.url("/api/v1/invoices/17")
    tourwell.state.fail_next("rate_limited")
    limited = tourwell.session.get(url)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")

    tourwell.state.fail_next("unavailable")
    assert tourwell.session.get(url).status_code == 503

    tourwell.state.fail_next("hang", delay=0.2)
    started = time.monotonic()
    assert tourwell.session.get(url).status_code == 200
    assert time.monotonic() - started >= 0.2

    statuses = [entry["status"] for entry in tourwell.state.requests]
    assert statuses == [429, 503, 200]


def test_tourwell_control_routes_need_no_token(tourwell: Tourwell) -> None:
    plain = _session()
    control = tourwell.url("/_standin")
    assert plain.post(control + "/faults", json={"mode": "unavailable", "count": 2}).json() == {
        "pending": ["unavailable", "unavailable"]
    }
    tourwell.session.put(tourwell.url("/api/v1/invoices/17"), json={"note": "x"})
    assert [e["status"] for e in plain.get(control + "/requests").json()["requests"]] == [503]
    # The faulted PUT changed nothing: change the invoice here, for the reset to undo.
    with tourwell.state.lock:
        tourwell.state.invoices[17]["request_info"]["note"] = "changed"
        tourwell.state.cancelled[17] = "changed"

    assert plain.post(control + "/reset").status_code == 200
    assert tourwell.state.pending_faults() == []
    assert tourwell.state.requests == [] and tourwell.state.cancelled == {}
    invoice = tourwell.session.get(tourwell.url("/api/v1/invoices/17")).json()["data"]
    assert invoice == sample_invoices()[17]
