"""Each request's log lines: its request id (and invoice and operation) bound to every
line, the id echoed back, and one closing line per request.

Every request ends with one line of its own (logger ``bridge.access``): method, path,
status, size, duration and, for a refusal, its ``reason``; for an operation, the message
reads "issue answered 201". It stands in for gunicorn's access log, which is off: one line
per request instead of two, and it knows the invoice and the operation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request

from bridge.observability import logs

access_log = logging.getLogger("bridge.access")

REQUEST_ID_HEADER = "X-Request-ID"


def note_refusal(reason: str) -> None:
    """Remember why the request was refused, for the request's closing line."""
    g.log_refusal_reason = reason


def init_app(app: Flask) -> None:
    """Bind the request id (and invoice and operation) to the request's log lines."""

    @app.before_request
    def bind_request() -> None:
        g.request_started = time.perf_counter()
        request_id = logs.request_id_from(request.headers.get(REQUEST_ID_HEADER))
        fields: dict[str, Any] = {"request_id": request_id}
        invoice_id = (request.view_args or {}).get("invoice_id")
        if invoice_id is not None and request.endpoint:
            fields["invoice_id"] = invoice_id
            fields["operation"] = request.endpoint.rpartition(".")[2]  # the view's name
        g.request_id = request_id
        g.log_context_token = logs.bind(**fields)

    @app.after_request
    def close_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started") or time.perf_counter()
        reason = g.get("log_refusal_reason")
        access_log.info(
            "%s answered %s%s",
            logs.context_field("operation") or f"{request.method} {request.path}",
            response.status_code,
            f" ({reason})" if reason else "",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "bytes": response.content_length,
                "duration_ms": round(1000 * (time.perf_counter() - started), 2),
                "reason": reason,
            },
        )
        return response

    @app.teardown_request
    def unbind_request(exc: BaseException | None) -> None:
        token = g.pop("log_context_token", None)
        if token is not None:
            logs.unbind(token)
