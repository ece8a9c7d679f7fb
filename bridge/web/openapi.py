"""The bridge's OpenAPI 3.1 document, ``GET /openapi.json``: flask-smorest builds it from
the views themselves.

Each view says what it is next to its code (``bp.doc``: operationId, summary, security,
headers and body; ``bp.response`` and ``bp.alt_response``: what it answers), with the
marshmallow schemas of ``schemas/`` for bodies (apispec's marshmallow plugin, taught the
CRM's lenient field types below). This module holds what the views share: the ``Api`` of an
app (``init_app``), the bridge's ``Blueprint``, the components (security schemes, headers,
parameters) and the building blocks of responses. A route no view documents is an error:
the document is not served without it (``undocumented_routes``).

The views keep reading their bodies themselves (strict JSON, exact bytes for idempotency),
so nothing here parses a request: request bodies are documented with ``bp.doc`` only, and
flask-smorest's own error handler is replaced by the bridge's (``bridge.web.app``), which
answers every error in the envelope ``{"success": false, "message": ..., "errors": {...}}``.
"""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app, jsonify
from flask_smorest.spec.plugins import FlaskPlugin
from marshmallow import fields

from schemas.bridge import ErrorEnvelopeSchema
from schemas.tourwell import CrmDateTime, CrmDecimal, CrmId, CrmString, InvoiceSchema, Money

OPENAPI_VERSION = "3.1.0"
TITLE = "Tourwell → Finan invoice bridge"
VERSION = "1"
JSON = "application/json"
SECURITY_SCHEME = "crmToken"
ADMIN_SECURITY_SCHEME = "adminToken"  # the operator-facing endpoints (bridge/web/admin_api.py)

# The tags of the document, one per kind of caller; each Blueprint names its own.
CRM_TAG, ADMIN_TAG, PAGE_TAG, SERVICE_TAG = "CRM", "Admin", "Status page", "Service"
TAGS = [
    {"name": CRM_TAG, "description": "The CRM's calls: the bridge as its invoice provider."},
    {"name": ADMIN_TAG, "description": "Operators and their tools: see, preview, re-sync."},
    {"name": PAGE_TAG, "description": "The operators' status page (HTML, not an API)."},
    {"name": SERVICE_TAG, "description": "Probes, monitoring and this document; no token."},
]

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

# JSON Schema's name for the type of a constant's Python value.
_CONSTANT_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _field_properties(self: Any, field: fields.Field, ret: dict[str, Any], **kwargs: Any) -> dict:
    """apispec attribute function: the CRM's own fields, typed constants (``success`` is
    ``{"type": "boolean", "const": true}``), and decimals sent as strings."""
    for field_class, properties in _CRM_FIELD_TYPES.items():
        if isinstance(field, field_class):
            found = dict(properties)
            break
    else:
        if isinstance(field, fields.Constant):
            return {"type": _CONSTANT_TYPES[type(field.constant)], "const": field.constant}
        if not (isinstance(field, fields.Decimal) and field.as_string):
            return {}
        found = {"type": "string", "description": "a decimal number, exactly"}
    if field.allow_none:
        types = found["type"] if isinstance(found["type"], list) else [found["type"]]
        found["type"] = [*types, "null"]
    return found


# --- components, and the building blocks of operations ---

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

# ``{invoice_id}`` of a route: its schema (a whole number) comes from the URL rule.
INVOICE_ID = {
    "in": "path",
    "name": "invoice_id",
    "description": "The CRM's invoice id.",
    "example": 17,
}


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


REQUEST_ID_HEADERS = {"X-Request-ID": ref("headers", "RequestId")}
REPLAYED_HEADERS = {
    **REQUEST_ID_HEADERS,
    "Idempotent-Replayed": ref("headers", "IdempotentReplayed"),
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": ref("headers", "WWWAuthenticate")},
    409: {"Retry-After": ref("headers", "RetryAfterWhenInFlight")},
    429: {"Retry-After": ref("headers", "RetryAfter")},
    503: {"Retry-After": ref("headers", "RetryAfter")},
}

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
    429: "Too many failed tokens or logins: from this client address, or from addresses that "
    "have not authenticated within a day while the bridge as a whole sees too many; the "
    "token was not checked. Try again after Retry-After (the end of the minute).",
    422: "The invoice can't be mapped (errors names each field, or the setting to fix, such as "
    "PROVIDER_TAX_IDS), Finan's computed total differs from the CRM's, a field has the wrong "
    "type, or the Idempotency-Key is invalid or was used with another body.",
    502: "Finan rejected the invoice (its message and code under errors.provider; the record "
    "is 'failed'), or the CRM refused the bridge's token (TOURWELL_API_TOKEN) or answered in "
    "a way the bridge can't use.",
    503: "The bridge's Redis is unavailable (nothing was sent), the CRM is unavailable or its "
    "rate limit is reached, or the operation outlived its lock; try again after Retry-After.",
}


