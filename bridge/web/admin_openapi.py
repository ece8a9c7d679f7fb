"""The admin API's and the status page's operations in the OpenAPI document.

``bridge.web.openapi`` walks every route of the app and refuses a route it has no operation
for; these are the operations of ``bridge.web.admin_api`` (JSON, admin Bearer token) and of
``bridge.web.admin_page`` (HTML, session cookie), added with ``bridge.web.openapi.document``.
"""

from __future__ import annotations

from typing import Any

from bridge.web.openapi import (
    ADMIN_SECURITY_SCHEME,
    ERROR_DESCRIPTIONS,
    REQUEST_ID_HEADERS,
    document,
    error_responses,
    json_body,
    json_response,
)
from schemas.bridge import (
    RESYNC_STATES,
    BatchEnvelopeSchema,
    BulkResyncSchema,
    ErrorEnvelopeSchema,
    InvoiceDetailEnvelopeSchema,
    InvoiceListEnvelopeSchema,
    InvoiceListQuerySchema,
    PreviewEnvelopeSchema,
    ResyncBodySchema,
    ResyncEnvelopeSchema,
)

# Said for the admin API where the CRM-facing API's words don't fit.
_ADMIN_ERRORS = {
    **ERROR_DESCRIPTIONS,
    400: "The body is not valid UTF-8 JSON.",
    401: "The Bearer token is missing, or is not one of BRIDGE_ADMIN_TOKENS: a CRM token is "
    "refused, and with no admin tokens configured every caller is.",
    404: "The invoice (or one of the ids, or the batch) is unknown to the bridge, or the CRM "
    "does not know the invoice it pulls.",
    409: "Another operation on the invoice is in flight (with Retry-After).",
    422: "An unknown or invalid query parameter or body field (errors names each), or the "
    "invoice can't be mapped.",
    502: "Finan rejected the invoice (the record is now 'failed'), or the CRM refused the "
    "bridge's token (TOURWELL_API_TOKEN).",
    503: "Redis or the CRM is unavailable; try again after Retry-After.",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return error_responses(*statuses, descriptions=_ADMIN_ERRORS)


def _admin(
    summary: str,
    description: str,
    responses: dict[str, Any],
    parameters: list[Any] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["Admin"],
        "summary": summary,
        "description": description,
        "security": [{ADMIN_SECURITY_SCHEME: []}],
        "parameters": ["RequestId", *(parameters or [])],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


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
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "The id from POST /admin/resync.",
}

ADMIN_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("admin_api.invoices", "get"): _admin(
        "Records, newest change first",
        "Filter by state; search by invoice id, or by the CRM's invoice code or its start "
        "(case-insensitive). Paged. Also the number of records in each state.",
        {
            "200": json_response("A page of records.", InvoiceListEnvelopeSchema),
            **_errors(401, 422, 503),
        },
        # One query parameter per field of the schema that validates them (apispec).
        [{"in": "query", "schema": InvoiceListQuerySchema}],
    ),
    ("admin_api.invoice", "get"): _admin(
        "One record, its history and the last body sent",
        "History: each operation, newest first: when, what, who asked (crm, operator, "
        "worker), the outcome, and Finan's code and message.",
        {
            "200": json_response("The record.", InvoiceDetailEnvelopeSchema),
            **_errors(401, 404, 503),
        },
        ["InvoiceId"],
    ),
    ("admin_api.preview", "get"): _admin(
        "Dry run: what a re-sync would send",
        "Pulls the invoice from the CRM, maps it, and shows the body with its diff against "
        "the last body sent; sends nothing. For a cancelled invoice, the cancel body.",
        {
            "200": json_response("The body and its diff.", PreviewEnvelopeSchema),
            **_errors(401, 404, 422, 502, 503),
        },
        ["InvoiceId"],
    ),
    ("admin_api.resync", "post"): _admin(
        "Re-sync one invoice",
        "Pull, map, send, and write the outcome back to the CRM. Unchanged content is not sent "
        "unless force=1; a failed, dead or queued invoice is always sent. A cancelled invoice "
        "gets its cancel body again (a re-sync never un-cancels).",
        {
            "200": json_response("Sent and accepted, or unchanged.", ResyncEnvelopeSchema),
            "202": json_response("Finan is unavailable: queued.", ResyncEnvelopeSchema),
            **_errors(400, 401, 404, 409, 413, 415, 422, 502, 503),
        },
        ["InvoiceId", _FORCE],
        json_body(
            'Optional: {"force": true} is the same as force=1; JSON null is the same as no body.',
            ResyncBodySchema,
        ),
    ),
    ("admin_api.bulk_resync", "post"): _admin(
        "Re-sync many invoices, paced by the CRM's rate limit",
        "By ids, or every invoice in a state (failed or dead). Accepted at once with a batch "
        "id; workers re-sync the invoices one after another, using at most two thirds of the "
        "CRM's rate limit.",
        {
            "202": json_response("Accepted: the batch and its progress.", BatchEnvelopeSchema),
            **_errors(400, 401, 404, 413, 415, 422, 503),
        },
        body={
            "required": True,
            "description": "ids or state, not both; force as for one invoice.",
            "content": {"application/json": {"schema": BulkResyncSchema}},
        },
    ),
    ("admin_api.bulk_progress", "get"): _admin(
        "Progress of a bulk re-sync",
        "How many are done, the count of each result, and the problems (failed, error).",
        {"200": json_response("The batch.", BatchEnvelopeSchema), **_errors(401, 404, 503)},
        [_BATCH_ID],
    ),
}


