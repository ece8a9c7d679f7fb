"""The per-invoice lock: a Redis key holding a random token, owned by this module.

Taken with ``SET key token NX PX ttl`` (in the same round trip as an MGET of the keys the
holder wants to read under it, so they are read as they were when it was taken); released
and extended by Lua scripts that act only while the key still holds this holder's token
(compare-and-delete, compare-and-``PEXPIRE``). The release can also be queued inside a
caller's MULTI transaction (``release_in``), so a save and the release commit together.

Redis counts the expiry from some moment after the one this process notes (by
``time.monotonic``) just before taking or extending the lock, so ``has_half_left`` errs on
the safe side. A holder that finds its token gone (the lock expired, and perhaps another
took it) gets ``LockLost``; it never deletes or extends another holder's lock.

Only public redis-py APIs are used (``set``, ``pipeline``, ``register_script``, ``eval``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

import redis

# KEYS[1]: the lock's key. ARGV[1]: the token of the holder releasing it.
# Deletes the key only if it still holds that token. Returns 1 if deleted, else 0.
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1]: the lock's key. ARGV[1]: the token of the holder extending it.
# ARGV[2]: the new time to live, in milliseconds (replaces what was left).
# Sets the expiry only if the key still holds that token. Returns 1 if set, else 0.
EXTEND_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

DEFAULT_SLEEP_SECONDS = 0.1  # between tries of a blocking acquire

# An invoice's lock expires so that a process killed while holding it does not block the invoice.
# Before each step that must not overlap another operation (the call to Finan, and the save
# of the record after it) the lock must have at least half this time left, or it is renewed
# (and its ownership checked) first. So the call to Finan must take under half (its tries
# take under a minute), and what comes before the first check, a CRM pull of at most about
# a minute, under the whole.
LOCK_TIMEOUT_SECONDS = 120
IN_FLIGHT_RETRY_AFTER_SECONDS = 2


class LockError(Exception):
    """The lock was used wrongly (released or extended while not held, taken twice)."""


class LockLost(LockError):
    """The lock's key no longer holds this holder's token: it expired (and another holder
    may have taken it). Nothing was deleted or extended."""


class InvoiceLock:
    """One holder's lock on ``name`` for ``timeout`` seconds (renewable with ``extend``).

    ``read_keys`` are read (MGET) in the round trip that takes the lock, into
    ``read_values`` (a None for each until then, or for a missing key).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        name: str,
        *,
        timeout: float,
        read_keys: Sequence[str] = (),
        sleep: float = DEFAULT_SLEEP_SECONDS,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.redis = redis_client
        self.name = name
        self.timeout = timeout
        self.read_keys = tuple(read_keys)
        self.read_values: list[bytes | None] = [None] * len(self.read_keys)
        self.sleep = sleep
        self._token: str | None = None
        self._valid_from = float("-inf")  # monotonic time noted before the last SET/extend
        self._release_script = redis_client.register_script(RELEASE_SCRIPT)
        self._extend_script = redis_client.register_script(EXTEND_SCRIPT)

    @property
    def ttl_ms(self) -> int:
        return int(self.timeout * 1000)

    @property
    def held(self) -> bool:
        """Taken by this holder and not released or found lost (by its own reckoning)."""
        return self._token is not None

    def acquire(self, blocking: bool = False, blocking_timeout: float | None = None) -> bool:
        """Take the lock, reading ``read_keys`` in the same round trip. ``blocking``: try
        again every ``sleep`` seconds until taken, or until ``blocking_timeout`` seconds
        have passed (None: no limit). True if taken."""
        if self.held:
            raise LockError(f"lock {self.name!r} is already held by this holder")
        give_up_at = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        while True:
            if self._try_acquire():
                return True
            if not blocking or (give_up_at is not None and time.monotonic() > give_up_at):
                return False
            time.sleep(self.sleep)

    def _try_acquire(self) -> bool:
        token = secrets.token_hex(16)
        asked_at = time.monotonic()
        # One transaction, one round trip: the values read are those at the moment the
        # lock was taken (and are discarded if it was not).
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.name, token, nx=True, px=self.ttl_ms)
            if self.read_keys:
                pipe.mget(self.read_keys)
            results = pipe.execute()
        if not results[0]:
            return False
        self._token = token
        self._valid_from = asked_at
        if self.read_keys:
            self.read_values = list(results[1])
        return True

    def has_half_left(self) -> bool:
        """Held, with at least half its time surely left, by this process's clock."""
        return self.held and time.monotonic() - self._valid_from <= self.timeout / 2

    def extend(self) -> None:
        """Give the lock its whole ``timeout`` again, if this holder still holds it; else
        raise ``LockLost`` (and the lock is no longer held)."""
        token = self._require_token("extend")
        asked_at = time.monotonic()
        if not self._extend_script(keys=[self.name], args=[token, self.ttl_ms]):
            self._token = None
            raise LockLost(f"lock {self.name!r} expired before it was extended")
        self._valid_from = asked_at

    reacquire = extend  # the name redis-py's Lock (and the callers written for it) use

    def ensure_half_left(self) -> None:
        """Make sure the lock has at least half its time left, extending it if need be;
        ``LockLost`` if it expired (another holder may be running)."""
        if not self.has_half_left():
            self.extend()

    def release(self) -> None:
        """Release the lock (delete its key if it still holds this holder's token). Not held
        afterwards, whatever happened; ``LockLost`` if the token was no longer there."""
        token = self._require_token("release")
        self._token = None
        if not self._release_script(keys=[self.name], args=[token]):
            raise LockLost(f"lock {self.name!r} expired before it was released")

    def release_in(self, pipe: redis.client.Pipeline) -> None:
        """Queue the release on ``pipe`` (e.g. inside a caller's MULTI, so it commits with
        the caller's writes). Its result in ``pipe.execute()`` is 1 if the key was deleted,
        0 if it no longer held this token. Once the pipeline has run, call
        ``released_in_transaction``; until then the lock still counts as held, so a caller
        whose transaction failed can still ``release`` it.

        Queued as EVAL of the script's text, not EVALSHA: inside MULTI, EVALSHA fails if
        Redis's script cache was emptied (a restart, SCRIPT FLUSH), and redis-py's pipeline
        would first spend a round trip on SCRIPT EXISTS to guard against that."""
        token = self._require_token("release")
        pipe.eval(self._release_script.script, 1, self.name, token)

    def release_step(self) -> Callable[[redis.client.Pipeline], None]:
        """``release_in`` as a step for ``RecordStore.save(..., *also)``."""
        self._require_token("release")
        return self.release_in

    def released_in_transaction(self) -> None:
        """The pipeline with ``release_in`` has run: the lock is no longer held."""
        self._token = None

    def _require_token(self, doing: str) -> str:
        if self._token is None:
            raise LockError(f"cannot {doing} lock {self.name!r}: not held")
        return self._token
