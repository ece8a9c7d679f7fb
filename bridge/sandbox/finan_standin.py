"""A stand-in for Finan, checked like the real one (DESIGN.md section 2).

A real HTTP app (serve it with ``LoopbackServer``) that verifies every request's signature,
validates the body the way Finan does, computes Finan's totals, keeps the invoices it was
sent, and fails on cue. Its arithmetic is written here independently of the bridge's
mapping on purpose: it plays the other system, so a mistake in the bridge shows up as a
disagreement instead of being copied into both sides.

State lives on ``app.extensions["finan_standin"]`` (a ``FinanStandin``). Other processes
(the sandbox, a test driving a separate server) use the control routes instead:
``GET /_standin/requests``, ``GET /_standin/invoices``, ``POST /_standin/faults``
``{"mode", "count", "delay"}`` and ``POST /_standin/reset``. They need no signature.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import string
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Flask, Response, jsonify, request

from bridge import signing
from bridge.sandbox.standin_state import Fault, StandinState, add_control_routes
from bridge.signing import SignatureError

# Finan's six-digit codes: the third digit is the HTTP class (2 ok, 4 client, else server).
CODE_UPDATED = 102000
CODE_CREATED = 102001
CODE_INVALID = 104000
CODE_REJECTED = 104001
CODE_NOT_FOUND = 104004
CODE_METHOD_NOT_ALLOWED = 104005
CODE_UNAUTHORIZED = 104010
CODE_SERVER_ERROR = 105000

TAX_TYPES = ("price_excluding_tax", "price_including_tax", "tax_not_applicable")

# "server_error_200" is Finan answering HTTP 200 with a server-class code in the envelope:
# the bridge must classify by the code, not by the HTTP status.
# "hang" waits ``delay`` before handling the request; "late_answer" handles (stores) it
# first and then waits ``delay`` before answering, so a caller that gave up, or died, in the
# meantime never learns that Finan took it.
FAULT_MODES = (
    "server_error",
    "server_error_200",
    "unavailable",
    "client_error",
    "hang",
    "late_answer",
    "reset",
)

_FINAN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_FINAN_PHONE = re.compile(r"\+84[0-9]{9,10}")
_VIETNAM = timezone(timedelta(hours=7))  # Finan stamps created_at in Vietnam time


class InvalidBody(Exception):
    """The body breaks one of Finan's rules; ``field`` names where."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


