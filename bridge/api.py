"""The CRM-facing endpoints (DESIGN.md section 3): the bridge as Tourwell's invoice provider.

Every request goes through the same steps, in this order: the Bearer token (401), the
body's size and type (413, 415), the ``Idempotency-Key`` (replay, 409 or 422), then the
operation: its view parses the JSON (400) when it needs it, and hands over to
``bridge.operations``. An issue request byte for byte the one Finan's copy came from is
answered before parsing (see ``InvoiceOperations.answer_repeated_issue``). Answers use
Tourwell's envelope: ``{"success": true, "message": ..., "data": <record>}``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError

from bridge import json_input
from bridge.errors import (
    MalformedJSON,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from bridge.idempotency import StoredResponse, caller_scope, request_fingerprint
from bridge.metrics import IDEMPOTENT_REPLAYS
from bridge.operations import Outcome
from bridge.records import fingerprint
from schemas.bridge import success_schema
from schemas.tourwell import CancelSchema, UpdateSchema

if TYPE_CHECKING:
    from bridge.app import Services

bp = Blueprint("crm", __name__, url_prefix="/api/v1/invoices")

_update_schema = UpdateSchema()
_cancel_schema = CancelSchema()


def services() -> Services:
    return current_app.extensions["bridge"]


def matching_token(presented: str, allowed: Iterable[str]) -> str | None:
    """The token of ``allowed`` equal to ``presented``, or None. Every candidate is
    compared, in constant time: no early exit that times the match."""
    found = None
    for candidate in allowed:
        if hmac.compare_digest(presented.encode(), candidate.encode()):
            found = candidate
    return found


def bearer_token(allowed: tuple[str, ...], what: str) -> str:
    """The caller's token if it is one of ``allowed``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(f"send the {what} token as 'Authorization: Bearer <token>'")
    if matching_token(token, allowed) is None:
        raise Unauthorized(f"the {what} token is not valid")
    return token


def request_body() -> bytes:
    """The raw body. werkzeug refuses a declared length over MAX_CONTENT_LENGTH itself, but
    cuts a chunked body at the limit silently: a body that reaches the limit is too large."""
    raw = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(raw) >= limit:
        raise PayloadTooLarge(f"the body is over {limit // (1024 * 1024)} MiB")
    return raw


def check_media_type(raw: bytes) -> None:
    """A body must be declared as JSON (415)."""
    if raw.strip() and request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send the body as JSON with 'Content-Type: application/json' "
            f"(got {request.mimetype or 'no content type'!r})"
        )


def read_json(raw: bytes) -> Any | None:
    """The JSON body, or None when there is none; its media type checked first."""
    check_media_type(raw)
    return parse_json(raw)


def parse_json(raw: bytes) -> Any | None:
    """The JSON of a body whose media type was checked (``json_input``: strict, numbers as
    Decimal), or None when there is none."""
    if not raw.strip():
        return None
    try:
        value = json_input.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(f"the body is not valid UTF-8 JSON: {exc}") from None
    if value is None:
        raise Unprocessable(
            "the body is JSON null: send a JSON object, or no body at all",
            errors={"_schema": ["expected an object, got null"]},
        )
    return value


def load_body(schema: Any, payload: Any | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise Unprocessable(
            "the request body must be a JSON object",
            errors={"_schema": [f"expected an object, got {json_input.kind(payload)}"]},
        )
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise Unprocessable("the request body has invalid fields", errors=exc.messages) from None


def envelope(outcome: Outcome) -> dict[str, Any]:
    return success_schema.dump({"message": outcome.message, "data": outcome.record})


def crm_operation(view: Callable[..., Outcome]) -> Callable[..., Response]:
    """Authenticate, read the body, apply the Idempotency-Key, run ``view``, answer.

    ``view`` gets the body's exact bytes as ``raw``, of a checked media type
    (``parse_json`` parses them).
    """

    @wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        bridge = services()
        token = bearer_token(bridge.settings.crm_tokens, "CRM")
        raw = request_body()
        check_media_type(raw)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            outcome = view(raw=raw, **kwargs)
            return _answer(outcome.status, envelope(outcome))

        fingerprint = request_fingerprint(request.method, request.path, raw)
        claim = bridge.idempotency.claim(caller_scope(token), key, fingerprint)
        if isinstance(claim, StoredResponse):
            IDEMPOTENT_REPLAYS.inc()
            response = _answer(claim.status, claim.body)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        try:
            outcome = view(raw=raw, **kwargs)
        except BaseException:
            bridge.idempotency.release(claim)  # failures are not stored (DESIGN §5)
            raise
        body = envelope(outcome)
        bridge.idempotency.store(claim, outcome.status, body)
        return _answer(outcome.status, body)

    return wrapper


def _answer(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.post("/<int:invoice_id>/issue")
@crm_operation
def issue(invoice_id: int, raw: bytes) -> Outcome:
    operations = services().operations
    source = fingerprint(raw) if raw.strip() else None
    repeated = operations.answer_repeated_issue(invoice_id, source)
    return repeated or operations.issue(invoice_id, parse_json(raw), source=source)


@bp.put("/<int:invoice_id>")
@crm_operation
def update(invoice_id: int, raw: bytes) -> Outcome:
    return services().operations.update(invoice_id, load_body(_update_schema, parse_json(raw)))


@bp.post("/<int:invoice_id>/cancel")
@crm_operation
def cancel(invoice_id: int, raw: bytes) -> Outcome:
    fields = load_body(_cancel_schema, parse_json(raw))
    return services().operations.cancel(invoice_id, fields.get("cancel_note"))


@bp.get("/<int:invoice_id>")
def record(invoice_id: int) -> Response:
    bridge = services()
    bearer_token(bridge.settings.crm_tokens, "CRM")
    found = bridge.operations.get(invoice_id, with_body=False)  # the answer shows no body
    return _answer(200, envelope(Outcome(200, "Invoice record", found)))
