"""The operator-facing admin API: see what failed, preview, re-sync
(docs/contract/http.md#admin-api).

Every endpoint needs a Bearer token from ``BRIDGE_ADMIN_TOKENS``; a CRM token is refused,
and with no admin tokens configured everyone is. Query strings and bodies are the bridge's
own, so unknown parameters or fields are refused with ``422`` naming them. Answers use the
same envelope as the CRM-facing API: ``{"success": true, "message": ..., "data": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g, jsonify, request
from marshmallow import Schema, ValidationError

from bridge.errors import NotFound, Unauthorized, Unprocessable
from bridge.observability import logs
from bridge.store.records import Record
from bridge.web.http import bearer_token, read_json, request_body, services
from bridge.web.i18n import vietnam_day_bounds
from bridge.web.openapi import (
    ADMIN_SECURITY_SCHEME,
    ADMIN_TAG,
    ERROR_DESCRIPTIONS,
    INVOICE_ID,
    REQUEST_ID_HEADERS,
    Blueprint,
    error_responses,
    json_body,
)
from schemas.bridge import (
    BatchEnvelopeSchema,
    BatchListEnvelopeSchema,
    BatchListQuerySchema,
    BulkResyncSchema,
    FinanCheckEnvelopeSchema,
    InvoiceDetailEnvelopeSchema,
    InvoiceListEnvelopeSchema,
    InvoiceListQuerySchema,
    PreviewEnvelopeSchema,
    ReconcileSchema,
    ResyncBodySchema,
    ResyncEnvelopeSchema,
    ResyncQuerySchema,
)

bp = Blueprint("admin_api", __name__, url_prefix="/admin", tag=ADMIN_TAG)

_list_query = InvoiceListQuerySchema()
_resync_query = ResyncQuerySchema()
_resync_body = ResyncBodySchema()
_bulk_body = BulkResyncSchema()
_list_envelope = InvoiceListEnvelopeSchema()
_detail_envelope = InvoiceDetailEnvelopeSchema()
_preview_envelope = PreviewEnvelopeSchema()
_resync_envelope = ResyncEnvelopeSchema()
_batch_envelope = BatchEnvelopeSchema()
_batch_list_query = BatchListQuerySchema()
_batch_list_envelope = BatchListEnvelopeSchema()
_reconcile_body = ReconcileSchema()
_finan_check_envelope = FinanCheckEnvelopeSchema()


@bp.before_request
def authenticate() -> None:
    tokens = services().settings.admin_tokens
    if not tokens:
        raise Unauthorized(
            "no admin tokens are configured (BRIDGE_ADMIN_TOKENS), so the admin API refuses "
            "every caller"
        )
    admin = bearer_token(services().settings.admins, "admin", lambda entry: entry.token)
    g.operator = admin.name
    # Unbound with the request's own log context (bridge.web.request_logging).
    logs.bind(operator=admin.name)


def operator_name() -> str | None:
    """The name of the BRIDGE_ADMIN_TOKENS entry of this request's caller (admin API or
    status page), for histories and batches; None outside such a request."""
    return g.get("operator")


def load_query(schema: Schema) -> dict[str, Any]:
    """The query string through ``schema``: an unknown parameter or a bad value is 422."""
    repeated = sorted(name for name, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise Unprocessable(
            "each query parameter may be given once",
            errors={name: ["given more than once"] for name in repeated},
        )
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise Unprocessable(
            f"the query string has invalid parameters: {', '.join(sorted(exc.messages))}",
            errors=exc.messages,
        ) from None


def load_admin_body(schema: Schema, required: bool) -> dict[str, Any]:
    payload = read_json(request_body())
    if payload is None:
        if required:
            raise Unprocessable("send a JSON body", errors={"body": ["required"]})
        payload = {}
    try:
        return schema.load(payload)
    except ValidationError as exc:
        named = ", ".join(sorted(exc.messages)) if isinstance(exc.messages, dict) else "body"
        raise Unprocessable(
            f"the request body has invalid fields: {named}", errors=_as_dict(exc.messages)
        ) from None


def _as_dict(messages: Any) -> dict[str, Any]:
    return messages if isinstance(messages, dict) else {"_schema": messages}


def answer(schema: Schema, message: str, data: Any, status: int = 200) -> Response:
    response = jsonify(schema.dump({"message": message, "data": data}))
    response.status_code = status
    return response


def counted_invoices(count: int) -> str:
    """``1 invoice``, ``2 invoices``: the counts in messages."""
    return f"{count} invoice{'' if count == 1 else 's'}"


def parsed(body: str | None) -> dict[str, Any] | None:
    return json.loads(body) if body is not None else None


def invoice_detail(record: Record) -> dict[str, Any]:
    history = services().records.history(record.invoice_id)
    return {
        "record": record,
        "history": history,
        "last_body": parsed(record.last_body),
        "pending_body": parsed(record.pending.body) if record.pending else None,
    }


def changed_between(query: dict[str, Any]) -> tuple[float | None, float | None]:
    """The query's ``from``/``to`` (Vietnam days, both included) as epoch seconds
    [since, until); None for an open end."""
    since, until = vietnam_day_bounds(query.get("since"), query.get("until"))
    return (
        None if query.get("since") is None else since,
        None if query.get("until") is None else until,
    )


def list_invoices(query: dict[str, Any]) -> dict[str, Any]:
    """The page of records the query asks for, and the counts per state."""
    records = services().records
    per_page, page = query["per_page"], query["page"]
    offset = (page - 1) * per_page
    since, until = changed_between(query)
    if query.get("q"):
        found = records.search(query["q"], query.get("state"), since, until)
        total, shown = len(found), found[offset : offset + per_page]
    else:
        total, shown = records.page(query.get("state"), offset, per_page, since, until)
    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "counts": records.count_by_state(),
        "invoices": shown,
    }


# --- the endpoints, each documented where it is defined (bridge/web/openapi.py) ---

# Said for the admin API where the CRM-facing API's words don't fit.
_ADMIN_ERRORS = {
    **ERROR_DESCRIPTIONS,
    400: "The body is not valid UTF-8 JSON.",
    401: "The Bearer token is missing, or is not one of BRIDGE_ADMIN_TOKENS: a CRM token is "
    "refused, and with no admin tokens configured every caller is.",
    404: "The invoice (or the batch) is unknown to the bridge, or the CRM does not know the "
    "invoice it pulls.",
    409: "Another operation on the invoice is in flight (with Retry-After).",
    422: "An unknown or invalid query parameter or body field (errors names each), or the "
    "invoice can't be mapped.",
    502: "Finan rejected the invoice (the record is now 'failed'), or the CRM refused the "
    "bridge's token (TOURWELL_API_TOKEN).",
    503: "Redis or the CRM is unavailable; try again after Retry-After.",
}


def _errors(*statuses: int, own: dict[int, str] | None = None) -> dict[str, Any]:
    """The error answers of ``statuses``; ``own``: some of them in the endpoint's words."""
    return error_responses(*statuses, descriptions={**_ADMIN_ERRORS, **(own or {})})


