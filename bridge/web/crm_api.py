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

from flask import Response, request

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
from bridge.web.openapi import (
    CRM_TAG,
    INVOICE_ID,
    REPLAYED_HEADERS,
    REQUEST_ID_HEADERS,
    SECURITY_SCHEME,
    Blueprint,
    error_responses,
    json_body,
    ref,
)
from schemas.bridge import SuccessEnvelopeSchema, success_schema
from schemas.tourwell import CancelSchema, UpdateSchema

bp = Blueprint("crm", __name__, url_prefix="/api/v1/invoices", tag=CRM_TAG)

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


# --- the operations, each documented where it is defined (bridge/web/openapi.py) ---

QUEUED = (
    "Finan is unavailable: the operation is queued (state 'queued'); a worker sends it and "
    "writes the outcome back to the CRM."
)
# What the issue, update and cancel operations can answer with an error.
WRITE_ERRORS = error_responses(400, 401, 404, 409, 413, 415, 422, 502, 503)
_CRM_SECURITY = [{SECURITY_SCHEME: []}]
_WRITE_PARAMETERS = ["RequestId", "IdempotencyKey"]


def queued_response(view: Callable[..., Response]) -> Callable[..., Response]:
    """The 202 of an operation queued while Finan is unavailable."""
    return bp.alt_response(
        202,
        schema=SuccessEnvelopeSchema,
        description=QUEUED,
        headers=REPLAYED_HEADERS,
        success=True,
    )(view)


@bp.post("/<int:invoice_id>/issue", parameters=[INVOICE_ID])
@bp.doc(
    operationId="issueInvoice",
    summary="Issue an invoice at Finan",
    description="One signed update-invoice to the Finan invoice derived from the CRM "
    "invoice's URL. A repeat with the same content sends nothing and answers 201 again.",
    security=_CRM_SECURITY,
    parameters=_WRITE_PARAMETERS,
    requestBody=json_body(
        "Empty (the bridge pulls the invoice from the CRM), or the invoice in the shape of "
        'the CRM\'s GET /api/v1/invoices/{id}: wrapped as {"data": {...}} or bare. Unknown '
        "fields are ignored.",
        ref("schemas", "Invoice"),
        {"type": "object", "required": ["data"], "properties": {"data": ref("schemas", "Invoice")}},
    ),
    responses=WRITE_ERRORS,
)
@bp.response(
    201,
    SuccessEnvelopeSchema,
    description="Issued (or already issued with this content).",
    headers=REPLAYED_HEADERS,
)
@queued_response
@crm_operation
def issue(invoice_id: int, raw: bytes) -> Outcome:
    operations = services().operations
    source = fingerprint(raw) if raw.strip() else None
    repeated = operations.answer_repeated_issue(invoice_id, source)
    return repeated or operations.issue(invoice_id, parse_json(raw), source=source)


@bp.put("/<int:invoice_id>", parameters=[INVOICE_ID])
@bp.doc(
    operationId="updateInvoice",
    summary="Update an issued invoice",
    description="Pulls the CRM's current invoice, lays these fields over it and sends it; "
    "unchanged content sends nothing. lookup_url is kept on the record, not sent to Finan.",
    security=_CRM_SECURITY,
    parameters=_WRITE_PARAMETERS,
    requestBody=json_body("Tourwell's update fields, all optional.", UpdateSchema),
    responses=WRITE_ERRORS,
)
@bp.response(
    200, SuccessEnvelopeSchema, description="Updated (or unchanged).", headers=REPLAYED_HEADERS
)
@queued_response
@crm_operation
def update(invoice_id: int, raw: bytes) -> Outcome:
    return services().operations.update(invoice_id, load_body(_update_schema, parse_json(raw)))


@bp.post("/<int:invoice_id>/cancel", parameters=[INVOICE_ID])
@bp.doc(
    operationId="cancelInvoice",
    summary="Cancel an issued invoice",
    description="Finan has no cancel: the bridge sends the invoice with nothing left to "
    "collect (no items, no payment methods) and keeps the note on the record.",
    security=_CRM_SECURITY,
    parameters=_WRITE_PARAMETERS,
    requestBody=json_body("Optional.", CancelSchema),
    responses=WRITE_ERRORS,
)
@bp.response(
    201,
    SuccessEnvelopeSchema,
    description="Cancelled: the message is exactly 'Invoice Canceled successfully'.",
    headers=REPLAYED_HEADERS,
)
@queued_response
@crm_operation
def cancel(invoice_id: int, raw: bytes) -> Outcome:
    fields = load_body(_cancel_schema, parse_json(raw))
    return services().operations.cancel(invoice_id, fields.get("cancel_note"))


@bp.get("/<int:invoice_id>", parameters=[INVOICE_ID])
@bp.doc(
    operationId="getInvoiceRecord",
    summary="The bridge's record of an invoice",
    description="What the bridge knows: state, Finan's ids and codes, totals, the last error.",
    security=_CRM_SECURITY,
    parameters=["RequestId"],
    responses=error_responses(401, 404, 503),
)
@bp.response(200, SuccessEnvelopeSchema, description="The record.", headers=REQUEST_ID_HEADERS)
def record(invoice_id: int) -> Response:
    bridge = services()
    bearer_token(bridge.settings.crm_tokens, "CRM")
    found = bridge.operations.get(invoice_id, with_body=False)  # the answer shows no body
    return answer(200, envelope(Outcome(200, "Invoice record", found)))
