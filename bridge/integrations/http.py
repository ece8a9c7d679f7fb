"""What both outside-system clients share: sessions, timeouts, Retry-After, the inline retry
policy."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TypeVar

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bridge.observability.metrics import RETRIES

T = TypeVar("T")

# How a wait between inline tries is spent: given the seconds, returns after them. Production
# sleeps (``time.sleep``, as tenacity does by default); a test can pass one that records the
# wait instead (tests/conftest.py).
Sleep = Callable[[float], None]
DEFAULT_SLEEP: Sleep = time.sleep

log = logging.getLogger(__name__)

# (connect, read). The read timeout bounds how long a caller waits on one try.
TIMEOUT_SECONDS = (3.05, 10.0)
# Inline retries are for blips: a few quick tries, then the caller gets an answer.
INLINE_ATTEMPTS = 3
# A Retry-After longer than this is not waited for inline.
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


class TransportFailures:
    """``with TransportFailures(timed_out, unreachable):`` around a request turns a timeout,
    or a connection that failed or was reset, into ``RetryableAnswer`` with these words.
    It keeps no state: one instance serves every call."""

    def __init__(self, timed_out: str, unreachable: str) -> None:
        self._timed_out = timed_out
        self._unreachable = unreachable

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, requests.Timeout):  # before ConnectionError: ConnectTimeout is both
            raise RetryableAnswer(self._timed_out) from exc
        if isinstance(exc, requests.ConnectionError):
            raise RetryableAnswer(self._unreachable) from exc


def retry_after_seconds(exc: RetryableAnswer, default: int) -> int:
    """Whole seconds (at least 1) to tell our caller to wait: the outside system's
    Retry-After when it gave one, else ``default``."""
    return max(1, round(exc.retry_after)) if exc.retry_after else default


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


def call_with_retries(
    attempt: Callable[[], T],
    attempts: int,
    system: str = "other",
    sleep: Sleep = DEFAULT_SLEEP,
) -> T:
    """Run ``attempt`` until it returns, retrying only ``RetryableAnswer``.

    After the last try the last ``RetryableAnswer`` propagates; any other exception (a
    client-class answer, say) propagates at once. Each retry is counted under ``system``
    (``finan``, ``tourwell``) in the ``bridge_inline_retries_total`` metric. ``sleep`` is
    given each wait between tries, in seconds (tenacity's ``Retrying(sleep=...)``).
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
        sleep=sleep,
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
            session = new_session()
            self._local.session = session
        return session


def new_session() -> requests.Session:
    """A session that takes no proxies or .netrc from the environment (``trust_env`` off)."""
    session = requests.Session()
    session.trust_env = False
    return session
