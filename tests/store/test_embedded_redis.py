"""The embedded Redis: one server per data directory, shared by every process of the machine."""

from __future__ import annotations

import subprocess
import sys

import redis
from helpers import GOOD_ENVIRON

from bridge.config import load_settings
from bridge.store import embedded_redis
from bridge.store.connection import connect


def test_processes_sharing_a_data_dir_share_one_server(tmp_path):
    url = embedded_redis.ensure_server(tmp_path)
    try:
        redis.Redis.from_url(url).set("written-by", "parent")
        child = subprocess.run(
            [sys.executable, "-c",
             "import os, sys; from bridge.config import load_settings; "
             "from bridge.store.connection import connect; "
             "print(connect(load_settings(os.environ)).get('written-by').decode())"],
            env={**GOOD_ENVIRON, "BRIDGE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert child.stdout.strip() == "parent"
        assert embedded_redis.ensure_server(tmp_path) == url  # found, not started again
    finally:
        embedded_redis.stop_server(tmp_path)
    assert not (tmp_path / embedded_redis.SOCKET_NAME).exists()


def test_without_redis_url_the_bridge_uses_the_embedded_server(tmp_path):
    settings = load_settings({**GOOD_ENVIRON, "BRIDGE_DATA_DIR": str(tmp_path)})
    try:
        connection = connect(settings)
        assert connection.ping()
        assert connection.config_get("appendonly")["appendonly"] == "yes"
        assert connection.config_get("appendfsync")["appendfsync"] == "everysec"
    finally:
        embedded_redis.stop_server(tmp_path)
