"""The operators' page sessions, server-side in Redis (docs/operators.md#sessions).

The browser holds only a random id; the session's data lives under a key named by a
digest of that id (``bridge:admin_session:<sha256>``), so what Redis shows is no cookie
anyone can replay. A session ends when it is deleted (logging out), when it has been idle
for ``idle_seconds`` (the key's expiry, renewed by each request), or ``max_seconds`` after
it began, however busy it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass

import redis

from bridge.store.connection import admin_session_key


@dataclass
class StoredSession:
    session_id: str
    created: float  # time.time() when it began
    data: str  # serialized by the web layer (Flask's tagged JSON)


def _key(session_id: str) -> str:
    return admin_session_key(hashlib.sha256(session_id.encode()).hexdigest())


class AdminSessions:
    def __init__(self, connection: redis.Redis, idle_seconds: float, max_seconds: float) -> None:
        self._redis = connection
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(32)

    def load(self, session_id: str) -> StoredSession | None:
        """The live session of ``session_id``, or None (unknown, idle too long, too old)."""
        raw = self._redis.get(_key(session_id))
        if raw is None:
            return None
        stored = json.loads(raw)
        if time.time() >= stored["created"] + self.max_seconds:
            self.delete(session_id)
            return None
        return StoredSession(session_id, stored["created"], stored["data"])

    def save(self, session: StoredSession, new: bool = False) -> bool:
        """Store ``session``, to expire after ``idle_seconds`` without a request, and at
        ``max_seconds`` after it began at the latest. A session that is not ``new`` is
        stored only if its key still exists (``SET XX``): a request that began before a
        logout (or an expiry) and ends after it never brings the session back. False when
        it was not stored (gone, or past its cap)."""
        remaining = session.created + self.max_seconds - time.time()
        ttl_ms = math.ceil(min(self.idle_seconds, remaining) * 1000)
        if ttl_ms <= 0:
            self.delete(session.session_id)
            return False
        payload = json.dumps({"created": session.created, "data": session.data})
        key = _key(session.session_id)
        if new:
            return bool(self._redis.set(key, payload, px=ttl_ms, nx=True))
        return bool(self._redis.set(key, payload, px=ttl_ms, xx=True))

    def delete(self, session_id: str) -> None:
        self._redis.delete(_key(session_id))
