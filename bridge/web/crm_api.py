"""The CRM-facing endpoints: the bridge as Tourwell's invoice provider
(docs/contract/http.md#crm-api).

Every request goes through the same steps, in this order: the Bearer token (401), the
body's size and type (413, 415), the ``Idempotency-Key`` (replay, 409 or 422), then the
operation: its view parses the JSON (400) when it needs it, and hands over to
``bridge.invoices.operations``. An issue request byte for byte the one Finan's copy came from is
answered before parsing (see ``InvoiceOperations.answer_repeated_issue``). Answers use
Tourwell's envelope: ``{"success": true, "message": ..., "data": <record>}``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, request

from bridge.invoices.operations import Outcome
from bridge.observability.metrics import IDEMPOTENT_REPLAYS
from bridge.store.idempotency import StoredResponse, caller_scope, request_fingerprint
from bridge.store.records import fingerprint
from bridge.web.http import (
    answer,
    bearer_token,
    check_media_type,
    load_body,
    parse_json,
    request_body,
    services,
)
from schemas.bridge import success_schema
from schemas.tourwell import CancelSchema, UpdateSchema

bp = Blueprint("crm", __name__, url_prefix="/api/v1/invoices")

_update_schema = UpdateSchema()
_cancel_schema = CancelSchema()


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
            return answer(outcome.status, envelope(outcome))

        fingerprint = request_fingerprint(request.method, request.path, raw)
        claim = bridge.idempotency.claim(caller_scope(token), key, fingerprint)
        if isinstance(claim, StoredResponse):
            IDEMPOTENT_REPLAYS.inc()
            response = answer(claim.status, claim.body)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        try:
            outcome = view(raw=raw, **kwargs)
        except BaseException:
            # Failures are not stored (docs/contract/http.md#idempotency-key).
            bridge.idempotency.release(claim)
            raise
        body = envelope(outcome)
        bridge.idempotency.store(claim, outcome.status, body)
        return answer(outcome.status, body)

    return wrapper


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
    return answer(200, envelope(Outcome(200, "Invoice record", found)))