# A preview or re-sync of an invoice the bridge has no record of pulls it from the CRM.
_NO_SUCH_INVOICE = (
    "The CRM has no invoice by this id (the message names the CRM). An invoice the bridge "
    "has no record of, but the CRM has, is not a 404: it is pulled and (re-sync) sent as its "
    "first issue, creating the record."
)


def _admin(operation_id: str, summary: str, description: str, **doc: Any) -> Any:
    """``bp.doc`` of an admin endpoint: the admin token, the X-Request-ID parameter."""
    return bp.doc(
        operationId=operation_id,
        summary=summary,
        description=description,
        security=[{ADMIN_SECURITY_SCHEME: []}],
        parameters=["RequestId", *doc.pop("parameters", [])],
        **doc,
    )


def _returns(status: int, schema: type[Schema], description: str) -> Any:
    return bp.response(status, schema, description=description, headers=REQUEST_ID_HEADERS)


# The spellings of force=... the document promises (ResyncQuerySchema takes a few more).
_FORCE = {
    "name": "force",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["1", "0", "true", "false"]},
    "description": "1: send even when Finan already holds exactly this body.",
}
_BATCH_ID = {
    "name": "batch_id",
    "in": "path",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "The id from POST /admin/resync.",
}


@bp.get("/invoices")
@_admin(
    "listAdminInvoices",
    "Records, newest change first",
    "Filter by state, and by the day of the last change (from, to: Vietnam dates, both "
    "included); search by invoice id, by the CRM's invoice code or its start, or by part of "
    "the customer's name (case- and accent-insensitive). Paged. Also the number of records "
    "in each state.",
    # One query parameter per field of the schema that validates them (apispec).
    parameters=[{"in": "query", "schema": InvoiceListQuerySchema}],
    responses=_errors(401, 422, 503),
)
@_returns(200, InvoiceListEnvelopeSchema, "A page of records.")
def invoices() -> Response:
    query = load_query(_list_query)
    data = list_invoices(query)
    return answer(_list_envelope, counted_invoices(data["total"]), data)


