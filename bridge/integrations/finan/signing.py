"""Finan request signing (docs/contract/mapping.md#signing).

Every Finan request carries ``x-client-id``, ``x-timestamp`` (Unix seconds) and
``x-signature``: the lowercase hex SHA-256 of ``{secret}_{METHOD}_{path}_{body}_{timestamp}``.
It is a plain digest with the secret inside the string, not an HMAC.

``FinanAuth`` signs a prepared ``requests`` request, so the bytes signed are the bytes
sent and no call site builds these headers by hand. ``verify`` is the other side: the
Finan stand-in checks every request with it, the way Finan does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import requests
from requests.models import PreparedRequest

# Finan refuses a request whose x-timestamp is further than this from its own clock, in
# either direction. A request must be signed when it is sent, never ahead of time.
SIGNATURE_WINDOW_SECONDS = 30

HEADER_CLIENT_ID = "x-client-id"
HEADER_TIMESTAMP = "x-timestamp"
HEADER_SIGNATURE = "x-signature"

# Unix seconds as Finan writes them: digits only (a "1.5" or " 12" is not a timestamp).
_TIMESTAMP = re.compile(r"-?[0-9]{1,15}")


def signature(secret: str, method: str, path: str, body: bytes, timestamp: int) -> str:
    """The ``x-signature`` value for one request.

    ``path`` is relative to the API base (starts ``/api/v1/``) with its query string;
    ``body`` is the exact bytes sent. The string is built as bytes so the body is hashed as
    it travels, never decoded and re-encoded on the way.
    """
    message = b"_".join(
        (
            secret.encode(),
            method.upper().encode(),
            path.encode(),
            body,
            str(int(timestamp)).encode(),
        )
    )
    return hashlib.sha256(message).hexdigest()


class FinanAuth(requests.auth.AuthBase):
    """Signs each request sent to Finan; pass as ``auth=`` to a session or a request.

    ``base_url`` is ``PROVIDER_BASE_URL``: any path prefix it carries (``https://host/open``)
    is part of the URL but not of the signed path, which starts at ``/api/v1/``.
    """

    def __init__(
        self,
        client_id: str,
        secret: str,
        base_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self._secret = secret
        self.base_url = base_url
        self._prefix = urlsplit(base_url).path.rstrip("/")
        self._clock = clock

    def __repr__(self) -> str:  # the secret must never reach a log through repr()
        return f"FinanAuth(client_id={self.client_id!r}, base_url={self.base_url!r})"

    def signed_path(self, url: str) -> str:
        """The part of ``url`` Finan signs: the path after the base's prefix, plus query."""
        parts = urlsplit(url)
        path = parts.path
        if self._prefix:
            if path != self._prefix and not path.startswith(self._prefix + "/"):
                raise ValueError(f"{url!r} is not under the Finan base URL {self.base_url!r}")
            path = path[len(self._prefix) :]
        return f"{path}?{parts.query}" if parts.query else path

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        body = r.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes):
            # A file or generator body can't be hashed without consuming it.
            raise TypeError("FinanAuth signs bytes or str bodies only")
        timestamp = int(self._clock())
        r.headers[HEADER_CLIENT_ID] = self.client_id
        r.headers[HEADER_TIMESTAMP] = str(timestamp)
        r.headers[HEADER_SIGNATURE] = signature(
            self._secret, r.method or "GET", self.signed_path(r.url or ""), body, timestamp
        )
        return r


class SignatureError(Exception):
    """A request's signature headers don't check out; the message says which part and why."""


def verify(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    *,
    client_id: str,
    secret: str,
    now: float,
) -> None:
    """Check a request's signature headers as Finan does, or raise ``SignatureError``.

    ``headers`` may be any mapping; names are matched case-insensitively. ``path`` is the
    signed path (relative to the API base, with query string), ``body`` the bytes received.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in (HEADER_CLIENT_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE):
        if not lowered.get(name):
            raise SignatureError(f"missing header {name}")

    if not hmac.compare_digest(lowered[HEADER_CLIENT_ID].encode(), client_id.encode()):
        raise SignatureError("unknown client id")

    raw_timestamp = lowered[HEADER_TIMESTAMP]
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise SignatureError(f"{HEADER_TIMESTAMP} is not an integer number of Unix seconds")
    timestamp = int(raw_timestamp)
    skew = now - timestamp
    if skew > SIGNATURE_WINDOW_SECONDS:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is stale: {int(skew)} s old, "
            f"more than {SIGNATURE_WINDOW_SECONDS} s allowed"
        )
    if -skew > SIGNATURE_WINDOW_SECONDS:
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is in the future: {int(-skew)} s ahead, "
            f"more than {SIGNATURE_WINDOW_SECONDS} s allowed"
        )

    expected = signature(secret, method, path, body, timestamp)
    if not hmac.compare_digest(lowered[HEADER_SIGNATURE].encode(), expected.encode()):
        raise SignatureError("signature mismatch")
