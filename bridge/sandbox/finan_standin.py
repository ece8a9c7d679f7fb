"""A stand-in for Finan, checked like the real one (docs/contract/mapping.md#finan-api).

A real HTTP app (serve it with ``LoopbackServer``) that verifies every request's signature,
validates the body and computes the totals the way Finan does (``finan_rules``), keeps the
invoices it was sent, and fails on cue.

State lives on ``app.extensions["finan_standin"]`` (a ``FinanStandin``). Other processes
(the sandbox, a test driving a separate server) use the control routes instead:
``GET /_standin/requests``, ``GET /_standin/invoices``, ``POST /_standin/faults``
``{"mode", "count", "delay"}`` and ``POST /_standin/reset``. They need no signature.

Two more stand for what happens at Finan behind the bridge's back (an edit in Finan's own
screens, a backup restored), to try what Finan holds against what the bridge sent:
``POST /_standin/invoices/<id>/change`` ``{"set": {"total_amount": 1, "customer.name":
"X", "items.0.price": 5}}`` sets fields of the stored invoice (dotted paths, list indexes
as numbers), and ``POST /_standin/invoices/<id>/forget`` drops it. The invoice's detail
(``GET /api/v1/invoice/detail/<id>``) answers the stored invoice in Finan's envelope: the
fields of the body it was sent, with those Finan computes (totals, codes, contact_info,
``payment_due_amount``).
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import string
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Flask, Response, jsonify, request

from bridge.integrations.finan import signing
from bridge.integrations.finan.signing import SignatureError
from bridge.sandbox.finan_rules import InvalidBody, compute_totals, is_uuid, validate_invoice_body
from bridge.sandbox.standin_state import Fault, StandinState, add_control_routes

# Finan's six-digit codes: the third digit is the HTTP class (2 ok, 4 client, else server).
CODE_UPDATED = 102000
CODE_CREATED = 102001
CODE_INVALID = 104000
CODE_REJECTED = 104001
CODE_NOT_FOUND = 104004
CODE_METHOD_NOT_ALLOWED = 104005
CODE_UNAUTHORIZED = 104010
CODE_SERVER_ERROR = 105000
# Finan's message.content when it takes an invoice.
CREATED_MESSAGE = "Bạn vừa thực hiện tạo thành công hoá đơn"
UPDATED_MESSAGE = "Bạn vừa thực hiện cập nhật thành công hoá đơn"

# "server_error_200" is Finan answering HTTP 200 with a server-class code in the envelope:
# the bridge must classify by the code, not by the HTTP status.
# "hang" waits ``delay`` before handling the request; "late_answer" handles (stores) it
# first and then waits ``delay`` before answering, so a caller that gave up, or died, in the
# meantime never learns that Finan took it. "trickle" handles (stores) it, sends the
# answer's headers at once, then its body one byte every ``delay`` seconds: each read the
# caller makes gets a byte well within any read timeout, so only a deadline on the whole
# answer ends it.
FAULT_MODES = (
    "server_error",
    "server_error_200",
    "unavailable",
    "client_error",
    "hang",
    "late_answer",
    "reset",
    "trickle",
)

_VIETNAM = timezone(timedelta(hours=7))  # Finan stamps created_at in Vietnam time


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

    def detail(self, invoice_id: str) -> dict[str, Any] | None:
        """The stored invoice as the detail endpoint answers it; None: not stored."""
        with self.lock:
            stored = self.invoices.get(_canonical(invoice_id))
            if stored is None:
                return None
            body = stored["body"] or {}
            held = {name: body[name] for name in _BODY_FIELDS if name in body}
            return copy.deepcopy({**stored["data"], **held, **stored.get("changed", {})})

    def change(self, invoice_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set fields of a stored invoice, as an edit in Finan would: ``changes`` maps a
        dotted path (``total_amount``, ``customer.name``, ``items.0.price``) to its new
        value. ``KeyError``: no such invoice; ``ValueError``: a path that is not there.
        Returns the detail as it now reads; the next update-invoice replaces it all."""
        with self.lock:
            key = _canonical(invoice_id)
            if key not in self.invoices:
                raise KeyError(invoice_id)
            held = self.detail(key) or {}
            for path, value in changes.items():
                _set_path(held, str(path), value)
            self.invoices[key]["changed"] = held
            return copy.deepcopy(held)

    def forget(self, invoice_id: str) -> bool:
        """Drop a stored invoice, as a restored backup that predates it would."""
        with self.lock:
            return self.invoices.pop(_canonical(invoice_id), None) is not None

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


# --- HTTP -------------------------------------------------------------------------------


def envelope(code: int, content: str, data: Any = None) -> dict[str, Any]:
    """Finan's answer envelope (a new ``request_id`` each time)."""
    return {
        "message": {"content": content},
        "code": code,
        "request_id": str(uuid.uuid4()),
        "data": data,
    }