@bp.get("/invoices/<int:invoice_id>", parameters=[INVOICE_ID])
@_admin(
    "getAdminInvoice",
    "One record, its history and the last body sent",
    "History: each operation, newest first: when, what, who asked (crm, operator, "
    "worker), the outcome, and Finan's code and message.",
    responses=_errors(401, 404, 503),
)
@_returns(200, InvoiceDetailEnvelopeSchema, "The record.")
def invoice(invoice_id: int) -> Response:
    found = services().operations.get(invoice_id)
    return answer(_detail_envelope, "Invoice record and history", invoice_detail(found))


@bp.get("/invoices/<int:invoice_id>/preview", parameters=[INVOICE_ID])
@_admin(
    "previewAdminResync",
    "Dry run: what a re-sync would send",
    "Pulls the invoice from the CRM, maps it, and shows the body with its diff against "
    "the body Finan last accepted (compared_with; not a body Finan refused or never "
    "confirmed), whether a re-sync without force would send it (would_send: changed, or "
    "failed, dead or queued), and a plain summary sentence; sends nothing. For a cancelled "
    "invoice, the cancel body. For an invoice Finan never accepted (or the bridge has no "
    "record of: record null too): compared_with null, the diff against nothing, changed "
    "and would_send true.",
    responses=_errors(401, 404, 422, 502, 503, own={404: _NO_SUCH_INVOICE}),
)
@_returns(200, PreviewEnvelopeSchema, "The body and its diff.")
def preview(invoice_id: int) -> Response:
    result = services().operations.preview(invoice_id)
    data = {
        "record": result.record,
        "operation": result.operation,
        "body": json.loads(result.body),
        "compared_with": parsed(result.compared_with),
        "changed": result.changed,
        "would_send": result.would_send,
        "diff": result.diff,
        "summary": result.summary,
    }
    message = result.summary
    if result.record is None:
        message += " (the bridge has no record of this invoice)"
    return answer(_preview_envelope, message, data)


@bp.post("/invoices/<int:invoice_id>/resync", parameters=[INVOICE_ID])
@_admin(
    "resyncAdminInvoice",
    "Re-sync one invoice",
    "Pull, map, send, and write the outcome back to the CRM. Unchanged content is not sent "
    "unless force=1; a failed, dead or queued invoice is always sent. A cancelled invoice "
    "gets its cancel body again (a re-sync never un-cancels). An invoice the bridge has no "
    "record of (the CRM's call never came) is pulled and sent as its first issue, creating "
    "the record.",
    parameters=[_FORCE],
    requestBody=json_body('Optional: {"force": true} is the same as force=1.', ResyncBodySchema),
    responses=_errors(400, 401, 404, 409, 413, 415, 422, 502, 503, own={404: _NO_SUCH_INVOICE}),
)
@_returns(200, ResyncEnvelopeSchema, "Sent and accepted, or unchanged.")
@bp.alt_response(
    202,
    schema=ResyncEnvelopeSchema,
    description="Finan is unavailable: queued.",
    headers=REQUEST_ID_HEADERS,
    success=True,
)
def resync(invoice_id: int) -> Response:
    force = load_query(_resync_query)["force"]
    force = load_admin_body(_resync_body, required=False)["force"] or force
    outcome = services().operations.resync(invoice_id, force=force, by=operator_name())
    data = {"result": outcome.result, "record": outcome.record}
    return answer(_resync_envelope, outcome.message, data, outcome.status)


