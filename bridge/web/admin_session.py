"""The status page's sessions: server-side, in the bridge's Redis
(``bridge/store/admin_sessions.py``); the cookie holds only a random id.

Logging out deletes the session, so its cookie, replayed afterwards, opens nothing; a
request that was under way at the logout does not store it again when it ends (a session
is saved only while its key exists, ``AdminSessions.save``). A
session also ends after ``BRIDGE_ADMIN_SESSION_IDLE_MINUTES`` without a request, and
``BRIDGE_ADMIN_SESSION_MAX_MINUTES`` after it began. A new id is issued whenever the
identity in the session changes (logging in), so an id seen before the login is worth
nothing after it. The cookie is HttpOnly, SameSite=Strict, limited to ``/admin``, and
Secure whenever the request came over TLS.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask, Request, Response, session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from bridge.errors import RedisUnavailable
from bridge.store.admin_sessions import AdminSessions, StoredSession

log = logging.getLogger(__name__)

IDENTITY = "admin"  # the session's key that names who logged in (a digest of the token)

_serializer = TaggedJSONSerializer()  # Flask's own: flashed messages keep their tuples


class AdminSession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
    unavailable = False  # Redis could not be read: the request is refused (503)

    def __init__(self, stored: StoredSession | None) -> None:
        data: dict[str, Any] = _serializer.loads(stored.data) if stored else {}

        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(data, on_update)
        self.stored = stored
        self.identity = data.get(IDENTITY)
        self.modified = False


class RedisSessionInterface(SessionInterface):
    """Sessions opened only under the cookie's path: a browser sends the cookie nowhere
    else, so every other request (the CRM's) gets Flask's null session at no cost."""

    def __init__(self, sessions: AdminSessions) -> None:
        self.sessions = sessions

    def open_session(self, app: Flask, request: Request) -> AdminSession | None:
        path = app.config["SESSION_COOKIE_PATH"]
        if request.path != path and not request.path.startswith(path + "/"):
            return None  # Flask then uses ``make_null_session``
        session_id = request.cookies.get(self.get_cookie_name(app))
        try:
            stored = self.sessions.load(session_id) if session_id else None
        except redis.RedisError:
            unavailable = AdminSession(None)
            unavailable.unavailable = True  # refused by ``refuse_without_redis``
            return unavailable
        return AdminSession(stored)

    def get_cookie_secure(self, app: Flask) -> bool:
        from flask import request

        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, AdminSession)
        if session.unavailable:
            return
        name, domain = self.get_cookie_name(app), self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        stored = session.stored
        if not session:
            if stored is not None:  # cleared (logged out, or refused): the session ends
                self.sessions.delete(stored.session_id)
                response.delete_cookie(name, domain=domain, path=path)
            return
        if stored is None or session.get(IDENTITY) != session.identity:
            if stored is not None:  # logging in: never keep an id seen before
                self.sessions.delete(stored.session_id)
            stored = StoredSession(self.sessions.new_id(), time.time(), "")
            fresh = True
        else:
            fresh = False
        stored.data = _serializer.dumps(dict(session))
        try:  # every request renews the idle timeout; an ended session stays ended
            saved = self.sessions.save(stored, new=fresh)
        except redis.RedisError:  # the answer is made: it goes out without a session
            log.warning("Redis unavailable: the page's session was not saved")
            return
        if fresh and saved:
            response.set_cookie(
                name,
                stored.session_id,
                expires=stored.created + self.sessions.max_seconds,
                httponly=self.get_cookie_httponly(app),
                domain=domain,
                path=path,
                secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app),
            )
        response.vary.add("Cookie")


def install(app: Flask, sessions: AdminSessions) -> None:
    """Keep ``app``'s sessions in ``sessions``; without Redis, the page answers 503."""
    app.session_interface = RedisSessionInterface(sessions)

    @app.before_request
    def refuse_without_redis() -> None:
        if isinstance(session, AdminSession) and session.unavailable:
            raise RedisUnavailable(
                "the bridge's Redis is unavailable; try again shortly", retry_after=5
            )
