"""The Tourwell CRM's Open API: pull an invoice, write an outcome back.

Every call first takes a slot of the shared 60-per-minute window (``CrmRateLimiter``), so
web processes and workers together stay under the CRM's limit. 429 and 5xx answers,
timeouts and resets are retried inline (honouring ``Retry-After``), then become
``CrmUnavailable`` (503 to our caller). The HTTP part of a call, every try included, ends by
its deadline (``bridge.integrations.http``): an answer still being read then is cut off and
counts as a timeout. A refused token is an operator's problem and says so.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import redis

from bridge.config import Settings
from bridge.errors import CrmFailed, CrmRejectedToken, CrmUnavailable, NotFound
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
from bridge.integrations.tourwell.ratelimit import CrmRateLimiter
from schemas import json_input

# How long an inline call may wait for a rate-limit slot before answering 503.
MAX_RATE_LIMIT_WAIT_SECONDS = 5.0

_transport_failures = TransportFailures(
    "the CRM did not answer in time", "the CRM could not be reached"
)


def crm_headers(token: str) -> dict[str, str]:
    """The headers of every call to the CRM's Open API: its token, and JSON answers."""
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


class TourwellClient:
    def __init__(
        self,
        settings: Settings,
        connection: redis.Redis,
        attempts: int = INLINE_ATTEMPTS,
        timeout: tuple[float, float] = TIMEOUT_SECONDS,
        rate_limit_wait: float = MAX_RATE_LIMIT_WAIT_SECONDS,
        sleep: Sleep = DEFAULT_SLEEP,
        deadline: float = CALL_DEADLINE_SECONDS,
    ) -> None:
        """``deadline``: the seconds the HTTP tries of one call may take in all, waits
        between them included (each try also at most ``TRY_DEADLINE_SECONDS``); the wait
        for a rate-limit slot (``rate_limit_wait``) comes before each try, outside it."""
        self._base_url = settings.tourwell_base_url
        self._headers = crm_headers(settings.tourwell_api_token)
        token_id = hashlib.sha256(settings.tourwell_api_token.encode()).hexdigest()[:16]
        self._limiter = CrmRateLimiter(connection, settings.tourwell_rate_limit_per_min, token_id)
        self._attempts = attempts
        self._timeout = timeout
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep  # spends the waits between inline tries
        self._deadline = deadline
        self._sessions = ThreadLocalSession()

    def get_invoice(self, invoice_id: int) -> dict[str, Any]:
        """The invoice as Tourwell's GET returns it (``{"data": {...}}``)."""
        response = self._call("GET", f"/api/v1/invoices/{invoice_id}", invoice_id)
        try:
            payload = json_input.loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise CrmFailed(
                f"the CRM answered invoice {invoice_id} with a body that is not valid UTF-8 "
                f"JSON: {exc}"
            ) from exc
        if not isinstance(payload, dict):
            raise CrmFailed(f"the CRM answered invoice {invoice_id} with unexpected JSON")
        return payload

    def write_back(self, invoice_id: int, fields: dict[str, str]) -> None:
        """``PUT /api/v1/invoices/{id}``: record an outcome (note, total, lookup_url) in the CRM."""
        self._call("PUT", f"/api/v1/invoices/{invoice_id}", invoice_id, json=fields)

    def _call(self, method: str, path: str, invoice_id: int, json: Any = None) -> Answer:
        deadline = Deadline(self._deadline)

        def attempt() -> Answer:
            waiting_since = time.monotonic()
            self._limiter.acquire(self._rate_limit_wait)
            # The wait for a slot is bounded on its own (rate_limit_wait), not by the deadline.
            deadline.postpone(time.monotonic() - waiting_since)
            try_deadline = deadline.sooner(TRY_DEADLINE_SECONDS)
            with _transport_failures:
                streamed = self._sessions.get().request(
                    method,
                    self._base_url + path,
                    headers=self._headers,
                    json=json,
                    timeout=timeout_within(self._timeout, try_deadline),
                    stream=True,
                )
                response = read_within(streamed, try_deadline)
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableAnswer(
                    f"the CRM answered HTTP {response.status_code}",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            return response

        try:
            response = call_with_retries(
                attempt, self._attempts, system="tourwell", sleep=self._sleep, deadline=deadline
            )
        except RetryableAnswer as exc:
            raise CrmUnavailable(
                f"{exc.description}; try again later",
                retry_after=retry_after_seconds(exc, 10),
            ) from exc

        status = response.status_code
        if status in (401, 403):
            raise CrmRejectedToken(
                "the CRM refused the bridge's token; check TOURWELL_API_TOKEN",
                errors={"setting": "TOURWELL_API_TOKEN"},
            )
        if status == 404:
            raise NotFound(f"invoice {invoice_id} is unknown to the CRM")
        if not 200 <= status < 300:
            raise CrmFailed(f"the CRM answered {method} {path} with HTTP {status}")
        return response
