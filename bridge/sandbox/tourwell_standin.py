"""A stand-in for the Tourwell CRM Open API (docs/contract/mapping.md#tourwell-api).

The three invoice routes the bridge uses (GET, PUT, cancel), behind the same Bearer token
check and, when asked, the same per-token rate limit as the real CRM; plus faults on cue.

State lives on ``app.extensions["tourwell_standin"]`` (a ``TourwellStandin``). Other
processes use the control routes, which need no token: ``GET /_standin/requests``,
``GET /_standin/invoices``, ``POST /_standin/faults`` ``{"mode", "count", "delay"}`` and
``POST /_standin/reset`` (back to the seed invoices).
"""

from __future__ import annotations

import copy
import hmac
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request

from bridge.sandbox.standin_state import StandinState, add_control_routes

FAULT_MODES = ("rate_limited", "unavailable", "hang")

# The CRM's rate limit counts requests over a sliding window of this many seconds.
RATE_WINDOW_SECONDS = 60

# Fields of an update body that replace the same fields of the invoice's request_info.
REQUEST_INFO_FIELDS = (
    "description",
    "note",
    "service_summary",
    "tax_code",
    "company_name",
    "company_address",
    "forward_email",
)
UPDATE_FIELDS = (*REQUEST_INFO_FIELDS, "total_amount", "lookup_url")


class TourwellStandin(StandinState):
    """The stand-in's memory: invoices, a log of every API request, faults, rate window."""

    FAULT_MODES = FAULT_MODES

    def __init__(
        self,
        token: str,
        invoices: Mapping[int, dict[str, Any]],
        rate_limit_per_min: int | None,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(clock)
        self._token = token
        self._seed = {int(k): copy.deepcopy(v) for k, v in invoices.items()}
        self.rate_limit_per_min = rate_limit_per_min
        self.invoices: dict[int, dict[str, Any]] = copy.deepcopy(self._seed)
        self.cancelled: dict[int, str | None] = {}  # id -> cancel_note
        self._window: deque[float] = deque()  # arrival times of counted requests

    def __repr__(self) -> str:
        return f"TourwellStandin(invoices={sorted(self.invoices)})"

    def reset(self) -> None:
        """Back to the seed invoices; forget the log, faults, cancels and the rate window."""
        super().reset()
        with self.lock:
            self.invoices = copy.deepcopy(self._seed)
            self.cancelled.clear()
            self._window.clear()

    def invoices_view(self) -> dict[str, Any]:
        return {
            "invoices": {str(k): v for k, v in self.invoices.items()},
            "cancelled": {str(k): v for k, v in self.cancelled.items()},
        }

    def token_ok(self, header: str | None) -> bool:
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token.encode())

    def admit(self) -> int | None:
        """Count one request against the rate limit; ``None`` if admitted, else the
        seconds to wait. Refused requests are not counted (as Laravel's throttle does)."""
        if self.rate_limit_per_min is None:
            return None
        now = self.clock()
        with self.lock:
            while self._window and self._window[0] <= now - RATE_WINDOW_SECONDS:
                self._window.popleft()
            if len(self._window) >= self.rate_limit_per_min:
                return max(1, math.ceil(self._window[0] + RATE_WINDOW_SECONDS - now))
            self._window.append(now)
            return None


_NOT_JSON = object()


