"""``bridge resync`` and ``bridge check`` against a real Redis and the stand-ins.

The commands read their settings from the environment, as in production.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import crm_writes, finan_puts, issue, make_failed, run_worker

from bridge.cli import main


@pytest.fixture
def cli_env(environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


@pytest.fixture
def app(cli_env, make_app):
    return make_app()  # cli_env: the same settings in the process environment, for the CLI


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def state_of(app, invoice_id):
    return app.extensions["bridge"].records.get(invoice_id).state


# --- bridge resync ---


def test_resync_ids_shows_progress_and_a_summary_table(
    app, client, crm_headers, finan, tourwell, redis
):
    make_failed(client, crm_headers, finan, 20)
    assert issue(client, crm_headers, 17).status_code == 201

    result = invoke("resync", "20", "17")

    assert result.exit_code == 0, result.output
    assert "Re-syncing 2 invoices" in result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("invoice"))
    assert lines[header].split() == ["invoice", "result", "state", "message"]
    assert lines[header + 2].split()[:3] == ["20", "sent", "issued"]
    assert lines[header + 3].split()[:3] == ["17", "unchanged", "issued"]
    assert "sent: 1  unchanged: 1  queued: 0  failed: 0  error: 0" in result.output
    assert state_of(app, 20) == "issued"
    run_worker(app)
    assert len(crm_writes(tourwell, 20)) == 1  # written back by a worker


def test_resync_by_state_and_force(app, client, crm_headers, finan):
    for invoice_id in (18, 20):
        make_failed(client, crm_headers, finan, invoice_id)
    assert issue(client, crm_headers, 17).status_code == 201

    by_state = invoke("resync", "--state", "failed", "--yes")  # --yes: asked otherwise
    forced = invoke("resync", "--force", "17")

    assert by_state.exit_code == 0, by_state.output
    assert "Re-syncing 2 invoices" in by_state.output
    assert (state_of(app, 18), state_of(app, 20)) == ("issued", "issued")
    assert forced.exit_code == 0
    assert any(line.split()[:2] == ["17", "sent"] for line in forced.output.splitlines())
    assert finan_puts(finan)[-1]["outcome"] == "updated"
    assert "nothing to re-sync" in invoke("resync", "--state", "dead").output


def test_resync_exits_1_naming_problems(app, client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)
    finan.state.fail_next("client_error")

    rejected = invoke("resync", "20")
    unknown = invoke("resync", "20", "999")

    assert rejected.exit_code == 1
    assert any(line.split()[:2] == ["20", "failed"] for line in rejected.output.splitlines())
    assert "invalid invoice" in rejected.output
    assert unknown.exit_code == 1
    assert any(line.split()[:3] == ["999", "failed", "-"] for line in unknown.output.splitlines())
    assert "the CRM has no invoice 999" in unknown.output


@pytest.mark.parametrize("args", [[], ["17", "--state", "failed"], ["--state", "issued"], ["x"]])
def test_resync_usage_errors(cli_env, args):
    result = invoke("resync", *args)

    assert result.exit_code == 2
    assert "Usage" in result.output or "Error" in result.output


# --- bridge check ---


def test_check_passes_when_everything_answers(cli_env, redis):
    result = invoke("check", "--crm-invoice", "17")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["settings", "ok"],
        ["Redis", "ok"],
        ["CRM", "ok"],
        ["Finan", "ok"],
    ]
    assert "404" in invoke("check", "--crm-invoice", "999").output  # not found is fine


def test_check_names_a_wrong_crm_token(cli_env, monkeypatch):
    monkeypatch.setenv("TOURWELL_API_TOKEN", "not-the-token")

    result = invoke("check")

    assert result.exit_code == 1
    crm = next(line for line in result.output.splitlines() if line.startswith("CRM"))
    assert "WRONG" in crm and "TOURWELL_API_TOKEN" in crm
    assert "not-the-token" not in result.output
    assert "Finan     ok" in result.output


def test_check_names_a_wrong_finan_secret(cli_env, monkeypatch):
    monkeypatch.setenv("PROVIDER_SECRET_KEY", "not-the-secret")

    result = invoke("check")

    assert result.exit_code == 1
    finan = next(line for line in result.output.splitlines() if line.startswith("Finan"))
    assert "WRONG" in finan and "PROVIDER_SECRET_KEY" in finan and "PROVIDER_CLIENT_ID" in finan
    assert "not-the-secret" not in result.output


def test_check_names_unreachable_redis_and_hosts(cli_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TOURWELL_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("PROVIDER_BASE_URL", "http://127.0.0.1:1")

    result = invoke("check")

    assert result.exit_code == 1
    out = result.output
    assert "Redis     WRONG" in out and "REDIS_URL" in out
    assert "can't reach TOURWELL_BASE_URL" in out
    assert "can't reach PROVIDER_BASE_URL" in out


def test_check_with_a_base_url_that_is_not_the_api(cli_env, monkeypatch, finan):
    monkeypatch.setenv("PROVIDER_BASE_URL", finan.url + "/elsewhere")

    result = invoke("check")

    assert result.exit_code == 1
    assert "Finan     WRONG" in result.output


def test_check_names_a_missing_setting(cli_env, monkeypatch):
    monkeypatch.delenv("PROVIDER_TAX_IDS")

    result = CliRunner().invoke(main, ["check"])

    assert result.exit_code == 2
    assert "PROVIDER_TAX_IDS" in result.output
