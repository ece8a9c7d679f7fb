"""Finan's API: one signed ``PUT update-invoice/{id}`` per operation.

Answers are classified by the envelope's code (its third digit is the HTTP class):
success returns a ``FinanAnswer``; a client-class code raises ``ProviderRejected`` at once
(the same body would be refused again); timeouts, resets, 429, HTTP 5xx and server-class
codes are retried inline a few times, then raise ``ProviderUnavailable``. The whole call,
every try included, ends by its deadline (``bridge.integrations.http``): an answer still
being read then is cut off and counts as a timeout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests
from marshmallow import ValidationError

from bridge.config import Settings
from bridge.errors import ProviderRejected, ProviderUnavailable
from bridge.integrations.finan.signing import FinanAuth
from bridge.integrations.http import (
    CALL_DEADLINE_SECONDS,
    DEFAULT_SLEEP,
    INLINE_ATTEMPTS,
    TIMEOUT_SECONDS,
    TRY_DEADLINE_SECONDS,
    Answer,
    Deadline,
    RetryableAnswer,
    Sleep,
    ThreadLocalSession,
    TransportFailures,
    call_with_retries,
    parse_retry_after,
    read_within,
    retry_after_seconds,
    timeout_within,
)
from bridge.observability.metrics import FINAN_CALLS, FINAN_DETAIL_CALLS, FINAN_REQUEST_DURATION
from schemas.finan import ResponseEnvelopeSchema, code_class

log = logging.getLogger(__name__)

_envelope_schema = ResponseEnvelopeSchema()
_JSON_BODY = {"Content-Type": "application/json"}
_transport_failures = TransportFailures(
    "no answer within the timeout", "connection failed or was reset"
)


@dataclass(frozen=True)
class FinanAnswer:
    code: int
    message: str
    data: dict[str, Any]


def message_of(envelope: dict[str, Any], default: str = "(no message)") -> str:
    """Finan's words in an envelope (``message``, or its ``content``), else ``default``."""
    message = envelope.get("message")
    if isinstance(message, dict):
        message = message.get("content")
    return str(message or "").strip() or default


