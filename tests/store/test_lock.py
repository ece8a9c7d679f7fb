"""The per-invoice lock (``bridge.store.lock``) against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.store.lock import InvoiceLock, LockError, LockLost

KEY = "test:lock:invoice:17"
RECORD = "test:record:17"
BODY = "test:body:17"
OTHER_TOKEN = b"another holder's token"


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll ``condition`` until it holds, failing after a generous ``deadline``."""
    give_up_at = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up_at:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_acquire_sets_a_random_token_with_the_ttl_and_a_second_holder_is_refused(redis):
    first = InvoiceLock(redis, KEY, timeout=60)
    second = InvoiceLock(redis, KEY, timeout=60)

    assert not first.held
    assert first.acquire()
    assert first.held
    token = redis.get(KEY)
    assert len(token) == 32  # secrets.token_hex(16)
    assert 30_000 < redis.pttl(KEY) <= 60_000  # its timeout, as PX

    assert not second.acquire(blocking=False)
    assert not second.held
    assert redis.get(KEY) == token  # untouched by the refused holder
    with pytest.raises(LockError):
        first.acquire()  # already held by this holder

    first.release()
    assert not first.held and redis.exists(KEY) == 0
    assert second.acquire()
    assert redis.get(KEY) != token  # a fresh token per acquire
    second.release()


def test_each_acquire_uses_a_new_token(redis):
    lock = InvoiceLock(redis, KEY, timeout=5)
    tokens = set()
    for _ in range(3):
        assert lock.acquire()
        tokens.add(redis.get(KEY))
        lock.release()
    assert len(tokens) == 3


def test_the_keys_are_read_in_the_round_trip_that_takes_the_lock(redis, round_trips):
    redis.set(RECORD, b"the record")
    redis.set(BODY, b"the body")
    first = InvoiceLock(redis, KEY, timeout=5, read_keys=(RECORD, BODY))
    second = InvoiceLock(redis, KEY, timeout=5, read_keys=(RECORD, BODY))
    assert first.read_values == [None, None]  # not taken yet

    round_trips.clear()
    assert first.acquire()
    assert len(round_trips) == 1
    assert first.read_values == [b"the record", b"the body"]

    assert not second.acquire()
    assert second.read_values == [None, None]  # not taken: nothing read under it
    first.release()
    redis.delete(RECORD)
    assert second.acquire()
    assert second.read_values == [None, b"the body"]  # a missing key reads as None
    second.release()


