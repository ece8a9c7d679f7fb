"""``bridge check`` recognises the system each URL reaches by that system's own answer.

Against the real stand-ins on loopback: a URL pointing at the other system (or at the
bridge itself, or at a server that checks no token) names the URL setting; only the right
system refusing the credentials names the credentials.
"""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from flask import Flask, jsonify

from bridge.cli import main
from bridge.sandbox.loopback import LoopbackServer


@pytest.fixture
def cli_env(environ, monkeypatch, redis):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


def check(monkeypatch, **overrides: str):
    """Run ``bridge check --crm-invoice 17`` with these settings changed; return the exit
    code and the lines of each check by name."""
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check", "--crm-invoice", "17"], catch_exceptions=False)
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    return result.exit_code, lines


def nothing_listens() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there now


def test_right_settings_pass_and_say_which_system_answered(cli_env, monkeypatch):
    code, lines = check(monkeypatch)

    assert code == 0, lines
    assert "ok" in lines["CRM"] and "Tourwell's Open API" in lines["CRM"]
    assert "found" in lines["CRM"]
    assert "ok" in lines["Finan"] and "Finan's API" in lines["Finan"]


@pytest.mark.parametrize("suffix", ["", "/open"])
def test_a_crm_url_pointing_at_finan_names_tourwell_base_url(cli_env, monkeypatch, finan, suffix):
    code, lines = check(monkeypatch, TOURWELL_BASE_URL=finan.url + suffix)

    assert code != 0
    assert "WRONG" in lines["CRM"]
    assert "TOURWELL_BASE_URL" in lines["CRM"] and "Finan" in lines["CRM"]
    assert "TOURWELL_API_TOKEN" not in lines["CRM"]
    assert "ok" in lines["Finan"]


def test_a_finan_url_pointing_at_the_crm_names_provider_base_url(cli_env, monkeypatch, tourwell):
    code, lines = check(monkeypatch, PROVIDER_BASE_URL=tourwell.url)

    assert code != 0
    finan_line = lines["Finan"]
    assert "WRONG" in finan_line and "PROVIDER_BASE_URL" in finan_line
    assert "Tourwell" in finan_line
    assert "PROVIDER_SECRET_KEY" not in finan_line and "PROVIDER_CLIENT_ID" not in finan_line
    assert "signature" not in finan_line
    assert "ok" in lines["CRM"]


def test_both_urls_swapped_name_both_urls(cli_env, monkeypatch, tourwell, finan):
    code, lines = check(
        monkeypatch, TOURWELL_BASE_URL=finan.url + "/open", PROVIDER_BASE_URL=tourwell.url
    )

    assert code == 1
    assert "TOURWELL_BASE_URL" in lines["CRM"] and "TOURWELL_API_TOKEN" not in lines["CRM"]
    assert "PROVIDER_BASE_URL" in lines["Finan"] and "SECRET" not in lines["Finan"]


def test_a_wrong_token_on_the_crm_names_the_token(cli_env, monkeypatch):
    code, lines = check(monkeypatch, TOURWELL_API_TOKEN="not-the-token")

    assert code == 1
    assert "WRONG" in lines["CRM"] and "TOURWELL_API_TOKEN" in lines["CRM"]
    assert "TOURWELL_BASE_URL" not in lines["CRM"]
    assert "not-the-token" not in "".join(lines.values())


@pytest.mark.parametrize("setting", ["PROVIDER_SECRET_KEY", "PROVIDER_CLIENT_ID"])
def test_wrong_finan_credentials_on_finan_name_the_credentials(cli_env, monkeypatch, setting):
    code, lines = check(monkeypatch, **{setting: "not-the-credential"})

    assert code == 1
    finan_line = lines["Finan"]
    assert "WRONG" in finan_line and setting in finan_line
    assert "PROVIDER_BASE_URL" not in finan_line
    assert "not-the-credential" not in "".join(lines.values())


def test_urls_where_nothing_listens_say_unreachable(cli_env, monkeypatch):
    code, lines = check(
        monkeypatch, TOURWELL_BASE_URL=nothing_listens(), PROVIDER_BASE_URL=nothing_listens()
    )

    assert code == 1
    assert "unreachable" in lines["CRM"] and "TOURWELL_BASE_URL" in lines["CRM"]
    assert "unreachable" in lines["Finan"] and "PROVIDER_BASE_URL" in lines["Finan"]
    assert "TOURWELL_API_TOKEN" not in lines["CRM"] and "SECRET" not in lines["Finan"]


def test_a_finan_url_with_the_wrong_prefix_is_the_url(cli_env, monkeypatch, finan):
    code, lines = check(monkeypatch, PROVIDER_BASE_URL=finan.url + "/elsewhere")

    assert code == 1
    assert "PROVIDER_BASE_URL" in lines["Finan"] and "SECRET" not in lines["Finan"]


def test_a_server_in_tourwells_envelope_that_checks_no_token_is_not_the_crm(cli_env, monkeypatch):
    impostor = Flask("impostor")

    @impostor.get("/<path:anything>")
    def anything(anything: str):
        return jsonify({"success": False, "message": "Invoice not found"}), 404

    with LoopbackServer(impostor) as server:
        code, lines = check(monkeypatch, TOURWELL_BASE_URL=server.url)

    assert code == 1
    assert "WRONG" in lines["CRM"] and "TOURWELL_BASE_URL" in lines["CRM"]
    assert "without a token" in lines["CRM"]


def test_a_server_answering_html_is_neither_system(cli_env, monkeypatch):
    page = Flask("page")

    @page.get("/<path:anything>")
    def anything(anything: str):
        return "<html>Welcome</html>", 200

    with LoopbackServer(page) as server:
        code, lines = check(monkeypatch, TOURWELL_BASE_URL=server.url, PROVIDER_BASE_URL=server.url)

    assert code == 1
    assert "TOURWELL_BASE_URL" in lines["CRM"] and "TOURWELL_API_TOKEN" not in lines["CRM"]
    assert "PROVIDER_BASE_URL" in lines["Finan"] and "SECRET" not in lines["Finan"]


def test_urls_pointing_at_the_bridge_itself_name_the_urls(cli_env, monkeypatch, make_app):
    with LoopbackServer(make_app()) as bridge:
        code, lines = check(monkeypatch, TOURWELL_BASE_URL=bridge.url, PROVIDER_BASE_URL=bridge.url)

    assert code == 1
    assert "this bridge itself" in lines["CRM"] and "TOURWELL_BASE_URL" in lines["CRM"]
    assert "TOURWELL_API_TOKEN" not in lines["CRM"]
    assert "PROVIDER_BASE_URL" in lines["Finan"] and "SECRET" not in lines["Finan"]


def test_check_sends_nothing_that_changes_anything(cli_env, monkeypatch, finan, tourwell):
    check(monkeypatch)

    with finan.state.lock:
        assert {r["method"] for r in finan.state.requests} == {"GET"}
    with tourwell.state.lock:
        assert {r["method"] for r in tourwell.state.requests} == {"GET"}
