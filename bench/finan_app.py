"""The bench's Finan stand-ins (``bench.processes.start_finan`` serves them).

``fast_app()`` builds the fast one the bench serves by default: ``FastFinan``, a small ASGI
app that uvicorn (uvloop, httptools) serves in one process, so that the load measured is
the bridge's and not the stand-in's. It checks what Finan checks before taking a request,
exactly as the full stand-in does and with the same answers:

- the signature headers (client id, the sha256 signature, its 30 s window), with
  ``bridge.integrations.finan.signing.verify``: ``401``, code ``104010``, the reason as the message;
- the invoice id in the path is a UUID: ``400``, code ``104000``, ``id: must be a UUID``;
- the body is JSON (an object): ``400``, code ``104000``, ``body: is not valid JSON``
  (the JSON numbers are read as ``int`` and ``Decimal``, never ``float``).

It does not validate the body's fields. Its totals are a cheap plausible sum, not Finan's
arithmetic: every item's ``price`` x ``quantity`` plus tax at the sum of its ``taxes``
rates, as if prices were before tax, in Decimal, rounded half up once at the end;
``tax_type`` and ``discounts`` are ignored. For the bench's invoice (``price_excluding_tax``,
no discounts) that is exactly what Finan computes. A body whose items can't be summed
that way is refused like an invalid one (``400``, ``104000``).

The answer is Finan's success envelope as ``bridge.integrations.finan.client`` reads it: ``code``
``102001`` the first time an invoice id is seen (``102000`` after), ``message.content``,
and ``data`` with ``id``, ``order_code`` (``HD1``, ``HD2``, ... in order of creation),
``system_code`` (the id's first eight hex digits, upper case) and the two totals.

Control routes, no signature: ``GET /_standin/requests`` (one entry per API request:
method, signed path, status, code, outcome; no bodies) and ``POST /_standin/reset``.
Anything else answers Finan's ``404`` envelope; another method on update-invoice its
``405``. There is no create or detail route, no stored invoice (only each id's order code)
and no faults: the bridge sends only update-invoice, and the tests drive faults on the
full stand-in.

All of that is ``FastFinan.handle`` (method, request target, headers, body -> status and
JSON), which knows nothing of the server; ``FastFinan.__call__`` only adapts it to ASGI.

``full_app()`` builds the full stand-in (``bridge.sandbox.finan_standin``: Flask, validates
every field, computes Finan's totals), which ``python -m bench --full-finan`` serves under
gunicorn instead, for comparison.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from flask import Flask

from bench.common import FINAN_CLIENT_ID, FINAN_PREFIX, FINAN_SECRET
from bridge.integrations.finan import signing
from bridge.sandbox.finan_standin import (
    CODE_CREATED,
    CODE_INVALID,
    CODE_METHOD_NOT_ALLOWED,
    CODE_NOT_FOUND,
    CODE_UNAUTHORIZED,
    CODE_UPDATED,
    CREATED_MESSAGE,
    UPDATED_MESSAGE,
    create_finan_app,
    envelope,
    normalised_prefix,
)

UPDATE_ROUTE = "/api/v1/invoice/update-invoice/"
# The headers the signature check reads, as ASGI names them (lower case, bytes).
_SIGNATURE_HEADERS = frozenset(
    name.encode("latin-1")
    for name in (signing.HEADER_CLIENT_ID, signing.HEADER_TIMESTAMP, signing.HEADER_SIGNATURE)
)
_JSON_HEADER = (b"content-type", b"application/json")
_WHOLE = Decimal(1)
_HUNDRED = Decimal(100)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Refused(Exception):
    """A request Finan refuses: HTTP status, Finan's code, the message."""

    def __init__(self, status: int, code: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.code, self.outcome = status, code, outcome


def plausible_totals(body: dict[str, Any]) -> tuple[int, int]:
    """(total_amount, tax_amount) in whole đồng, as the module docstring says."""
    net = taxed = Decimal(0)  # taxed: the sum of amount x rate, in percent
    for item in body.get("items") or ():
        amount = Decimal(item["price"]) * item["quantity"]
        net += amount
        for item_tax in item.get("taxes") or ():
            taxed += amount * item_tax["rate"]
    tax = taxed / _HUNDRED
    total = net + tax
    return int(total.quantize(_WHOLE, ROUND_HALF_UP)), int(tax.quantize(_WHOLE, ROUND_HALF_UP))


def _json(status: int, payload: Any) -> tuple[int, bytes]:
    return status, json.dumps(payload, ensure_ascii=False).encode("utf-8")


class FastFinan:
    """The fast stand-in; one instance per process holds its request log."""

    def __init__(
        self,
        client_id: str,
        secret: str,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self._secret = secret
        self._prefix = normalised_prefix(prefix)
        self._route = self._prefix + UPDATE_ROUTE
        self._clock = clock
        self._lock = threading.Lock()  # uvicorn calls from one thread; any server may not
        self._requests: list[dict[str, Any]] = []
        self._order_codes: dict[str, str] = {}  # invoice id -> order_code

    def __repr__(self) -> str:  # never the secret
        return f"FastFinan(client_id={self.client_id!r})"

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """One request: ``target`` is the path (percent-encoding intact) and query as the
        client sent them, ``headers`` at least the signature's (any case). Returns the
        HTTP status and the JSON body of the answer."""
        path, _, query = target.partition("?")
        if path == "/_standin/requests" and method == "GET":
            with self._lock:
                requests = list(self._requests)
            return _json(200, {"requests": requests})
        if path == "/_standin/reset" and method == "POST":
            with self._lock:
                self._requests.clear()
                self._order_codes.clear()
            return _json(200, {"reset": True})
        invoice_id = path[len(self._route) :]
        if not path.startswith(self._route) or not invoice_id or "/" in invoice_id:
            return _json(404, envelope(CODE_NOT_FOUND, f"no route {path}"))
        if method != "PUT":
            return _json(405, envelope(CODE_METHOD_NOT_ALLOWED, f"{method} not allowed here"))

        signed_path = path[len(self._prefix) :] + (f"?{query}" if query else "")
        now = self._clock()  # the signature window is judged when the request is in
        entry = {"method": method, "path": signed_path, "at": now}
        try:
            status, code, message, data = self._update(headers, signed_path, invoice_id, body, now)
            outcome = "created" if code == CODE_CREATED else "updated"
        except Refused as refused:
            status, code, message, data = refused.status, refused.code, str(refused), None
            outcome = refused.outcome
        entry.update(status=status, code=code, outcome=outcome)
        with self._lock:
            self._requests.append(entry)
        return _json(status, envelope(code, message, data))

    def _update(
        self, headers: Mapping[str, str], signed_path: str, raw_id: str, raw: bytes, now: float
    ) -> tuple[int, int, str, dict[str, Any]]:
        try:
            signing.verify(
                headers,
                "PUT",
                signed_path,
                raw,
                client_id=self.client_id,
                secret=self._secret,
                now=now,
            )
        except signing.SignatureError as exc:
            raise Refused(401, CODE_UNAUTHORIZED, str(exc), "unauthorized") from None
        try:
            invoice_id = str(uuid.UUID(raw_id))
        except ValueError:
            raise Refused(400, CODE_INVALID, "id: must be a UUID", "invalid") from None
        try:
            body = json.loads(raw.decode("utf-8"), parse_float=Decimal)
        except ValueError:
            raise Refused(400, CODE_INVALID, "body: is not valid JSON", "invalid") from None
        if not isinstance(body, dict):
            raise Refused(400, CODE_INVALID, "body: must be a JSON object", "invalid")
        try:
            total, tax = plausible_totals(body)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            message = "items: each needs a price, a quantity and taxes with a rate"
            raise Refused(400, CODE_INVALID, message, "invalid") from None

        with self._lock:
            order_code = self._order_codes.get(invoice_id)
            created = order_code is None
            if created:
                order_code = self._order_codes[invoice_id] = f"HD{len(self._order_codes) + 1}"
        data = {
            "id": invoice_id,
            "order_code": order_code,
            "system_code": invoice_id[:8].upper(),
            "total_amount": total,
            "tax_amount": tax,
        }
        if created:
            return 200, CODE_CREATED, CREATED_MESSAGE, data
        return 200, CODE_UPDATED, UPDATED_MESSAGE, data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI (HTTP only; uvicorn runs it with ``--lifespan off``)."""
        if scope["type"] != "http":
            raise RuntimeError(f"the Finan stand-in serves HTTP, not {scope['type']!r}")
        raw_path = scope.get("raw_path")  # the path as sent, percent-encoding intact
        target = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _SIGNATURE_HEADERS
        }
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, answer = self.handle(scope["method"], target, headers, b"".join(chunks))
        headers = [_JSON_HEADER, (b"content-length", str(len(answer)).encode("ascii"))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def fast_app() -> FastFinan:
    """The fast stand-in with the bench's credentials (uvicorn ``--factory``)."""
    return FastFinan(FINAN_CLIENT_ID, FINAN_SECRET, FINAN_PREFIX)


def full_app() -> Flask:
    """The full stand-in of ``bridge.sandbox`` with the bench's credentials (``--full-finan``)."""
    return create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
