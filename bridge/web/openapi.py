"""The bridge's OpenAPI document, ``GET /openapi.json``, generated from its schemas (apispec).

Bodies come from the marshmallow schemas in ``schemas/`` (apispec's marshmallow plugin,
taught the CRM's lenient field types below); paths come from the app's own URL map, so no
route can be left out: ``build_spec`` walks ``app.url_map`` and looks up each endpoint's
operation in ``OPERATIONS`` (Flask endpoint name and method → OpenAPI operation), and
refuses to build with a route that has none. A blueprint added later documents its routes
with ``document()`` next to their views, or with rows added here.

Every error an endpoint can answer is listed with the error envelope (docs/contract/http.md#errors,
``bridge.errors``).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import fields

from schemas.bridge import (
    ErrorEnvelopeSchema,
    HealthSchema,
    ReadinessSchema,
    SuccessEnvelopeSchema,
)
from schemas.tourwell import (
    CancelSchema,
    CrmDateTime,
    CrmDecimal,
    CrmId,
    CrmString,
    InvoiceSchema,
    Money,
    UpdateSchema,
)

OPENAPI_VERSION = "3.1.0"
TITLE = "Tourwell → Finan invoice bridge"
VERSION = "1"
JSON = "application/json"
SECURITY_SCHEME = "crmToken"
ADMIN_SECURITY_SCHEME = "adminToken"  # the operator-facing endpoints (bridge/web/admin_api.py)

# --- the CRM's lenient fields as JSON Schema (schemas/tourwell.py says what each accepts) ---

_AMOUNT = (
    "an amount: a number, or a string like '40000000', '40,000,000', '40.000.000' or "
    "'1,234.5' ('1.500' is refused as ambiguous); below 10^15"
)
_CRM_FIELD_TYPES: dict[type[fields.Field], dict[str, Any]] = {
    CrmString: {
        "type": ["string", "integer"],
        "description": "text (an integer is taken as its digits)",
    },
    CrmId: {
        "type": ["integer", "string"],
        "description": "a positive integer id, or its digits",
        "minimum": 1,
        "pattern": r"^\s*0*[1-9][0-9]*\s*$",
    },
    CrmDecimal: {"type": ["number", "string"], "description": _AMOUNT},
    CrmDateTime: {
        "type": "string",
        "description": "ISO 8601, YYYY-MM-DD HH:MM[:SS] or DD/MM/YYYY[ HH:MM[:SS]]; "
        "without a zone it is Vietnam time (UTC+7)",
    },
    Money: {
        "type": ["number", "string", "object"],
        "description": f"{_AMOUNT}; or {{original, forex}} (price rows) or {{base, foreign}} "
        "(invoice totals): base-currency (VND) and foreign amounts",
        "properties": {
            name: {"type": ["number", "string", "null"]}
            for name in ("original", "forex", "base", "foreign")
        },
    },
}


def _field_properties(self: Any, field: fields.Field, ret: dict[str, Any], **kwargs: Any) -> dict:
    """apispec attribute function: the CRM's own fields, and decimals sent as strings."""
    for field_class, properties in _CRM_FIELD_TYPES.items():
        if isinstance(field, field_class):
            found = dict(properties)
            break
    else:
        if isinstance(field, fields.Constant):
            return {"enum": [field.constant]}
        if not (isinstance(field, fields.Decimal) and field.as_string):
            return {}
        found = {"type": "string", "description": "a decimal number, exactly"}
    if field.allow_none:
        types = found["type"] if isinstance(found["type"], list) else [found["type"]]
        found["type"] = [*types, "null"]
    return found


# --- building blocks of operations ---

ERROR_DESCRIPTIONS = {
    400: "The body is not valid UTF-8 JSON (NaN and Infinity are not JSON).",
    401: "The Bearer token is missing, or is not one of BRIDGE_CRM_TOKENS.",
    404: "The invoice is unknown: to the CRM (when the bridge pulls it), or to the bridge (GET); "
    "or the path is not one of the bridge's (an id that is not a whole number).",
    409: "An operation on the same invoice, or with the same Idempotency-Key, is in flight "
    "(with Retry-After); or the transition is not allowed: update or cancel before issue, "
    "update or issue after cancel, a second issue with other content.",
    413: "The body is over 1 MiB.",
    415: "A body was sent without 'Content-Type: application/json'.",
    422: "The invoice can't be mapped (errors names each field, or the setting to fix, such as "
    "PROVIDER_TAX_IDS), Finan's computed total differs from the CRM's, a field has the wrong "
    "type, or the Idempotency-Key is invalid or was used with another body.",
    502: "Finan rejected the invoice (its message and code under errors.provider; the record "
    "is 'failed'), or the CRM refused the bridge's token (TOURWELL_API_TOKEN) or answered in "
    "a way the bridge can't use.",
    503: "The bridge's Redis is unavailable (nothing was sent), the CRM is unavailable or its "
    "rate limit is reached, or the operation outlived its lock; try again after Retry-After.",
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}},
    409: {"Retry-After": {"$ref": "#/components/headers/RetryAfterWhenInFlight"}},
    503: {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
}
REQUEST_ID_HEADERS = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}