@bp.post("/resync")
@_admin(
    "startBulkResync",
    "Re-sync many invoices, paced by the CRM's rate limit",
    "By ids, or every invoice in a state (failed or dead). Accepted at once with a batch "
    "id; workers re-sync the invoices one after another, using at most two thirds of the "
    "CRM's rate limit. An id the bridge has no record of is pulled from the CRM and sent as "
    "its first issue; one the CRM has no invoice for either is a failed item of the batch.",
    requestBody=json_body(
        "ids or state, not both; force as for one invoice.", BulkResyncSchema, required=True
    ),
    responses=_errors(400, 401, 413, 415, 422, 503),
)
@_returns(202, BatchEnvelopeSchema, "Accepted: the batch and its progress.")
def bulk_resync() -> Response:
    body = load_admin_body(_bulk_body, required=True)
    batch = services().batches.start(
        ids=body.get("ids"),
        state=body.get("state"),
        force=body["force"],
        runner="queue",
        started_by=batch_starter(),
    )
    return answer(
        _batch_envelope,
        f"Bulk re-sync of {counted_invoices(batch.total)} accepted; it runs paced by the "
        f"CRM's rate limit. Progress: GET /admin/resync/{batch.batch_id}",
        batch,
        202,
    )


def batch_starter() -> str:
    """Who started a batch through this API, as the batch keeps it."""
    name = operator_name()
    return f"{name} (admin API)" if name else "admin API"


@bp.get("/resync")
@_admin(
    "listBatches",
    "Bulk re-syncs and reconciliations of the last 7 days, newest first",
    "Every batch started in the last 7 days (by the admin API, the status page or the "
    "command line), of both kinds (kind: resync or reconcile), with who started it and "
    "when, its counts per result and whether it finished; paged. Without problems: "
    "GET /admin/resync/{batch_id} (or /admin/reconcile/{batch_id}) has them.",
    parameters=[{"in": "query", "schema": BatchListQuerySchema}],
    responses=_errors(401, 422, 503),
)
@_returns(200, BatchListEnvelopeSchema, "A page of batches.")
def list_batches() -> Response:
    query = load_query(_batch_list_query)
    per_page, page = query["per_page"], query["page"]
    total, batches = services().batches.listed((page - 1) * per_page, per_page)
    data = {"total": total, "page": page, "per_page": per_page, "batches": batches}
    return answer(_batch_list_envelope, f"{total} batches in the last 7 days", data)


@bp.get("/resync/<batch_id>", parameters=[_BATCH_ID])
@_admin(
    "getBulkResync",
    "Progress of a bulk re-sync",
    "How many are done, the count of each result, and the problems (failed, error).",
    responses=_errors(401, 404, 503),
)
@_returns(200, BatchEnvelopeSchema, "The batch.")
def bulk_progress(batch_id: str) -> Response:
    batch = services().batches.get(batch_id)
    if batch is None:
        raise NotFound(f"no bulk re-sync {batch_id!r} (batches are kept for 7 days)")
    state = "finished" if batch.finished else "running"
    return answer(_batch_envelope, f"Bulk re-sync {state}: {batch.done}/{batch.total}", batch)


# --- what Finan holds: one invoice, and reconciliation (bridge/invoices/finan_check.py) ---