def error_responses(
    *statuses: int, descriptions: dict[int, str] = ERROR_DESCRIPTIONS
) -> dict[str, dict[str, Any]]:
    """The error envelope for each of ``statuses``, said in ``descriptions``: the
    ``responses`` of a ``bp.doc``. Where a token can be refused (401), too many refusals
    can be too (429: bridge/web/auth_limits.py)."""
    if 401 in statuses and 429 not in statuses:
        statuses = (*statuses, 429)
    return {
        str(status): {
            "description": descriptions.get(status, ERROR_DESCRIPTIONS[status]),
            "headers": {**REQUEST_ID_HEADERS, **_ERROR_HEADERS.get(status, {})},
            "content": {JSON: {"schema": ErrorEnvelopeSchema}},
        }
        for status in statuses
    }


def json_body(description: str, *shapes: Any, required: bool = False) -> dict[str, Any]:
    """A JSON request body of one of ``shapes`` (optional unless ``required``): a
    ``requestBody`` for ``bp.doc``. Optional means no body at all, never JSON null: the
    views answer a null body with 422."""
    schema = shapes[0] if len(shapes) == 1 else {"anyOf": list(shapes)}
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, whose operations carry its ``tag`` (one of ``TAGS``)."""

    def __init__(self, name: str, import_name: str, *, tag: str, **kwargs: Any) -> None:
        self.tag = tag
        super().__init__(name, import_name, **kwargs)

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: Any = None,
        provide_automatic_options: bool | None = None,
        *,
        parameters: list[Any] | None = None,
        tags: list[str] | None = None,
        **options: Any,
    ) -> None:
        super().add_url_rule(
            rule,
            endpoint,
            view_func,
            provide_automatic_options,
            parameters=parameters,
            tags=tags or [self.tag],
            **options,
        )


class _BridgeFields(MarshmallowPlugin):
    """apispec's marshmallow plugin, taught the bridge's fields (``_field_properties``)
    before any schema is converted."""

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        self.converter.add_attribute_function(_field_properties)


class Api(flask_smorest.Api):
    """flask-smorest's Api, with the bridge's error envelope and no default error response
    (each operation lists the errors it can answer). Its error handler is replaced by the
    bridge's, which ``bridge.web.app`` registers after it for the same exceptions."""

    ERROR_SCHEMA = ErrorEnvelopeSchema  # the component ErrorEnvelope (and no stray "Error")
    DEFAULT_ERROR_RESPONSE_NAME = None


# Components flask-smorest adds for features the bridge does not use (pagination); they are
# left out of the document when no operation refers to them.
UNUSED_LIBRARY_SCHEMAS = ("PaginationMetadata",)


def init_app(app: Flask) -> Api:
    """The app's ``Api``, with the components; register blueprints with
    ``api.register_blueprint`` to have their views documented."""
    app.config.update(
        API_TITLE=TITLE,
        API_VERSION=VERSION,
        OPENAPI_VERSION=OPENAPI_VERSION,
        API_SPEC_OPTIONS={
            "info": {
                "description": "The bridge turns Tourwell CRM invoice operations into signed "
                "Finan update-invoice requests. CRM-facing endpoints answer in Tourwell's "
                "envelope {success, message, data}; errors in {success: false, message, "
                "errors}."
            },
            "tags": TAGS,  # in place of one per blueprint, named after it
        },
    )
    api = Api(app, spec_kwargs={"marshmallow_plugin": _BridgeFields()})
    app.extensions["bridge_api"] = api
    spec = api.spec
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
    api.register_blueprint(bp)
    return api


# Rules Flask adds by itself, which are not part of the bridge's API.
_IGNORED_ENDPOINTS = frozenset({"static"})
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def undocumented_routes(app: Flask, document: dict[str, Any]) -> list[str]:
    """The routes of ``app`` (method, rule, endpoint) with no operation in ``document``."""
    paths = document.get("paths", {})
    missing = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in _IGNORED_ENDPOINTS:
            continue
        operations = paths.get(FlaskPlugin.flaskpath2openapi(rule.rule), {})
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            if method.lower() not in operations:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
    return missing


def openapi_document(app: Flask) -> dict[str, Any]:
    """The document of ``app``, built once; a route without an operation is an error."""
    document = app.extensions.get("bridge_openapi")
    if document is None:
        document = app.extensions["bridge_api"].spec.to_dict()
        schemas = document.get("components", {}).get("schemas", {})
        text = json.dumps(document)
        for name in UNUSED_LIBRARY_SCHEMAS:
            if f'"#/components/schemas/{name}"' not in text:
                schemas.pop(name, None)
        missing = undocumented_routes(app, document)
        if missing:
            raise LookupError(f"routes with no OpenAPI operation: {', '.join(missing)}")
        app.extensions["bridge_openapi"] = document
    return document


bp = Blueprint("openapi", __name__, tag=SERVICE_TAG)


@bp.get("/openapi.json")
@bp.doc(
    operationId="getOpenapiDocument", summary="This document", security=[], parameters=["RequestId"]
)
@bp.response(200, {"type": "object"}, description="OpenAPI 3.1.", headers=REQUEST_ID_HEADERS)
def openapi_json() -> Response:
    return jsonify(openapi_document(current_app._get_current_object()))  # type: ignore[attr-defined]
