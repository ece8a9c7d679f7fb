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

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from bridge.errors import NotFound, Unauthorized, Unprocessable
from bridge.store.records import Record
from bridge.web import admin_openapi
from bridge.web.http import bearer_token, read_json, request_body, services
from schemas.bridge import (
    BatchEnvelopeSchema,
    BulkResyncSchema,
    InvoiceDetailEnvelopeSchema,
    InvoiceListEnvelopeSchema,
    InvoiceListQuerySchema,
    PreviewEnvelopeSchema,
    ResyncBodySchema,
    ResyncEnvelopeSchema,
    ResyncQuerySchema,
)

bp = Blueprint("admin_api", __name__, url_prefix="/admin")
admin_openapi.register()

_list_query = InvoiceListQuerySchema()
_resync_query = ResyncQuerySchema()
_resync_body = ResyncBodySchema()
_bulk_body = BulkResyncSchema()
_list_envelope = InvoiceListEnvelopeSchema()
_detail_envelope = InvoiceDetailEnvelopeSchema()
_preview_envelope = PreviewEnvelopeSchema()
_resync_envelope = ResyncEnvelopeSchema()
_batch_envelope = BatchEnvelopeSchema()


@bp.before_request
def authenticate() -> None:
    tokens = services().settings.admin_tokens
    if not tokens:
        raise Unauthorized(
            "no admin tokens are configured (BRIDGE_ADMIN_TOKENS), so the admin API refuses "
            "every caller"
        )
    bearer_token(tokens, "admin")


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


def list_invoices(query: dict[str, Any]) -> dict[str, Any]:
    """The page of records the query asks for, and the counts per state."""
    records = services().records
    per_page, page = query["per_page"], query["page"]
    offset = (page - 1) * per_page
    if query.get("q"):
        found = records.search(query["q"], query.get("state"))
        total, shown = len(found), found[offset : offset + per_page]
    else:
        total, shown = records.page(query.get("state"), offset, per_page)
    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "counts": records.count_by_state(),
        "invoices": shown,
    }


@bp.get("/invoices")
def invoices() -> Response:
    query = load_query(_list_query)
    data = list_invoices(query)
    return answer(_list_envelope, f"{data['total']} invoices", data)


@bp.get("/invoices/<int:invoice_id>")
def invoice(invoice_id: int) -> Response:
    found = services().operations.get(invoice_id)
    return answer(_detail_envelope, "Invoice record and history", invoice_detail(found))


@bp.get("/invoices/<int:invoice_id>/preview")
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
    }
    message = (
        "A re-sync would send this body" if result.would_send else "Unchanged: nothing to send"
    )
    return answer(_preview_envelope, message, data)


@bp.post("/invoices/<int:invoice_id>/resync")
def resync(invoice_id: int) -> Response:
    force = load_query(_resync_query)["force"]
    force = load_admin_body(_resync_body, required=False)["force"] or force
    outcome = services().operations.resync(invoice_id, force=force)
    data = {"result": outcome.result, "record": outcome.record}
    return answer(_resync_envelope, outcome.message, data, outcome.status)


@bp.post("/resync")
def bulk_resync() -> Response:
    body = load_admin_body(_bulk_body, required=True)
    batch = services().batches.start(
        ids=body.get("ids"), state=body.get("state"), force=body["force"], runner="queue"
    )
    return answer(
        _batch_envelope,
        f"Bulk re-sync of {batch.total} invoices accepted; it runs paced by the CRM's rate "
        f"limit. Progress: GET /admin/resync/{batch.batch_id}",
        batch,
        202,
    )


@bp.get("/resync/<batch_id>")
def bulk_progress(batch_id: str) -> Response:
    batch = services().batches.get(batch_id)
    if batch is None:
        raise NotFound(f"no bulk re-sync {batch_id!r} (batches are kept for 7 days)")
    state = "finished" if batch.finished else "running"
    return answer(_batch_envelope, f"Bulk re-sync {state}: {batch.done}/{batch.total}", batch)
