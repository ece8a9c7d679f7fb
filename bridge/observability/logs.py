"""Logs as JSON lines: one object per line, naming the request, invoice and operation in hand.

``JsonFormatter`` (python-json-logger underneath) formats the app's own lines, gunicorn's
error log (``deploy/gunicorn.conf.py``) and anything else that calls ``configure_logging``.
While a request runs, every line carries its ``request_id`` (a valid ``X-Request-ID`` from
the caller, else a new one, echoed back in the same header); while an operation on an
invoice runs, also ``invoice_id`` and ``operation``.

Every request ends with one line of its own (``bridge.web.request_logging``).

What never reaches a log, and why:
- tokens, secrets and signatures: the code does not log them, and as a last line of
  defence the formatter replaces every configured secret it finds with ``[redacted]``;
- request headers (``Authorization`` among them) and query strings: a request's line has a
  fixed list of fields, and no header but ``X-Request-ID`` is among them;
- customer data (names, emails, phones, addresses): lines name an invoice by its id and an
  error by its machine ``reason``, never by its message, which may quote the invoice.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

# Long enough for any id scheme in use (UUIDs, ULIDs, trace ids); the characters can't
# break a log line or a header, or smuggle markup into a log viewer.
MAX_REQUEST_ID_LENGTH = 128
_SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")

REDACTED = "[redacted]"
# A shorter "secret" would blank out ordinary words all over the logs; real tokens and keys
# are far longer than this.
MIN_REDACTED_LENGTH = 8

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("bridge_log_context", default=_EMPTY)
_secrets: set[str] = set()


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is safe to echo and log, else a new one."""
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` to every line logged until ``unbind`` (a request's hooks call these)."""
    return _context.set({**_context.get(), **fields})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


def context_field(name: str) -> Any:
    """A field of the lines logged now (e.g. ``operation``), or None."""
    return _context.get().get(name)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``invoice_id``, ``operation``) to every line logged inside."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def register_secrets(*values: str | None) -> None:
    """Values the formatter must never write (tokens, keys), whoever logs them."""
    _secrets.update(v for v in values if v and len(v) >= MIN_REDACTED_LENGTH)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


class JsonFormatter(_LibraryJsonFormatter):
    """``{"time", "level", "logger", "message", ...context, ...extra}``, one line each."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__("%(levelname)s %(name)s %(message)s", **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in _context.get().items():
            log_data.setdefault(key, value)

    def jsonify_log_record(self, log_data: Any) -> str:
        return redact(super().jsonify_log_record(log_data))


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log line to ``stream`` (default stderr) as JSON, replacing root's handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
