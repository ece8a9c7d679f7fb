"""The request layer of idempotency: the ``Idempotency-Key`` header
(docs/contract/http.md#idempotency-key).

A key is scoped by the caller's token (a digest of it; the token itself is never stored).
The first request with a key claims it atomically with an *in-flight* marker; while that
runs, a repeat gets ``409`` with ``Retry-After``. When it finishes with a success, the
response is stored for ``BRIDGE_IDEMPOTENCY_TTL`` seconds and a repeat with the same body
gets it back, marked ``Idempotent-Replayed: true``; a repeat with another body gets ``422``.
Anything else (validation failures, conflicts, unavailable dependencies) releases the key,
so the caller can fix the problem and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from bridge.errors import IdempotencyKeyReused, InFlight, Unprocessable
from bridge.store.connection import idempotency_key
from bridge.store.lock import IN_FLIGHT_RETRY_AFTER_SECONDS, LOCK_TIMEOUT_SECONDS

# An in-flight claim lasts as long as the invoice lock an operation holds, and then expires
# so a process that died mid-request does not block the key for a whole day.
IN_FLIGHT_TTL_SECONDS = LOCK_TIMEOUT_SECONDS
MAX_KEY_LENGTH = 255

# KEYS[1]: the idempotency key. ARGV[1]: the in-flight marker. ARGV[2]: its TTL in ms.
# Returns the stored value when the key exists; otherwise claims it and returns nil.
_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""


# KEYS[1]: the idempotency key. ARGV[1]: the claim's owner. ARGV[2]: the value to store,
# or "" to delete the key. ARGV[3]: the TTL in ms. Acts only while the claim is still this
# owner's: a request that outlived its in-flight TTL must not touch a newer claim.
_FINISH = """
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current)['owner'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """This request holds ``key`` (in scope ``scope``) until it stores or releases it."""

    scope: str
    key: str
    fingerprint: str
    owner: str


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def caller_scope(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


class IdempotencyStore:
    def __init__(self, connection: redis.Redis, ttl_seconds: int) -> None:
        self._redis = connection
        self._ttl_ms = ttl_seconds * 1000
        self._claim = connection.register_script(_CLAIM)
        self._finish = connection.register_script(_FINISH)

    def claim(self, scope: str, key: str, fingerprint: str) -> Claim | StoredResponse:
        """Claim ``key`` for this request, or return the response stored under it.

        Raises ``InFlight`` while another request holds the key, and
        ``IdempotencyKeyReused`` when the key was used with another request body.
        """
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise Unprocessable(
                f"the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable characters",
                errors={"Idempotency-Key": ["invalid"]},
            )
        owner = secrets.token_hex(16)
        marker = json.dumps({"state": "in_flight", "fingerprint": fingerprint, "owner": owner})
        existing = self._claim(
            keys=[idempotency_key(scope, key)],
            args=[marker, IN_FLIGHT_TTL_SECONDS * 1000],
        )
        if existing is None:
            return Claim(scope=scope, key=key, fingerprint=fingerprint, owner=owner)
        stored = json.loads(existing)
        if stored["fingerprint"] != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request; "
                "use a new key for a new request",
                errors={"Idempotency-Key": ["reused with a different body"]},
            )
        if stored["state"] == "in_flight":
            raise InFlight(
                "a request with this Idempotency-Key is still being processed",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            )
        return StoredResponse(status=stored["status"], body=stored["body"])

    def store(self, claim: Claim, status: int, body: dict[str, Any]) -> None:
        value = {
            "state": "done",
            "fingerprint": claim.fingerprint,
            "owner": claim.owner,
            "status": status,
            "body": body,
        }
        self._finish_claim(claim, json.dumps(value))

    def release(self, claim: Claim) -> None:
        self._finish_claim(claim, "")

    def _finish_claim(self, claim: Claim, value: str) -> None:
        self._finish(
            keys=[idempotency_key(claim.scope, claim.key)],
            args=[claim.owner, value, self._ttl_ms],
        )
