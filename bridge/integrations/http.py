"""What both outside-system clients share: sessions, timeouts, the deadline, Retry-After, the
inline retry policy.

**The deadline.** requests' read timeout bounds each read, not a whole answer: a server (or a
proxy) that trickles its body a byte at a time keeps a call alive indefinitely. So every
call to Finan or the CRM also has a wall-clock deadline (``CALL_DEADLINE_SECONDS`` for all its
inline tries and the waits between them, ``TRY_DEADLINE_SECONDS`` for each try): the answer
is streamed (``stream=True``) and read in chunks (urllib3's public ``read1``), the socket's
timeout for each read shortened to what is left, and the response closed when the deadline
passes. A try cut off there raises ``DeadlineExceeded``, a ``requests.Timeout``: it is
treated as a timeout (it may have reached the other side). So no call can outlive half the
invoice lock's expiry (``bridge/store/lock.py``), which the lock's fence relies on.
What the deadline does not bound: a server that trickles its *headers* (http.client reads
them before the bridge gets the response), beyond the read timeout of each byte.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TypeVar

import requests
import urllib3
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
# The wall-clock deadline of one call (all its tries and the waits between them), and of
# each try. The call's must stay well under half the invoice lock's expiry
# (LOCK_TIMEOUT_SECONDS / 2 = 60 s: the lock is renewed to its full expiry just before the
# call to Finan when less than half is left), so the call to Finan never outlives the lock.
CALL_DEADLINE_SECONDS = 40.0
TRY_DEADLINE_SECONDS = 15.0
# A try is not started with less than this left of the call's deadline.
MIN_TRY_SECONDS = 1.0
# How much of an answer's body is read at a time (at most; a trickle returns less).
READ_CHUNK_BYTES = 65536


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


class DeadlineExceeded(requests.Timeout):
    """The call's (or the try's) wall-clock deadline passed before the answer was read whole.
    A ``requests.Timeout``: treated like one (the request may have reached the other side)."""


class Deadline:
    """A moment on the monotonic clock a call must end by."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.seconds = seconds
        self.at = clock() + seconds

    def remaining(self) -> float:
        return self.at - self._clock()

    def postpone(self, seconds: float) -> None:
        """Move the deadline ``seconds`` later (time spent on something bounded apart)."""
        self.at += seconds

    def sooner(self, seconds: float) -> Deadline:
        """This deadline, or ``seconds`` from now if that comes first (a try's deadline)."""
        if self.remaining() <= seconds:
            return self
        return Deadline(seconds, self._clock)

    def check(self) -> float:
        """The seconds left; raises ``DeadlineExceeded`` if none are."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(f"cut off at the deadline of {self.seconds:g} s")
        return left


@dataclass(frozen=True)
class Answer:
    """An answer read whole within its deadline: status, headers and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def timeout_within(timeout: tuple[float, float], deadline: Deadline) -> tuple[float, float]:
    """``(connect, read)`` timeouts, each no longer than what is left of ``deadline``."""
    left = deadline.check()
    connect, read = timeout
    return (min(connect, left), min(read, left))


def read_within(response: requests.Response, deadline: Deadline) -> Answer:
    """Read a streamed (``stream=True``) ``response`` whole before ``deadline``, or raise
    ``DeadlineExceeded`` (a read timeout raises ``requests.ReadTimeout``, a broken
    connection ``requests.ConnectionError``, as requests would). A whole answer's connection
    goes back to the pool; a cut one is closed (the rest of the answer is still on it)."""
    raw = response.raw
    sock = getattr(raw.connection, "sock", None)  # urllib3's public HTTPResponse.connection
    chunks = []
    try:
        while True:
            left = deadline.check()
            if sock is not None:  # no single read may wait past the deadline either
                sock.settimeout(min(left, sock.gettimeout() or left))
            chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except requests.RequestException:  # DeadlineExceeded (an OSError too, so first)
        response.close()
        raise
    except urllib3.exceptions.ReadTimeoutError as exc:
        response.close()
        if deadline.remaining() <= 0:
            raise DeadlineExceeded(f"cut off at the deadline of {deadline.seconds:g} s") from exc
        raise requests.ReadTimeout(exc) from exc
    except (urllib3.exceptions.ProtocolError, OSError) as exc:
        response.close()
        raise requests.ConnectionError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        response.close()
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except BaseException:
        response.close()
        raise
    raw.release_conn()
    return Answer(response.status_code, response.headers, b"".join(chunks))


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


def _stop(attempts: int, deadline: Deadline | None) -> Callable[[RetryCallState], bool]:
    by_count = stop_after_attempt(attempts)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        too_long = (getattr(exc, "retry_after", None) or 0) > MAX_INLINE_RETRY_AFTER_SECONDS
        # The wait before the next try (computed before this check) and that try must fit
        # in what is left of the call's deadline.
        out_of_time = (
            deadline is not None and deadline.remaining() - state.upcoming_sleep < MIN_TRY_SECONDS
        )
        return too_long or out_of_time or by_count(state)

    return stop


def call_with_retries(
    attempt: Callable[[], T],
    attempts: int,
    system: str = "other",
    sleep: Sleep = DEFAULT_SLEEP,
    deadline: Deadline | None = None,
) -> T:
    """Run ``attempt`` until it returns, retrying only ``RetryableAnswer``.

    With a ``deadline`` (the call's), no retry is started, nor waited for, unless it and
    ``MIN_TRY_SECONDS`` fit before it; ``attempt`` itself bounds each try by it
    (``Deadline.sooner``, ``timeout_within``, ``read_within``).

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
        stop=_stop(attempts, deadline),
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
