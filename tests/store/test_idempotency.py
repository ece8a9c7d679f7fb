"""The Idempotency-Key store on its own, against a real Redis."""

from __future__ import annotations

import pytest

from bridge.errors import IdempotencyKeyReused, InFlight, Unprocessable
from bridge.store.connection import idempotency_key
from bridge.store.idempotency import Claim, IdempotencyStore, StoredResponse


@pytest.fixture
def store(redis):
    return IdempotencyStore(redis, ttl_seconds=60)


def test_a_first_claim_then_a_replay_of_the_stored_response(store):
    claim = store.claim("scope", "k", "fp")
    assert isinstance(claim, Claim)

    store.store(claim, 201, {"success": True})

    assert store.claim("scope", "k", "fp") == StoredResponse(201, {"success": True})


def test_in_flight_then_other_body(store):
    store.claim("scope", "k", "fp")
    with pytest.raises(InFlight):
        store.claim("scope", "k", "fp")
    with pytest.raises(IdempotencyKeyReused):
        store.claim("scope", "k", "other")


def test_a_released_key_can_be_claimed_again(store):
    store.release(store.claim("scope", "k", "fp"))
    assert isinstance(store.claim("scope", "k", "fp"), Claim)


def test_a_stale_claim_can_not_touch_a_newer_one(store, redis):
    stale = store.claim("scope", "k", "fp")
    redis.delete(idempotency_key("scope", "k"))  # its in-flight marker expired
    fresh = store.claim("scope", "k", "fp")

    store.store(stale, 201, {"from": "stale"})
    store.release(stale)

    with pytest.raises(InFlight):  # the fresh claim is still there, untouched
        store.claim("scope", "k", "fp")
    store.store(fresh, 201, {"from": "fresh"})
    assert store.claim("scope", "k", "fp").body == {"from": "fresh"}


def test_the_stored_response_expires_with_the_ttl(store, redis):
    store.store(store.claim("scope", "k", "fp"), 201, {})
    assert 0 < redis.pttl(idempotency_key("scope", "k")) <= 60_000


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_unusable_keys_are_422(store, key):
    with pytest.raises(Unprocessable):
        store.claim("scope", key, "fp")