_FINAN_ERRORS = {
    **_ADMIN_ERRORS,
    409: "Finan has never accepted a body for the invoice: there is nothing to compare.",
    502: "Finan refused the detail request (its code and message in errors.provider; a "
    "401 names PROVIDER_CLIENT_ID and PROVIDER_SECRET_KEY).",
    503: "Finan (after the inline retries) or Redis is unavailable; retry after Retry-After.",
}
_RECONCILE_ID = {**_BATCH_ID, "description": "The id from POST /admin/reconcile."}


def finan_check_data(check: Any) -> dict[str, Any]:
    """A ``FinanCheck`` as the admin API and the status page show it."""
    return {
        "finan": check.finan,
        "in_sync": check.in_sync,
        "differences": check.differences,
        "bridge": check.bridge_view(),
        "checked_at": check.checked_at,
        "record": check.record,
    }


@bp.get("/invoices/<int:invoice_id>/finan", parameters=[INVOICE_ID])
@_admin(
    "getAdminInvoiceAtFinan",
    "What Finan holds, compared with the last body it accepted",
    "Asks Finan for its copy (a signed GET detail) and compares it with the last body Finan "
    "accepted: total and tax, items, customer, reference code, times, payment config and "
    "discounts, whichever Finan's detail returns (money as exact decimals, times as "
    "instants). in_sync is false, with a difference named 'invoice', when Finan does not "
    "know the invoice. An invoice found out of sync is listed on the status page until a "
    "check finds it in sync or Finan accepts a body for it again (a re-sync). Sends nothing.",
    responses=error_responses(401, 404, 409, 502, 503, descriptions=_FINAN_ERRORS),
)
@_returns(200, FinanCheckEnvelopeSchema, "Finan's copy and the differences.")
def invoice_at_finan(invoice_id: int) -> Response:
    check = services().finan_checks.check(invoice_id)
    return answer(_finan_check_envelope, check.message, finan_check_data(check))


@bp.post("/reconcile")
@_admin(
    "startReconciliation",
    "Check what Finan holds for many invoices, paced",
    "By ids, or every invoice in a state (e.g. issued). Accepted at once with a batch id; "
    "workers check the invoices one after another (one GET detail each), at most "
    "PROVIDER_RATE_LIMIT_PER_MIN a minute. Results: in_sync, out_of_sync, not_accepted "
    "(Finan never accepted a body), error; the out_of_sync and error ones are the "
    "batch's problems.",
    requestBody=json_body("ids or state, not both.", ReconcileSchema, required=True),
    responses=_errors(400, 401, 404, 413, 415, 422, 503),
)
@_returns(202, BatchEnvelopeSchema, "Accepted: the batch and its progress.")
def reconcile() -> Response:
    body = load_admin_body(_reconcile_body, required=True)
    batch = services().reconciliations.start(
        ids=body.get("ids"), state=body.get("state"), runner="queue", started_by=batch_starter()
    )
    return answer(
        _batch_envelope,
        f"Reconciliation of {counted_invoices(batch.total)} accepted; it runs paced by "
        f"PROVIDER_RATE_LIMIT_PER_MIN. Progress: GET /admin/reconcile/{batch.batch_id}",
        batch,
        202,
    )


@bp.get("/reconcile/<batch_id>", parameters=[_RECONCILE_ID])
@_admin(
    "getReconciliation",
    "Progress of a reconciliation",
    "How many are checked, the count of each result, and the problems (out_of_sync, "
    "error), each with what differs.",
    responses=_errors(401, 404, 503),
)
@_returns(200, BatchEnvelopeSchema, "The batch.")
def reconcile_progress(batch_id: str) -> Response:
    batch = services().reconciliations.get(batch_id)
    if batch is None:
        raise NotFound(f"no reconciliation {batch_id!r} (batches are kept for 7 days)")
    state = "finished" if batch.finished else "running"
    return answer(_batch_envelope, f"Reconciliation {state}: {batch.done}/{batch.total}", batch)
