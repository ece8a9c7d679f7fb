"""``bridge resync --state`` lists the invoices and asks before re-syncing them: --yes skips
the question, no terminal and no --yes refuses; on a real terminal (a pty), "y" re-syncs
and anything else does not. Real Redis and stand-ins; Finan's request log is the witness."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from helpers import finan_puts, make_failed

from bridge.cli import main


@pytest.fixture
def cli_env(environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


@pytest.fixture
def app(cli_env, make_app):
    return make_app()


def make_dead(app, invoice_id):
    """Invoice ``invoice_id`` failed, then marked dead as the worker's last attempt leaves it."""
    records = app.extensions["bridge"].records
    record = records.get(invoice_id)
    record.state = "dead"
    records.save(record)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_without_a_terminal_or_yes_it_refuses_after_the_list_and_warning(
    app, client, crm_headers, finan
):
    make_failed(client, crm_headers, finan, 20)
    make_dead(app, 20)
    sent = len(finan_puts(finan))

    result = invoke("resync", "--state", "dead")

    assert result.exit_code == 1
    assert "1 invoice is dead:" in result.output
    assert "HD020" in result.output
    assert "Check the CRM first" in result.output
    assert "run again with --yes" in result.output
    assert len(finan_puts(finan)) == sent


def test_failed_ones_are_listed_without_the_dead_warning_and_yes_resyncs(
    app, client, crm_headers, finan
):
    make_failed(client, crm_headers, finan, 20)

    result = invoke("resync", "--state", "failed", "--yes")

    assert result.exit_code == 0, result.output
    assert "1 invoice is failed:" in result.output
    assert "Check the CRM first" not in result.output
    assert any(line.split()[:2] == ["20", "sent"] for line in result.output.splitlines())


def run_on_a_terminal(environ, answer: str) -> tuple[int, str]:
    """``bridge resync --state dead`` on a pseudo-terminal, answering ``answer``."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "resync", "--state", "dead"],
        stdin=follower, stdout=follower, stderr=follower, env={**os.environ, **environ},
    )  # fmt: skip
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in output and time.monotonic() < deadline:
        output += os.read(leader, 4096)
    os.write(leader, answer.encode() + b"\n")
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=60), output.decode(errors="replace")


@pytest.mark.parametrize(("answer", "code", "sends"), [("y", 0, True), ("n", 1, False)])
def test_on_a_terminal_it_asks(app, client, crm_headers, finan, cli_env, answer, code, sends):
    make_failed(client, crm_headers, finan, 20)
    make_dead(app, 20)
    sent = len(finan_puts(finan))

    status, output = run_on_a_terminal(cli_env, answer)

    assert "Re-sync 1 invoice? [y/N]" in output
    assert "Check the CRM first" in output
    assert status == code, output
    assert (len(finan_puts(finan)) > sent) == sends