def test_a_blocking_acquire_waits_for_the_holder_and_gives_up_after_its_timeout(redis):
    holder = InvoiceLock(redis, KEY, timeout=60)
    waiter = InvoiceLock(redis, KEY, timeout=60, sleep=0.02)
    assert holder.acquire()

    started = time.monotonic()
    assert not waiter.acquire(blocking=True, blocking_timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert not waiter.held

    holder.release()
    assert waiter.acquire(blocking=True, blocking_timeout=60)
    waiter.release()


def test_a_blocking_acquire_takes_the_lock_once_the_holder_s_expires(redis):
    holder = InvoiceLock(redis, KEY, timeout=0.2)
    waiter = InvoiceLock(redis, KEY, timeout=60, sleep=0.02)
    assert holder.acquire()
    assert waiter.acquire(blocking=True, blocking_timeout=60)  # only PX frees it
    assert redis.pttl(KEY) > 30_000  # the waiter's own ttl, not what was left of the holder's
    waiter.release()


def test_the_lock_expires_by_its_px(redis):
    lock = InvoiceLock(redis, KEY, timeout=2)
    assert lock.acquire()
    ttl = redis.pttl(KEY)
    assert ttl == -2 or 0 < ttl <= 2000  # an expiry of its timeout (-2: already expired)

    wait_for(lambda: redis.exists(KEY) == 0, "the lock's key to expire")
    other = InvoiceLock(redis, KEY, timeout=5)
    assert other.acquire()
    other.release()


def test_only_the_owner_s_token_releases(redis):
    lock = InvoiceLock(redis, KEY, timeout=5)
    assert lock.acquire()
    redis.set(KEY, OTHER_TOKEN)  # as if it expired and another holder took it

    with pytest.raises(LockLost):
        lock.release()
    assert redis.get(KEY) == OTHER_TOKEN
    assert not lock.held  # released, as far as this holder goes
    with pytest.raises(LockError):
        lock.release()  # not held: nothing to release


def test_an_expired_owner_does_not_release_the_next_holder_s_lock(redis):
    old = InvoiceLock(redis, KEY, timeout=0.2)
    new = InvoiceLock(redis, KEY, timeout=60)
    assert old.acquire()
    wait_for(lambda: redis.exists(KEY) == 0, "the old holder's lock to expire")
    assert new.acquire()
    new_token = redis.get(KEY)

    with pytest.raises(LockLost):
        old.release()
    assert redis.get(KEY) == new_token
    assert redis.pttl(KEY) > 30_000  # nor shortened

    new.release()
    assert redis.exists(KEY) == 0


def test_the_owner_extends_its_lock_to_its_whole_timeout(redis):
    lock = InvoiceLock(redis, KEY, timeout=60)
    assert lock.acquire()
    redis.pexpire(KEY, 300)  # as if most of its time had gone

    lock.extend()
    assert 30_000 < redis.pttl(KEY) <= 60_000
    redis.pexpire(KEY, 300)
    lock.reacquire()  # the same, by redis-py's name
    assert 30_000 < redis.pttl(KEY) <= 60_000
    lock.release()
    with pytest.raises(LockError):
        lock.extend()  # not held


def test_an_expired_owner_does_not_extend_the_next_holder_s_lock(redis):
    old = InvoiceLock(redis, KEY, timeout=0.2)
    new = InvoiceLock(redis, KEY, timeout=60)
    assert old.acquire()
    wait_for(lambda: redis.exists(KEY) == 0, "the old holder's lock to expire")
    assert new.acquire()
    redis.pexpire(KEY, 30_000)

    with pytest.raises(LockLost):
        old.extend()
    assert not old.held and not old.has_half_left()
    # Neither reset to the old holder's 200 ms nor to anything more than it was.
    assert 15_000 < redis.pttl(KEY) <= 30_000
    new.release()


def test_extend_fails_once_the_key_is_gone(redis):
    lock = InvoiceLock(redis, KEY, timeout=0.2)
    assert lock.acquire()
    wait_for(lambda: redis.exists(KEY) == 0, "the lock's key to expire")
    with pytest.raises(LockLost):
        lock.ensure_half_left()
    assert redis.exists(KEY) == 0  # not recreated


def test_the_release_commits_with_the_caller_s_transaction(redis, round_trips):
    lock = InvoiceLock(redis, KEY, timeout=5)
    assert lock.acquire()

    round_trips.clear()
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.set(RECORD, b"saved")
        lock.release_in(pipe)
        assert lock.held  # until the transaction has run
        assert pipe.execute() == [True, 1]
    lock.released_in_transaction()
    assert len(round_trips) == 1  # EVAL inside MULTI: no SCRIPT EXISTS/LOAD first
    assert not lock.held and redis.exists(KEY) == 0
    assert redis.get(RECORD) == b"saved"


def test_a_release_in_a_transaction_leaves_another_holder_s_lock(redis):
    lock = InvoiceLock(redis, KEY, timeout=5)
    assert lock.acquire()
    release = lock.release_step()  # the form RecordStore.save takes
    redis.set(KEY, OTHER_TOKEN)  # it expired; another holder took it

    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.set(RECORD, b"saved")
        release(pipe)
        assert pipe.execute() == [True, 0]
    lock.released_in_transaction()
    assert redis.get(KEY) == OTHER_TOKEN
    assert redis.get(RECORD) == b"saved"  # the release does not veto the caller's writes


def test_the_release_works_after_the_script_cache_is_emptied(redis):
    lock = InvoiceLock(redis, KEY, timeout=5)
    assert lock.acquire()
    lock.extend()  # loads the scripts
    redis.script_flush()  # as after a Redis restart
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        lock.release_in(pipe)
        assert pipe.execute() == [1]
    lock.released_in_transaction()

    assert lock.acquire()
    redis.script_flush()
    lock.extend()
    redis.script_flush()
    lock.release()
    assert redis.exists(KEY) == 0


def test_a_lock_whose_transaction_failed_can_still_be_released(redis):
    lock = InvoiceLock(redis, KEY, timeout=5)
    assert lock.acquire()
    redis.set(RECORD, b"not a list")
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.lpush(RECORD, b"x")  # fails at EXEC: wrong type
        lock.release_in(pipe)
        with pytest.raises(Exception, match="WRONGTYPE"):
            pipe.execute()
    # The caller does not know what ran; the lock still counts as held, and the release
    # says whether the transaction had already released it.
    assert lock.held
    with pytest.raises(LockLost):
        lock.release()
    assert redis.exists(KEY) == 0


def test_has_half_left_holds_while_at_least_half_the_time_surely_remains(redis):
    lock = InvoiceLock(redis, KEY, timeout=10)
    assert not lock.has_half_left()  # not taken yet

    started = time.monotonic()
    assert lock.acquire()
    while True:
        # Read before the check: if the check still says half is left, it was left when
        # Redis answered, whatever the time between the two.
        ttl = redis.pttl(KEY)
        if not lock.has_half_left():
            break
        assert ttl >= 4000  # Redis agrees: at least about half (5 s) is left
        assert time.monotonic() - started < 60, "has_half_left never turned false"
        time.sleep(0.01)
    assert time.monotonic() - started >= 5
    assert lock.held  # less than half left, but still held

    lock.ensure_half_left()  # extends it
    ttl = redis.pttl(KEY)
    assert lock.has_half_left()
    assert ttl >= 4000  # its whole 10 s again: about half or more left
    lock.ensure_half_left()  # enough left: no change needed
    lock.release()
    assert not lock.has_half_left()  # released