def _json_body() -> Any:
    """The body parsed as JSON whatever its Content-Type; None when empty."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_JSON


def _fail(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify({"success": False, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _ok(status: int, message: str, data: Any) -> Response:
    response = jsonify({"success": True, "message": message, "data": data})
    response.status_code = status
    return response


def create_tourwell_app(
    *,
    token: str,
    invoices: Mapping[int, dict[str, Any]],
    rate_limit_per_min: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Flask:
    """A Flask app that answers like the Tourwell Open API for ``invoices`` (id -> the bare
    invoice object of ``GET /api/v1/invoices/{id}``)."""
    state = TourwellStandin(token, invoices, rate_limit_per_min, clock)
    app = Flask(__name__)
    app.json.ensure_ascii = False  # readable Vietnamese in the request log
    app.extensions["tourwell_standin"] = state

    @app.before_request
    def gatekeeper() -> Response | None:
        if request.path.startswith("/_standin/"):
            return None
        parsed = g.body = _json_body()  # the handlers read it from g
        g.entry = {
            "method": request.method,
            "path": request.full_path.rstrip("?"),
            "body": request.get_data(as_text=True) if parsed is _NOT_JSON else parsed,
            "at": time.time(),
        }
        fault = state.take_fault()
        if fault is not None:
            g.entry["fault"] = fault.mode
            if fault.mode == "hang":
                time.sleep(fault.delay)
            elif fault.mode == "rate_limited":
                return _fail(429, "Too Many Attempts.", {"Retry-After": "1"})
            else:  # "unavailable"
                return Response("Service Unavailable", status=503, mimetype="text/plain")
        if not state.token_ok(request.headers.get("Authorization")):
            return _fail(401, "Unauthenticated.")
        wait = state.admit()
        if wait is not None:
            return _fail(
                429,
                "Too Many Attempts.",
                {
                    "Retry-After": str(wait),
                    "X-RateLimit-Limit": str(state.rate_limit_per_min),
                    "X-RateLimit-Remaining": "0",
                },
            )
        return None

    @app.after_request
    def record(response: Response) -> Response:
        entry = g.pop("entry", None)
        if entry is not None:
            entry["status"] = response.status_code
            state.log(entry)
        return response

    @app.get("/api/v1/invoices/<int:invoice_id>")
    def get_invoice(invoice_id: int) -> Response:
        with state.lock:
            invoice = copy.deepcopy(state.invoices.get(invoice_id))
        if invoice is None:
            return _fail(404, "Invoice not found")
        return jsonify({"data": invoice})

    @app.put("/api/v1/invoices/<int:invoice_id>")
    def update_invoice(invoice_id: int) -> Response:
        body = g.body
        if body is _NOT_JSON:
            return _fail(400, "The request body is not valid JSON.")
        body = {} if body is None else body
        if not isinstance(body, dict):
            return _fail(422, "The request body must be a JSON object.")
        wrong = [f for f in UPDATE_FIELDS if f in body and not isinstance(body[f], str | None)]
        if wrong:
            response = jsonify(
                {
                    "success": False,
                    "message": f"The {wrong[0]} field must be a string.",
                    "errors": {f: [f"The {f} field must be a string."] for f in wrong},
                }
            )
            response.status_code = 422
            return response
        with state.lock:
            invoice = state.invoices.get(invoice_id)
            if invoice is None:
                return _fail(404, "Invoice not found")
            info = invoice.setdefault("request_info", {})
            for field in REQUEST_INFO_FIELDS:
                if body.get(field) is not None:
                    info[field] = body[field]
            if body.get("total_amount") is not None:
                total = invoice.get("total_amount")
                if not isinstance(total, dict):
                    total = invoice["total_amount"] = {"foreign": 0, "base": total}
                total["base"] = body["total_amount"]
            if body.get("lookup_url") is not None:
                invoice["lookup_url"] = body["lookup_url"]
            code = invoice.get("code")
        return _ok(200, "Invoice updated successfully", {"code": code})

    @app.post("/api/v1/invoices/<int:invoice_id>/cancel")
    def cancel_invoice(invoice_id: int) -> Response:
        body = g.body
        if body is _NOT_JSON:
            return _fail(400, "The request body is not valid JSON.")
        note = body.get("cancel_note") if isinstance(body, dict) else None
        if note is not None and not isinstance(note, str):
            return _fail(422, "The cancel note field must be a string.")
        with state.lock:
            invoice = state.invoices.get(invoice_id)
            if invoice is None:
                return _fail(404, "Invoice not found")
            state.cancelled[invoice_id] = note
            code = invoice.get("code")
        return _ok(201, "Invoice Canceled successfully", {"code": code})

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return _fail(404, "Not found")

    @app.errorhandler(405)
    def method_not_allowed(_exc: Exception) -> Response:
        return _fail(405, f"The {request.method} method is not supported for this route.")

    add_control_routes(app, state)
    return app