def _html(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": REQUEST_ID_HEADERS,
        "content": {"text/html": {"schema": {"type": "string"}}},
    }


def _redirect(description: str) -> dict[str, Any]:
    location = {"Location": {"schema": {"type": "string"}}}
    return {**_html(description), "headers": {**REQUEST_ID_HEADERS, **location}}


_LOGIN = _redirect("Not logged in (or the session ended): to the login form.")
_FORBIDDEN = _html("The form's CSRF token is missing, wrong or expired: log in again.")
_PAGE_NOT_FOUND = {
    "description": "The invoice or batch is unknown to the bridge (a page); or the path is "
    "not one of the bridge's, such as a negative id (the JSON error envelope).",
    "headers": REQUEST_ID_HEADERS,
    "content": {
        "text/html": {"schema": {"type": "string"}},
        "application/json": {"schema": ErrorEnvelopeSchema},
    },
}


def _page(
    summary: str,
    responses: dict[str, Any],
    form: dict[str, Any] | None = None,
    path: tuple[Any, ...] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["Status page"],
        "summary": summary,
        "description": "Part of the operators' status page (HTML, server-rendered); its "
        "session cookie comes from logging in with an admin token.",
        "security": [],
        "parameters": ["RequestId", *path],
        "responses": responses,
    }
    if form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": form}},
        }
    return operation


def _form(**properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["csrf_token"],
        "properties": {"csrf_token": {"type": "string"}, **properties},
    }


PAGE_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("admin_page.index", "get"): _page(
        "Counts per state and the searchable table of records",
        {"200": _html("The page."), "302": _LOGIN, "422": _html("A bad filter.")},
    ),
    ("admin_page.login", "get"): _page("The login form", {"200": _html("The form.")}),
    ("admin_page.login", "post"): _page(
        "Log in with an admin token",
        {
            "303": _redirect("Logged in: to the status page."),
            "401": _html("The token is not one of BRIDGE_ADMIN_TOKENS."),
            "403": _FORBIDDEN,
        },
        _form(token={"type": "string"}),
    ),
    ("admin_page.logout", "post"): _page(
        "Log out",
        {"303": _redirect("Logged out: to the login form."), "403": _FORBIDDEN},
        _form(),
    ),
    ("admin_page.invoice", "get"): _page(
        "An invoice: its record, history, last body, and the re-sync buttons",
        {"200": _html("The page."), "302": _LOGIN, "404": _PAGE_NOT_FOUND},
        path=("InvoiceId",),
    ),
    ("admin_page.preview", "get"): _page(
        "Preview of a re-sync: the body and its diff; sends nothing",
        {
            "200": _html("The preview."),
            "302": _LOGIN,
            "404": _PAGE_NOT_FOUND,
            "422": _html("The invoice can't be mapped: why."),
            "502": _html("The CRM refused the bridge's token."),
            "503": _html("The CRM or Redis is unavailable."),
        },
        path=("InvoiceId",),
    ),
    ("admin_page.resync", "post"): _page(
        "Re-sync an invoice (force: send even when unchanged)",
        {
            "303": _redirect("Done (or refused, with the reason): back to the invoice."),
            "302": _LOGIN,
            "403": _FORBIDDEN,
            "404": _PAGE_NOT_FOUND,
        },
        _form(force={"type": "string", "enum": ["0", "1"]}),
        path=("InvoiceId",),
    ),
    ("admin_page.bulk_resync", "post"): _page(
        "Re-sync every failed or dead invoice, paced",
        {
            "303": _redirect("Accepted: to the batch's progress."),
            "302": _LOGIN,
            "403": _FORBIDDEN,
            "422": _html("Not a state that can be re-synced in bulk."),
        },
        _form(state={"type": "string", "enum": list(RESYNC_STATES)}),
    ),
    ("admin_page.batch", "get"): _page(
        "Progress of a bulk re-sync",
        {"200": _html("The page."), "302": _LOGIN, "404": _PAGE_NOT_FOUND},
        # Any text: the page redirects to the login before it looks at the id.
        path=({"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}},),
    ),
}


def register() -> None:
    for (endpoint, method), operation in {**ADMIN_OPERATIONS, **PAGE_OPERATIONS}.items():
        document(endpoint, method, operation)