HEADERS = {
    "RequestId": {
        "description": "The request's id: the caller's X-Request-ID when it is valid, else a "
        "new one. It is on every log line about the request.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RetryAfterWhenInFlight": {
        "description": "Seconds to wait, when another operation is in flight (absent when the "
        "transition itself is not allowed).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWWAuthenticate": {
        "description": "The scheme to authenticate with.",
        "required": True,
        "schema": {"type": "string"},
    },
    "IdempotentReplayed": {
        "description": "'true' when this is the stored answer to an earlier request with the "
        "same Idempotency-Key and body.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}

PARAMETERS = {
    "InvoiceId": {
        "name": "invoice_id",
        "in": "path",
        "required": True,
        "description": "The CRM's invoice id.",
        "schema": {"type": "integer", "minimum": 0},
        "example": 17,
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the same key (per token) with the same body gets "
        "the stored answer back, marked 'Idempotent-Replayed: true'; with another body, 422. "
        "Kept for BRIDGE_IDEMPOTENCY_TTL seconds.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    },
    "RequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "The caller's id for this request, echoed back and written on every log "
        "line about it. Up to 128 letters, digits and '._:-'; any other value is replaced "
        "with a new id (the request is not refused).",
        "schema": {"type": "string"},
    },
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_response(description: str, schema: Any, headers: dict | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**REQUEST_ID_HEADERS, **(headers or {})},
        "content": {JSON: {"schema": schema}},
    }


def error_responses(
    *statuses: int, descriptions: dict[int, str] = ERROR_DESCRIPTIONS
) -> dict[str, dict[str, Any]]:
    """The error envelope for each of ``statuses``, said in ``descriptions``."""
    return {
        str(status): json_response(
            descriptions[status], ErrorEnvelopeSchema, _ERROR_HEADERS.get(status)
        )
        for status in statuses
    }


def crm_operation(
    summary: str,
    description: str,
    success: dict[int, str],
    errors: tuple[int, ...],
    body: dict[str, Any] | None = None,
    takes_idempotency_key: bool = True,
) -> dict[str, Any]:
    """An operation of the CRM-facing API: Bearer token, Tourwell's envelope."""
    replayed = (
        {"Idempotent-Replayed": _ref("headers", "IdempotentReplayed")}
        if takes_idempotency_key
        else {}
    )
    # Parameters by component name: apispec turns each into a $ref.
    parameters = ["InvoiceId", "RequestId"]
    if takes_idempotency_key:
        parameters.append("IdempotencyKey")
    operation: dict[str, Any] = {
        "tags": ["CRM"],
        "summary": summary,
        "description": description,
        "security": [{SECURITY_SCHEME: []}],
        "parameters": parameters,
        "responses": {
            **{
                str(status): json_response(text, SuccessEnvelopeSchema, replayed)
                for status, text in success.items()
            },
            **error_responses(*errors),
        },
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def service_operation(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A service endpoint: no token."""
    return {
        "tags": ["Service"],
        "summary": summary,
        "security": [],
        "parameters": ["RequestId"],
        "responses": responses,
    }


def json_body(description: str, *shapes: Any) -> dict[str, Any]:
    """An optional JSON body of one of ``shapes``; JSON null is the same as no body."""
    schema = {"anyOf": [*shapes, {"type": "null"}]}
    return {"required": False, "description": description, "content": {JSON: {"schema": schema}}}


QUEUED = (
    "Finan is unavailable: the operation is queued (state 'queued'); a worker sends it and "
    "writes the outcome back to the CRM."
)

# What the issue, update and cancel operations can answer with an error.
WRITE_ERRORS = (400, 401, 404, 409, 413, 415, 422, 502, 503)

ISSUE_BODY = json_body(
    "Empty (the bridge pulls the invoice from the CRM), or the invoice in the shape of the "
    'CRM\'s GET /api/v1/invoices/{id}: wrapped as {"data": {...}} or bare. Unknown fields '
    "are ignored.",
    _ref("schemas", "Invoice"),
    {"type": "object", "required": ["data"], "properties": {"data": _ref("schemas", "Invoice")}},
)

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("crm.issue", "post"): crm_operation(
        "Issue an invoice at Finan",
        "One signed update-invoice to the Finan invoice derived from the CRM invoice's URL. "
        "A repeat with the same content sends nothing and answers 201 again.",
        {201: "Issued (or already issued with this content).", 202: QUEUED},
        WRITE_ERRORS,
        ISSUE_BODY,
    ),
    ("crm.update", "put"): crm_operation(
        "Update an issued invoice",
        "Pulls the CRM's current invoice, lays these fields over it and sends it; unchanged "
        "content sends nothing. lookup_url is kept on the record, not sent to Finan.",
        {200: "Updated (or unchanged).", 202: QUEUED},
        WRITE_ERRORS,
        json_body("Tourwell's update fields, all optional.", UpdateSchema),
    ),
    ("crm.cancel", "post"): crm_operation(
        "Cancel an issued invoice",
        "Finan has no cancel: the bridge sends the invoice with nothing left to collect (no "
        "items, no payment methods) and keeps the note on the record.",
        {201: "Cancelled: the message is exactly 'Invoice Canceled successfully'.", 202: QUEUED},
        WRITE_ERRORS,
        json_body("Optional.", CancelSchema),
    ),
    ("crm.record", "get"): crm_operation(
        "The bridge's record of an invoice",
        "What the bridge knows: state, Finan's ids and codes, totals, the last error.",
        {200: "The record."},
        (401, 404, 503),
        takes_idempotency_key=False,
    ),
    ("health.healthz", "get"): service_operation(
        "Liveness: the process is serving",
        {"200": json_response("Alive.", HealthSchema)},
    ),
    ("health.readyz", "get"): service_operation(
        "Readiness: settings were valid at start and Redis answers",
        {
            "200": json_response("Ready.", ReadinessSchema),
            "503": json_response("Redis does not answer.", ReadinessSchema),
        },
    ),
    ("metrics.metrics", "get"): service_operation(
        "Prometheus metrics",
        {
            "200": {
                "description": "Prometheus text format (or OpenMetrics, if asked for in Accept).",
                "headers": REQUEST_ID_HEADERS,
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
            }
        },
    ),
    ("openapi.openapi_json", "get"): service_operation(
        "This document",
        {"200": json_response("OpenAPI 3.1.", {"type": "object"})},
    ),
}

# Rules Flask adds by itself, which are not part of the bridge's API.
_IGNORED_ENDPOINTS = frozenset({"static"})
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def document(endpoint: str, method: str, operation: dict[str, Any]) -> None:
    """Add the operation of a route (Flask endpoint name, HTTP method) to the document."""
    OPERATIONS[(endpoint, method.lower())] = operation


def openapi_path(rule: str) -> str:
    """``/api/v1/invoices/<int:invoice_id>`` → ``/api/v1/invoices/{invoice_id}``."""
    parts = []
    for piece in rule.split("/"):
        if piece.startswith("<") and piece.endswith(">"):
            piece = "{" + piece[1:-1].rpartition(":")[2] + "}"
        parts.append(piece)
    return "/".join(parts)


def build_spec(app: Flask) -> APISpec:
    """The document for every route of ``app``; a route without an operation is an error."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[marshmallow],
        info={
            "description": "The bridge turns Tourwell CRM invoice operations into signed Finan "
            "update-invoice requests. CRM-facing endpoints answer in Tourwell's envelope "
            "{success, message, data}; errors in {success: false, message, errors}."
        },
    )
    marshmallow.converter.add_attribute_function(_field_properties)
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {"type": "http", "scheme": "bearer", "description": "One of BRIDGE_CRM_TOKENS."},
    )
    spec.components.security_scheme(
        ADMIN_SECURITY_SCHEME,
        {"type": "http", "scheme": "bearer", "description": "One of BRIDGE_ADMIN_TOKENS."},
    )
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], parameter)
    spec.components.schema("Invoice", schema=InvoiceSchema)
    spec.components.schema("ErrorEnvelope", schema=ErrorEnvelopeSchema)

    missing = []
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in _IGNORED_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            operation = OPERATIONS.get((rule.endpoint, method.lower()))
            if operation is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
                continue
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    if missing:
        raise LookupError(f"routes with no OpenAPI operation: {', '.join(missing)}")
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    document = current_app.extensions.get("bridge_openapi")
    if document is None:
        document = current_app.extensions["bridge_openapi"] = build_spec(current_app).to_dict()
    return jsonify(document)
