"""Settings from a file: ``bridge --env-file FILE <command>``, or ``./.env``, under the
environment (a variable set in the environment wins), passed on to what a command starts;
and the file ``bridge sandbox`` writes for them."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from dotenv import dotenv_values
from helpers import issue

from bench.processes import free_port
from bridge.cli import main
from bridge.cli.commands import load_env_file
from bridge.config import SETTINGS_TABLE
from bridge.sandbox.runner import dotenv_text, write_env_file


@pytest.fixture(autouse=True)
def restore_environ():
    """``bridge`` loads the file into ``os.environ``: give each test the one it started with."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def env_file(environ, tmp_path) -> Path:
    path = tmp_path / "bridge.env"
    write_env_file(path, environ)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def no_settings_in_the_environment() -> None:
    for name in SETTINGS_TABLE:
        os.environ.pop(name, None)


def test_check_reads_its_settings_from_the_env_file(env_file, redis):
    no_settings_in_the_environment()

    result = invoke("--env-file", str(env_file), "check", "--crm-invoice", "17")

    assert result.exit_code == 0, result.output
    assert f"from the environment, then {env_file}" in result.output


def test_resync_reads_its_settings_from_the_env_file(env_file, client, crm_headers):
    assert issue(client, crm_headers, 17).status_code == 201
    no_settings_in_the_environment()

    result = invoke("--env-file", str(env_file), "resync", "17")

    assert result.exit_code == 0, result.output
    assert "unchanged: 1" in result.output


def test_a_dot_env_in_the_working_directory_is_read(environ, tmp_path, monkeypatch, redis):
    write_env_file(tmp_path / ".env", environ)
    monkeypatch.chdir(tmp_path)
    no_settings_in_the_environment()

    result = invoke("check", "--crm-invoice", "17")

    assert result.exit_code == 0, result.output
    assert "from the environment, then .env" in result.output


def test_an_env_file_given_replaces_the_dot_env(environ, tmp_path, monkeypatch, redis):
    write_env_file(tmp_path / ".env", {**environ, "TOURWELL_API_TOKEN": "from-dot-env"})
    given = tmp_path / "given.env"
    write_env_file(given, environ)
    monkeypatch.chdir(tmp_path)
    no_settings_in_the_environment()

    result = invoke("--env-file", str(given), "check")

    assert result.exit_code == 0, result.output


def test_the_environment_wins_over_the_file(environ, tmp_path, monkeypatch, redis):
    path = tmp_path / "bridge.env"
    write_env_file(path, {**environ, "TOURWELL_API_TOKEN": "the-file-s-wrong-token"})
    no_settings_in_the_environment()
    monkeypatch.setenv("TOURWELL_API_TOKEN", environ["TOURWELL_API_TOKEN"])

    assert invoke("--env-file", str(path), "check").exit_code == 0

    write_env_file(path, environ)
    monkeypatch.setenv("TOURWELL_API_TOKEN", "the-environment-s-wrong-token")
    result = invoke("--env-file", str(path), "check")
    assert result.exit_code == 1
    crm = next(line for line in result.output.splitlines() if line.startswith("CRM"))
    assert "TOURWELL_API_TOKEN" in crm


def test_load_env_file_fills_in_only_what_the_environment_lacks(tmp_path):
    path = tmp_path / "f.env"
    path.write_text("A=from-file\nB=from-file\nC\nD='$x # y'\nE=from-file\n")
    environ = {"A": "from-env", "E": ""}  # set, even empty: the environment's

    assert load_env_file(path, environ) == path
    assert environ == {"A": "from-env", "B": "from-file", "D": "$x # y", "E": ""}


def test_a_missing_env_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.env"

    result = CliRunner().invoke(main, ["--env-file", str(missing), "check"])

    assert result.exit_code == 2
    assert "--env-file" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_help_says_where_settings_come_from():
    out = invoke("--help").output

    assert "--env-file" in out and ".env" in out
    assert "environment" in out and "wins over the file" in out


# --- what the commands start gets the file's settings ---


def bridge_process(args: list[str], env_file: Path) -> list[str]:
    return [sys.executable, "-m", "bridge", "--env-file", str(env_file), *args]


def bare_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SETTINGS_TABLE}


def test_worker_gets_the_file_s_settings(env_file):
    done = subprocess.run(
        bridge_process(["worker", "--burst"], env_file),
        env=bare_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr


def test_serve_passes_the_file_s_settings_on_to_gunicorn(environ, tmp_path, redis):
    path = tmp_path / "bridge.env"
    write_env_file(path, {**environ, "GUNICORN_WORKERS": "1"})
    port = free_port()
    server = subprocess.Popen(
        bridge_process(["serve", "--port", str(port)], path),
        env=bare_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "bridge serve was not ready in time"
            time.sleep(0.2)
        # The app in gunicorn's worker took the file's CRM tokens.
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/v1/invoices/17",
            headers={"Authorization": f"Bearer {environ['BRIDGE_CRM_TOKENS'].split(',')[0]}"},
            timeout=5,
        )
        assert answer.status_code == 404, answer.text  # token accepted; no record yet
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# --- the file the sandbox writes ---


def test_the_sandbox_s_file_reads_back_as_written_and_is_private(tmp_path):
    settings = {
        "PLAIN": "http://127.0.0.1:8001/invoice/{provider_invoice_id}",
        "SPACES": "a b # not a comment",
        "QUOTES": 'it\'s "quoted"',
        "BACKSLASH": "C:\\path\\",
        "DOLLAR": "${HOME}$x",
        "EMPTY": "",
        "UNICODE": "Hà Nội",
    }
    path = tmp_path / "sub" / "bridge.env"

    write_env_file(path, settings)

    assert dotenv_values(path, interpolate=False) == settings
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_env_file(path, {"A": "1"})  # rewritten whole
    assert dotenv_values(path, interpolate=False) == {"A": "1"}
    assert "PLAIN=http://" in dotenv_text(settings)  # plain values stay unquoted


def test_bridge_check_with_the_file_a_running_sandbox_printed(tmp_path):
    ports = [str(free_port()) for _ in range(3)]
    data_dir = tmp_path / "sb"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--port", ports[0], "--crm-port", ports[1],
         "--finan-port", ports[2], "--data-dir", str(data_dir)],
        env=bare_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        printed = []
        deadline = time.monotonic() + 90
        for line in sandbox.stdout:
            printed.append(line.strip())
            if line.startswith("Press Ctrl-C") or time.monotonic() > deadline:
                break
        commands = [line for line in printed if line.startswith("bridge --env-file")]
        assert commands, printed[-30:]
        env_file = data_dir / "bridge.env"
        assert str(env_file) in commands[0]
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

        check = subprocess.run(
            [sys.executable, "-m", *commands[0].split()],
            env=bare_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Tourwell's Open API" in check.stdout and "Finan's API" in check.stdout
    finally:
        sandbox.send_signal(signal.SIGTERM)
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(sandbox.pid, signal.SIGKILL)
            sandbox.wait()