class FinanStandin(StandinState):
    """The stand-in's memory: invoices by id, a log of every request, queued faults."""

    FAULT_MODES = FAULT_MODES

    def __init__(self, client_id: str, secret: str, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.client_id = client_id
        self._secret = secret
        self.invoices: dict[str, dict[str, Any]] = {}  # id -> {"body": ..., "data": ...}
        self._next_order_number = 1

    def __repr__(self) -> str:
        return f"FinanStandin(client_id={self.client_id!r}, invoices={len(self.invoices)})"

    def reset(self) -> None:
        """Forget invoices, the request log and pending faults."""
        super().reset()
        with self.lock:
            self.invoices.clear()
            self._next_order_number = 1

    def invoices_view(self) -> dict[str, Any]:
        return {"invoices": {k: dict(v) for k, v in self.invoices.items()}}

    def verify(
        self, headers: Mapping[str, str], method: str, path: str, body: bytes, now: float
    ) -> None:
        """Check a request's signature with this stand-in's credentials."""
        signing.verify(
            headers, method, path, body, client_id=self.client_id, secret=self._secret, now=now
        )

    def store(
        self, invoice_id: str, body: dict[str, Any], totals: tuple[Decimal, Decimal], now: float
    ) -> tuple[dict[str, Any], bool]:
        """Upsert; returns Finan's ``data`` and whether the invoice is new."""
        total, tax = totals
        customer = body.get("customer") or {}
        with self.lock:
            previous = self.invoices.get(invoice_id)
            if previous is None:
                identity = {
                    "order_code": f"HD{self._next_order_number}",
                    "system_code": "".join(
                        secrets.choice(string.ascii_uppercase) for _ in range(8)
                    ),
                    "created_at": datetime.fromtimestamp(now, _VIETNAM).isoformat(),
                }
                self._next_order_number += 1
            else:
                identity = {
                    k: previous["data"][k] for k in ("order_code", "system_code", "created_at")
                }
            data = {
                "id": invoice_id,
                **identity,
                "value_at": body.get("value_at"),
                "due_at": body.get("due_at"),
                "total_amount": int(total),
                "tax_amount": int(tax),
                "contact_info": {
                    "contact_name": customer.get("name") or "",
                    "contact_number": customer.get("phone") or "",
                },
                "payment_config": list(body.get("payment_config") or []),
                # Nothing is ever paid at the stand-in, so everything is still due.
                "payment_due_amount": int(total),
            }
            self.invoices[invoice_id] = {"body": body, "data": data}
            return dict(data), previous is None


# --- Finan's rules and arithmetic ------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, Decimal | float)


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _optional_list(body: Mapping[str, Any], field: str) -> list[Any]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidBody(field, "must be a list")
    return value


def _check_time(body: Mapping[str, Any], field: str) -> None:
    value = body.get(field)
    if not isinstance(value, str) or not _FINAN_TIME.fullmatch(value):
        raise InvalidBody(field, "must be a time like 2024-09-05T16:59:59.999Z")
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise InvalidBody(field, f"{value!r} is not a real date and time") from None


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidBody(where, "must be an object")
    if not isinstance(item.get("name"), str) or not item["name"].strip():
        raise InvalidBody(f"{where}.name", "is required")
    if not _is_number(item.get("price")) or item["price"] < 0:
        raise InvalidBody(f"{where}.price", "must be a number, not negative")
    if not _is_int(item.get("quantity")) or item["quantity"] < 1:
        raise InvalidBody(f"{where}.quantity", "must be an integer, at least 1")
    for t, tax in enumerate(_optional_list(item, "taxes")):
        at = f"{where}.taxes[{t}]"
        if not isinstance(tax, dict):
            raise InvalidBody(at, "must be an object")
        if not _is_uuid(tax.get("tax_id")):
            raise InvalidBody(f"{at}.tax_id", "must be a UUID")
        if not _is_int(tax.get("rate")) or not 0 <= tax["rate"] <= 100:
            raise InvalidBody(f"{at}.rate", "must be an integer from 0 to 100")
        if "name" in tax and not isinstance(tax["name"], str):
            raise InvalidBody(f"{at}.name", "must be a string")


def _check_customer(customer: Any) -> None:
    if not isinstance(customer, dict):
        raise InvalidBody("customer", "is required and must be an object")
    if not isinstance(customer.get("name"), str) or not customer["name"].strip():
        raise InvalidBody("customer.name", "is required")
    phone = customer.get("phone")
    if phone not in (None, "") and (
        not isinstance(phone, str) or not _FINAN_PHONE.fullmatch(phone)
    ):
        raise InvalidBody("customer.phone", "must be in +84 form, e.g. +84912345678")
    email = customer.get("email")
    if email not in (None, "") and (not isinstance(email, str) or "@" not in email):
        raise InvalidBody("customer.email", "must be an email address")
    if not isinstance(customer.get("address", ""), str | None):
        raise InvalidBody("customer.address", "must be a string")


def validate_invoice_body(body: Any) -> None:
    """Raise ``InvalidBody`` naming the first field Finan would refuse."""
    if not isinstance(body, dict):
        raise InvalidBody("body", "must be a JSON object")
    _check_time(body, "value_at")
    _check_time(body, "due_at")
    if not isinstance(body.get("reference_code", ""), str | None):
        raise InvalidBody("reference_code", "must be a string")
    if body.get("tax_type") not in TAX_TYPES:
        raise InvalidBody("tax_type", f"must be one of {', '.join(TAX_TYPES)}")
    for i, item in enumerate(_optional_list(body, "items")):
        _check_item(item, f"items[{i}]")
    _check_customer(body.get("customer"))
    for i, config in enumerate(_optional_list(body, "payment_config")):
        if not _is_uuid(config):
            raise InvalidBody(f"payment_config[{i}]", "must be a UUID")
    for i, discount in enumerate(_optional_list(body, "discounts")):
        at = f"discounts[{i}]"
        if not isinstance(discount, dict) or not isinstance(discount.get("is_rate"), bool):
            raise InvalidBody(f"{at}.is_rate", "must be true or false")
        if not _is_int(discount.get("value")) or discount["value"] < 0:
            raise InvalidBody(f"{at}.value", "must be an integer, not negative")
        if discount["is_rate"] and discount["value"] > 100:
            raise InvalidBody(f"{at}.value", "a rate discount can't exceed 100")


def compute_totals(body: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """Finan's ``(total_amount, tax_amount)`` for a valid body, in whole đồng.

    Taxes per item at the sum of its rates; discounts, in order, on the after-tax total;
    ``tax_amount`` before discounts; rounding (half up) only at the very end.
    """
    tax_type = body["tax_type"]
    total = Decimal(0)
    tax = Decimal(0)
    for item in body.get("items") or []:
        amount = Decimal(str(item["price"])) * item["quantity"]
        rate = Decimal(sum(t["rate"] for t in item.get("taxes") or []))
        if tax_type == "price_excluding_tax":
            total += amount * (100 + rate) / 100
            tax += amount * rate / 100
        elif tax_type == "price_including_tax":
            total += amount
            tax += amount * rate / (100 + rate)
        else:  # tax_not_applicable
            total += amount
    for discount in body.get("discounts") or []:
        value = Decimal(discount["value"])
        total = total * (100 - value) / 100 if discount["is_rate"] else total - value
    if total < 0:
        raise InvalidBody("discounts", "exceed the invoice total")
    whole = Decimal(1)
    return total.quantize(whole, ROUND_HALF_UP), tax.quantize(whole, ROUND_HALF_UP)


# --- HTTP -------------------------------------------------------------------------------


def _envelope(status: int, code: int, content: str, data: Any = None) -> Response:
    response = jsonify(
        {
            "message": {"content": content},
            "code": code,
            "request_id": str(uuid.uuid4()),
            "data": data,
        }
    )
    response.status_code = status
    return response


def _signed_path(prefix: str) -> str:
    """The path as the client sent it (percent-encoding intact), minus the prefix."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        if not raw.startswith("/"):  # absolute-form request target
            parts = urlsplit(raw)
            raw = f"{parts.path}?{parts.query}" if parts.query else parts.path
        path, _, query = raw.partition("?")
    else:  # not behind a real server (Flask's test client)
        path, query = quote(request.path), request.query_string.decode("latin-1")
    path = path[len(prefix) :] if prefix and path.startswith(prefix) else path
    return f"{path}?{query}" if query else path


def _parse_for_log(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _drop_connection() -> Response:
    """Close the client's connection without a response, as a crashed upstream would."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        raise ConnectionAbortedError("the stand-in dropped the connection")
    # Linger 0 makes the final close send RST; shutdown stops both directions now, so the
    # client sees the connection end with no response even before the handler unwinds.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)
    # werkzeug's attempt to write this fails with a broken pipe, which it treats as a
    # client that went away: nothing is logged and nothing reaches the client.
    return Response(status=500)


def _fault_response(fault: Fault) -> Response:
    if fault.mode == "server_error":
        return _envelope(500, CODE_SERVER_ERROR, "internal server error")
    if fault.mode == "server_error_200":
        return _envelope(200, CODE_SERVER_ERROR, "internal server error")
    if fault.mode == "unavailable":
        return Response(
            "Service Unavailable", status=503, headers={"Retry-After": "1"}, mimetype="text/plain"
        )
    if fault.mode == "client_error":
        return _envelope(400, CODE_REJECTED, "invalid invoice")
    return _drop_connection()  # "reset"


def create_finan_app(
    *,
    client_id: str,
    secret: str,
    prefix: str = "",
    clock: Callable[[], float] = time.time,
) -> Flask:
    """A Flask app that answers like Finan under ``prefix`` (e.g. ``/open``)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    state = FinanStandin(client_id, secret, clock)
    app = Flask(__name__)
    app.json.ensure_ascii = False  # readable Vietnamese in the request log
    app.extensions["finan_standin"] = state

    def handle(operation: str, invoice_id: str | None = None) -> Response:
        now = state.clock()  # the signature window is judged at arrival, before any hang
        raw = request.get_data(cache=True)
        path = _signed_path(prefix)
        entry: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "body": _parse_for_log(raw),
            "at": now,
        }

        def finish(response: Response, outcome: str) -> Response:
            entry.update(status=response.status_code, outcome=outcome)
            if response.is_json:
                entry["code"] = (response.get_json(silent=True) or {}).get("code")
            state.log(entry)
            return response

        fault = state.take_fault()
        late_by = 0.0
        if fault is not None and fault.mode in ("hang", "late_answer"):
            entry["fault"] = fault.mode
            if fault.mode == "hang":
                time.sleep(fault.delay)
            else:
                late_by = fault.delay
        elif fault is not None:
            entry["fault"] = fault.mode
            if fault.mode == "reset":
                entry.update(status=None, outcome="fault:reset")
                state.log(entry)
                return _drop_connection()
            return finish(_fault_response(fault), f"fault:{fault.mode}")

        try:
            state.verify(request.headers, request.method, path, raw, now)
        except SignatureError as exc:
            return finish(_envelope(401, CODE_UNAUTHORIZED, str(exc)), "unauthorized")

        if operation == "detail":
            with state.lock:
                stored = state.invoices.get(invoice_id or "")
                data = dict(stored["data"]) if stored else None
            if data is None:
                return finish(_envelope(404, CODE_NOT_FOUND, "invoice not found"), "not_found")
            return finish(_envelope(200, CODE_UPDATED, "ok", data), "ok")

        try:
            if operation == "update" and not _is_uuid(invoice_id):
                raise InvalidBody("id", "must be a UUID")
            try:
                body = json.loads(raw.decode("utf-8"), parse_float=Decimal)
            except ValueError:
                raise InvalidBody("body", "is not valid JSON") from None
            validate_invoice_body(body)
            totals = compute_totals(body)
        except InvalidBody as exc:
            return finish(_envelope(400, CODE_INVALID, str(exc)), "invalid")

        target = str(uuid.UUID(invoice_id)) if invoice_id else str(uuid.uuid4())
        data, created = state.store(target, json.loads(raw), totals, now)
        time.sleep(late_by)
        if created:
            return finish(
                _envelope(200, CODE_CREATED, "Bạn vừa thực hiện tạo thành công hoá đơn", data),
                "created",
            )
        return finish(
            _envelope(200, CODE_UPDATED, "Bạn vừa thực hiện cập nhật thành công hoá đơn", data),
            "updated",
        )

    api = f"{prefix}/api/v1/invoice"
    app.add_url_rule(
        f"{api}/update-invoice/<invoice_id>",
        "update",
        methods=["PUT"],
        view_func=lambda invoice_id: handle("update", invoice_id),
    )
    app.add_url_rule(
        f"{api}/create", "create", methods=["POST"], view_func=lambda: handle("create")
    )
    app.add_url_rule(
        f"{api}/detail/<invoice_id>",
        "detail",
        methods=["GET"],
        view_func=lambda invoice_id: handle("detail", invoice_id),
    )

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return _envelope(404, CODE_NOT_FOUND, f"no route {request.path}")

    @app.errorhandler(405)
    def method_not_allowed(_exc: Exception) -> Response:
        return _envelope(405, CODE_METHOD_NOT_ALLOWED, f"{request.method} not allowed here")

    add_control_routes(app, state)
    return app