class FinanClient:
    def __init__(
        self,
        settings: Settings,
        attempts: int = INLINE_ATTEMPTS,
        timeout: tuple[float, float] = TIMEOUT_SECONDS,
        sleep: Sleep = DEFAULT_SLEEP,
        deadline: float = CALL_DEADLINE_SECONDS,
    ) -> None:
        """``deadline``: the seconds one call (``update_invoice``, ``get_invoice``) may take
        in all, every try and wait included (each try also at most ``TRY_DEADLINE_SECONDS``)."""
        self._base_url = settings.provider_base_url
        self._auth = FinanAuth(
            settings.provider_client_id, settings.provider_secret_key, settings.provider_base_url
        )
        self._attempts = attempts
        self._timeout = timeout
        self._sleep = sleep  # spends the waits between inline tries
        self._deadline = deadline
        self._sessions = ThreadLocalSession()

    def update_invoice(self, provider_invoice_id: str, body: bytes) -> FinanAnswer:
        """Send ``body`` (the exact bytes that get signed) to update-invoice."""
        url = f"{self._base_url}/api/v1/invoice/update-invoice/{provider_invoice_id}"
        outcome = "error"  # anything but the three below is a bug, counted as such
        deadline = Deadline(self._deadline)
        try:
            answer = call_with_retries(
                lambda: self._put_once(url, body, deadline.sooner(TRY_DEADLINE_SECONDS)),
                self._attempts,
                system="finan",
                sleep=self._sleep,
                deadline=deadline,
            )
            outcome = "accepted"
            # The operation's own closing line says how it ended; this is only detail.
            log.debug("Finan accepted the invoice", extra={"finan_code": answer.code})
            return answer
        except ProviderRejected as exc:
            outcome = "rejected"
            # Finan's message may quote the invoice's customer: the code says enough here.
            log.warning("Finan rejected the invoice", extra={"finan_code": exc.code})
            raise
        except RetryableAnswer as exc:
            outcome = "unavailable"
            log.warning("Finan unavailable after %d tries", self._attempts)
            raise ProviderUnavailable(
                f"Finan is unavailable ({exc.description}); try again later",
                retry_after=retry_after_seconds(exc, 30),
            ) from exc
        finally:
            FINAN_CALLS.labels(outcome).inc()

    def get_invoice(self, provider_invoice_id: str) -> FinanAnswer | None:
        """What Finan holds for the invoice: a signed ``GET detail/{id}``.

        Finan's answer (``data`` is the stored invoice as Finan returns it), or None when
        Finan does not know the invoice (HTTP 404 in Finan's envelope). A refusal
        (client-class code) raises ``ProviderRejected``; Finan unreachable or failing after
        the inline retries, ``ProviderUnavailable``. Counted in
        ``bridge_finan_detail_calls_total``, apart from the update-invoice calls.
        """
        url = f"{self._base_url}/api/v1/invoice/detail/{provider_invoice_id}"
        outcome = "error"
        try:
            deadline = Deadline(self._deadline)
            answer = call_with_retries(
                lambda: self._get_once(url, deadline.sooner(TRY_DEADLINE_SECONDS)),
                self._attempts,
                system="finan",
                sleep=self._sleep,
                deadline=deadline,
            )
            outcome = "found" if answer is not None else "not_found"
            return answer
        except ProviderRejected as exc:
            outcome = "rejected"
            log.warning("Finan refused the detail request", extra={"finan_code": exc.code})
            raise
        except RetryableAnswer as exc:
            outcome = "unavailable"
            log.warning("Finan unavailable after %d tries", self._attempts)
            raise ProviderUnavailable(
                f"Finan is unavailable ({exc.description}); try again later",
                retry_after=retry_after_seconds(exc, 30),
            ) from exc
        finally:
            FINAN_DETAIL_CALLS.labels(outcome).inc()

    def _get_once(self, url: str, deadline: Deadline) -> FinanAnswer | None:
        request = requests.Request("GET", url, auth=self._auth).prepare()
        response = self._send(request, deadline)
        if response.status_code == 404 and _client_class_envelope(response):
            return None  # Finan's own "no such invoice", not a 404 of some other server
        answer = self._classify(response, refused="Finan refused the detail request")
        # The envelope's schema keeps only the fields an update's answer is read for; the
        # detail is wanted whole, every field as Finan stored it.
        data = json.loads(response.content).get("data")
        return FinanAnswer(answer.code, answer.message, data if isinstance(data, dict) else {})

    def _put_once(self, url: str, body: bytes, deadline: Deadline) -> FinanAnswer:
        # A prepared request sent on the session: the session's merging of its own
        # headers, cookies and settings (none of which the bridge sets) is skipped.
        request = requests.Request(
            "PUT", url, data=body, headers=_JSON_BODY, auth=self._auth
        ).prepare()
        return self._classify(self._send(request, deadline))

    def _send(self, request: requests.PreparedRequest, deadline: Deadline) -> Answer:
        """One try: the answer read whole by ``deadline``, or ``RetryableAnswer`` (a
        timeout, the deadline passing, a reset)."""
        with _transport_failures, FINAN_REQUEST_DURATION.time():
            timeout = timeout_within(self._timeout, deadline)
            streamed = self._sessions.get().send(request, timeout=timeout, stream=True)
            return read_within(streamed, deadline)

    def _classify(
        self, response: Answer, refused: str = "Finan rejected the invoice"
    ) -> FinanAnswer:
        """Finan's envelope code decides when there is one; otherwise the HTTP status does."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            envelope = _envelope_schema.load(json.loads(response.content))
        except (ValueError, ValidationError):
            envelope = {}
        code, message = envelope.get("code"), message_of(envelope)
        if status == 429:
            raise RetryableAnswer("HTTP 429 (rate limited)", retry_after=retry_after)
        if code is not None:
            kind = code_class(code)
        elif 400 <= status < 500:
            kind = "client"
        else:  # a 5xx, or a 2xx we can't read: the same PUT again is safe (derived id)
            raise RetryableAnswer(f"HTTP {status} with no readable code", retry_after=retry_after)

        if kind == "success":
            return FinanAnswer(code=code, message=message, data=envelope.get("data") or {})
        if kind == "client":
            hint = (
                "; check PROVIDER_CLIENT_ID and PROVIDER_SECRET_KEY" if status in (401, 403) else ""
            )
            shown = f"{message} (code {code})" if code is not None else f"{message} (HTTP {status})"
            raise ProviderRejected(
                f"{refused}: {shown}{hint}",
                code=code,
                provider_message=message,
                errors={"provider": {"code": code, "http_status": status, "message": message}},
            )
        raise RetryableAnswer(f"server-class code {code}: {message}", retry_after=retry_after)


def _client_class_envelope(response: Answer) -> bool:
    """The answer is in Finan's envelope, with a client-class code."""
    try:
        code = _envelope_schema.load(json.loads(response.content)).get("code")
    except (ValueError, ValidationError):
        return False
    return code is not None and code_class(code) == "client"
