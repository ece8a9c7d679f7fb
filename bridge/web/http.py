"""What every endpoint of the bridge shares: the process's services, Bearer tokens, the
raw body and its JSON, and answers in Tourwell's envelope."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Response, current_app, g, jsonify, request
from marshmallow import ValidationError

from bridge.errors import (
    MalformedJSON,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from bridge.services import Services
from schemas import json_input

E = TypeVar("E")


def services() -> Services:
    return current_app.extensions["bridge"]


def _itself(token: str) -> str:
    return token


def matching_token(
    presented: str, allowed: Iterable[E], token_of: Callable[[E], str] = _itself
) -> E | None:
    """The entry of ``allowed`` whose token (``token_of``: the entry itself, or e.g. an
    ``AdminToken``'s ``token``) equals ``presented``, or None. Every candidate is compared,
    in constant time: no early exit that times the match."""
    found = None
    for candidate in allowed:
        if hmac.compare_digest(presented.encode(), token_of(candidate).encode()):
            found = candidate
    return found


def bearer_token(allowed: Iterable[E], what: str, token_of: Callable[[E], str] = _itself) -> E:
    """The entry of ``allowed`` the caller's Bearer token matches (see ``matching_token``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(f"send the {what} token as 'Authorization: Bearer <token>'")
    entry = matching_token(token, allowed, token_of)
    if entry is None:
        raise Unauthorized(f"the {what} token is not valid")
    token_matched()
    return entry


def token_matched() -> None:
    """Note that this request presented a correct token (a Bearer token, or the login
    form's): only such a request marks its address as authenticated
    (bridge/web/auth_limits.py), never one that merely got a 2xx (an OPTIONS, say)."""
    g.token_matched = True


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


def answer(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def error_response(status: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    return answer(status, {"success": False, "message": message, "errors": errors or {}})
