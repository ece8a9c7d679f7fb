"""What both outside-system clients share: sessions, Retry-After, the inline retry policy."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bridge.metrics import RETRIES

T = TypeVar("T")

log = logging.getLogger(__name__)

# Inline retries are for blips: a few quick tries, then the caller gets an answer. A
# Retry-After longer than this is not waited for inline.
MAX_INLINE_RETRY_AFTER_SECONDS = 5.0
BACKOFF_INITIAL_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 2.0
BACKOFF_JITTER_SECONDS = 0.2


class RetryableAnswer(Exception):
    """A transient failure (timeout, reset, 429, server-class answer): worth another try."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


_backoff = wait_exponential_jitter(
    multiplier=BACKOFF_INITIAL_SECONDS, max=BACKOFF_MAX_SECONDS, jitter=BACKOFF_JITTER_SECONDS
)


def _wait(state: RetryCallState) -> float:
    """Capped exponential backoff with jitter, but never sooner than Retry-After."""
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None) or 0.0
    return max(_backoff(state), retry_after)


def _stop(attempts: int) -> Callable[[RetryCallState], bool]:
    by_count = stop_after_attempt(attempts)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        too_long = (getattr(exc, "retry_after", None) or 0) > MAX_INLINE_RETRY_AFTER_SECONDS
        return too_long or by_count(state)

    return stop


def call_with_retries(attempt: Callable[[], T], attempts: int, system: str = "other") -> T:
    """Run ``attempt`` until it returns, retrying only ``RetryableAnswer``.

    After the last try the last ``RetryableAnswer`` propagates; any other exception (a
    client-class answer, say) propagates at once. Each retry is counted under ``system``
    (``finan``, ``tourwell``) in the ``bridge_inline_retries_total`` metric.
    """

    def count_retry(state: RetryCallState) -> None:
        RETRIES.labels(system).inc()
        # The failure's description may quote the outside system's message: not logged.
        log.warning(
            "inline retry after try %d failed",
            state.attempt_number,
            extra={"system": system, "retry_in_seconds": round(state.upcoming_sleep, 2)},
        )

    retrying = Retrying(
        stop=_stop(attempts),
        wait=_wait,
        retry=retry_if_exception_type(RetryableAnswer),
        before_sleep=count_retry,
        reraise=True,
    )
    return retrying(attempt)


class ThreadLocalSession:
    """One ``requests.Session`` per thread: sessions pool connections but aren't thread-safe.

    ``trust_env`` is off: proxies and .netrc come from explicit configuration, not from
    whatever environment a process happens to inherit (and it saves a lookup per request).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
        return session