def normalised_prefix(prefix: str) -> str:
    """``open``, ``/open/`` -> ``/open``; nothing -> ``""``."""
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def _envelope(status: int, code: int, content: str, data: Any = None) -> Response:
    response = jsonify(envelope(code, content, data))
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
    """The canned answer of a fault that answers at once (not hang, late_answer or reset)."""
    if fault.mode == "server_error":
        return _envelope(500, CODE_SERVER_ERROR, "internal server error")
    if fault.mode == "server_error_200":
        return _envelope(200, CODE_SERVER_ERROR, "internal server error")
    if fault.mode == "unavailable":
        return Response(
            "Service Unavailable", status=503, headers={"Retry-After": "1"}, mimetype="text/plain"
        )
    return _envelope(400, CODE_REJECTED, "invalid invoice")  # "client_error"


def _trickled(response: Response, every: float) -> Response:
    """``response`` with its headers (Content-Length included) sent at once and its body one
    byte every ``every`` seconds."""
    body = response.get_data()

    def bytes_one_by_one():
        for index in range(len(body)):
            if index:
                time.sleep(every)
            yield body[index : index + 1]

    trickled = Response(bytes_one_by_one(), status=response.status_code)
    trickled.headers = response.headers.copy()
    return trickled


def create_finan_app(
    *,
    client_id: str,
    secret: str,
    prefix: str = "",
    clock: Callable[[], float] = time.time,
) -> Flask:
    """A Flask app that answers like Finan under ``prefix`` (e.g. ``/open``)."""
    prefix = normalised_prefix(prefix)
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
        late_by = trickle_every = 0.0
        if fault is not None:
            entry["fault"] = fault.mode
            if fault.mode == "hang":
                time.sleep(fault.delay)
            elif fault.mode == "late_answer":
                late_by = fault.delay
            elif fault.mode == "trickle":
                trickle_every = fault.delay
            elif fault.mode == "reset":
                entry.update(status=None, outcome="fault:reset")
                state.log(entry)
                return _drop_connection()
            else:
                return finish(_fault_response(fault), f"fault:{fault.mode}")

        try:
            state.verify(request.headers, request.method, path, raw, now)
        except SignatureError as exc:
            return finish(_envelope(401, CODE_UNAUTHORIZED, str(exc)), "unauthorized")

        if operation == "detail":
            data = state.detail(invoice_id or "")
            if data is None:
                return finish(_envelope(404, CODE_NOT_FOUND, "invoice not found"), "not_found")
            return finish(_envelope(200, CODE_UPDATED, "ok", data), "ok")

        try:
            if operation == "update" and not is_uuid(invoice_id):
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
        # The log's copy of the body (plain floats, as sent), parsed once on arrival.
        data, created = state.store(target, entry["body"], totals, now)
        time.sleep(late_by)
        if created:
            answer = finish(_envelope(200, CODE_CREATED, CREATED_MESSAGE, data), "created")
        else:
            answer = finish(_envelope(200, CODE_UPDATED, UPDATED_MESSAGE, data), "updated")
        return _trickled(answer, trickle_every) if trickle_every else answer

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

    @app.post("/_standin/invoices/<invoice_id>/change")
    def standin_change(invoice_id: str) -> Response | tuple[Response, int]:
        spec = request.get_json(silent=True) or {}
        changes = spec.get("set") if isinstance(spec, dict) else None
        if not isinstance(changes, dict) or not changes:
            return jsonify({"error": 'send {"set": {"<field or dotted.path>": value, ...}}'}), 400
        try:
            return jsonify({"invoice": state.change(invoice_id, changes)})
        except KeyError:
            return jsonify({"error": f"no invoice {invoice_id} is stored"}), 404
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400

    @app.post("/_standin/invoices/<invoice_id>/forget")
    def standin_forget(invoice_id: str) -> Response | tuple[Response, int]:
        if not state.forget(invoice_id):
            return jsonify({"error": f"no invoice {invoice_id} is stored"}), 404
        return jsonify({"forgotten": invoice_id})

    return app


# The body's fields the detail answers as stored (value_at, due_at and payment_config are
# in Finan's data already).
_BODY_FIELDS = ("reference_code", "tax_type", "items", "customer", "discounts")


def _canonical(invoice_id: str) -> str:
    """Invoices are stored under the canonical form of their uuid."""
    try:
        return str(uuid.UUID(invoice_id))
    except ValueError:
        return invoice_id


def _set_path(target: Any, path: str, value: Any) -> None:
    """Set ``value`` at ``path`` (``a.b.0.c``) in ``target``; the last step may be a new
    key of a dict, the others must exist."""
    steps = path.split(".")
    for number, step in enumerate(steps):
        last = number == len(steps) - 1
        if isinstance(target, list):
            if not step.isdigit() or int(step) >= len(target):
                raise ValueError(f"{path!r}: no item {step!r} in a list of {len(target)}")
            if last:
                target[int(step)] = value
                return
            target = target[int(step)]
        elif isinstance(target, dict):
            if last:
                target[step] = value
                return
            if step not in target or not isinstance(target[step], dict | list):
                raise ValueError(f"{path!r}: {step!r} is not a field holding others")
            target = target[step]
        else:
            raise ValueError(f"{path!r}: {step!r} is not a field holding others")
