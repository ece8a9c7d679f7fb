"""JSON log lines: request id, invoice and operation on them; no token, secret or customer data.

Operations run for real against Redis and the stand-ins; the lines are caught with the
bridge's own formatter. The last test runs gunicorn with deploy/gunicorn.conf.py and reads
what it writes to stdout.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import API, CRM_TOKEN, FINAN_SECRET, OTHER_CRM_TOKEN, TOURWELL_TOKEN

from bridge.observability import logs
from bridge.sandbox.samples import sample_invoices

REPO = Path(__file__).resolve().parents[2]


def customer_data(invoice_id: int) -> list[str]:
    """What the sample invoice says about its customer, as it could appear in a line."""
    invoice = sample_invoices()[invoice_id]
    customer = invoice["order_info"]["customer"]
    request_info = invoice["request_info"]
    values = [
        customer["name"],
        customer["phone"],
        customer["phone"].replace(" ", ""),
        request_info["forward_email"],
        request_info["company_address"],
    ]
    escaped = [json.dumps(v)[1:-1] for v in values]  # as JSON would write it in ASCII
    return [v for v in values + escaped if v]


SECRETS = [CRM_TOKEN, OTHER_CRM_TOKEN, TOURWELL_TOKEN, FINAN_SECRET]
SIGNATURE = re.compile(r"\b[0-9a-f]{64}\b")  # x-signature: SHA-256 in lowercase hex


def assert_nothing_secret(text: str, invoice_id: int = 17) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "Bearer" not in text
    for value in customer_data(invoice_id):
        assert value not in text, value
    assert not SIGNATURE.search(text)


class CaughtLines:
    """Every line logged while the fixture is active, formatted by the bridge."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def caught():
    caught = CaughtLines()
    handler = logging.StreamHandler(caught.stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield caught
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_operation_lines_carry_request_invoice_and_operation_and_nothing_secret(
    client, crm_headers, finan, caught
):
    headers = {**crm_headers, "X-Request-ID": "crm-req-0017"}
    finan.state.fail_next("server_error")  # one inline retry: a warning line too

    response = client.post(f"{API}/17/issue", headers=headers)

    assert response.status_code == 201
    lines = caught.lines()
    assert lines, "the operation logged nothing"
    for line in lines:
        assert line["request_id"] == "crm-req-0017"
        assert line["invoice_id"] == 17 and line["operation"] == "issue"
        assert {"time", "level", "logger", "message"} <= line.keys()
    assert any(line.get("status") == 201 for line in lines)
    assert any(line["level"] == "WARNING" for line in lines)  # the retry
    assert_nothing_secret(caught.text)


def test_refusals_are_logged_by_reason_not_by_message(client, crm_headers, finan, caught):
    finan.state.fail_next("client_error")
    invoice = sample_invoices()[18]

    assert client.post(f"{API}/18/issue", headers=crm_headers, json=invoice).status_code == 502
    assert client.post(f"{API}/17/issue", headers={"Authorization": "Bearer nope"}).status_code == (
        401
    )

    reasons = {line.get("reason") for line in caught.lines()}
    assert {"provider_rejected", "unauthorized"} <= reasons
    assert "nope" not in caught.text
    assert_nothing_secret(caught.text, 18)


def test_the_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-1.2:3_4-5"})

    assert response.headers["X-Request-ID"] == "trace-1.2:3_4-5"


def test_without_a_request_id_one_is_made_and_echoed(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    "hostile",
    ['x"} {"level": "CRITICAL', "<script>alert(1)</script>", "a" * 129, "id with spaces", ""],
    ids=["json-injection", "markup", "too-long", "spaces", "empty"],
)
def test_a_malicious_request_id_is_replaced(client, crm_headers, caught, hostile):
    response = client.get(f"{API}/17", headers={**crm_headers, "X-Request-ID": hostile})

    made = response.headers["X-Request-ID"]
    assert made != hostile and re.fullmatch(r"[0-9a-f]{32}", made)
    assert [line["request_id"] for line in caught.lines()] == [made]
    if hostile:
        assert hostile not in caught.text


def test_error_responses_echo_the_request_id_too(client):
    response = client.get("/no/such/path", headers={"X-Request-ID": "lost-1"})

    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "lost-1"


def test_registered_secrets_are_redacted_whoever_logs_them(app, caught):
    logging.getLogger("somebody.else").warning("called with %s and %s", CRM_TOKEN, FINAN_SECRET)

    [line] = caught.lines()
    assert line["message"] == f"called with {logs.REDACTED} and {logs.REDACTED}"


def test_log_context_adds_fields_inside_and_only_inside(caught):
    with logs.log_context(invoice_id=5, operation="sync"):
        logging.getLogger("bridge.worker.jobs").info("inside")
    logging.getLogger("bridge.worker.jobs").info("outside")

    inside, outside = caught.lines()
    assert (inside["invoice_id"], inside["operation"]) == (5, "sync")
    assert "invoice_id" not in outside


def test_configure_logging_writes_json_lines(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    stream = io.StringIO()

    logs.configure_logging(stream=stream)
    logging.getLogger("bridge.test").info("one line\nwith a newline")

    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "one line\nwith a newline"


def test_gunicorns_access_line_is_never_built():
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from bridge.web.gunicorn_logging import GunicornLogger

    config = Config()
    config.set("logconfig_dict", {"version": 1, "disable_existing_loggers": False})
    config.set("logger_class", "bridge.web.gunicorn_logging.GunicornLogger")
    logger = config.logger_class(config)

    assert isinstance(logger, GunicornLogger)
    # gunicorn's own would build the line's fields from these, and fail on None.
    with pytest.raises(AttributeError):
        Logger(config).access(None, None, None, None)
    assert logger.access(None, None, None, None) is None


# --- gunicorn with the production config ---


# Generous: gunicorn and its worker start in about a second, far slower on a loaded machine.
START_TIMEOUT_SECONDS = 120


class Gunicorn:
    """gunicorn with deploy/gunicorn.conf.py on a free loopback port; stdout collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
            + ["--bind", "127.0.0.1:0", "--workers", "1", "bridge.web.wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for line in list(self.output):
                found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("gunicorn did not start:\n" + "".join(self.output))

    def wait_until_serving(self) -> None:
        """Until the worker answers: its first answer (the app loading) may take long on a
        busy machine, so one try is given the whole deadline, and any failure is retried."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                if requests.get(f"{self.url}/healthz", timeout=left).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("gunicorn's worker did not answer:\n" + "".join(self.output))

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self._reader.join(timeout=60)  # to the end of the output: the pipe closes at exit
        return "".join(self.output)


def test_gunicorn_writes_every_line_as_json_without_secrets(environ, redis, tmp_path):
    env = {
        **environ,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    server = Gunicorn(env)
    try:
        server.wait_until_serving()
        response = requests.post(
            f"{server.url}{API}/17/issue?token={CRM_TOKEN}",
            headers={"Authorization": f"Bearer {CRM_TOKEN}", "X-Request-ID": "gunicorn-17"},
            timeout=START_TIMEOUT_SECONDS,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "gunicorn-17"
    finally:
        output = server.stop()

    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    requests_logged = [line for line in lines if line["logger"] == "bridge.access"]
    [issue] = [line for line in requests_logged if line.get("method") == "POST"]
    assert issue["message"] == "issue answered 201"
    assert issue["request_id"] == "gunicorn-17" and issue["invoice_id"] == 17
    assert issue["status"] == 201 and issue["path"] == f"{API}/17/issue"
    assert issue["duration_ms"] > 0 and issue["bytes"] > 0
    assert any(line["path"] == "/healthz" for line in requests_logged)
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    assert_nothing_secret(output)
