"""``bridge reconcile`` against a real Redis and the stand-ins: settings from the
environment, as in production."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import issue, make_failed

from bridge.cli import main
from bridge.store.records import provider_invoice_id


@pytest.fixture
def cli_env(environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


@pytest.fixture
def app(cli_env, make_app):
    return make_app()


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def finan_id(app, invoice_id):
    return provider_invoice_id(app.extensions["bridge"].settings.tourwell_base_url, invoice_id)


def test_reconcile_all_in_sync_exits_0(app, client, crm_headers, finan):
    for invoice_id in (17, 18):
        assert issue(client, crm_headers, invoice_id).status_code == 201

    result = invoke("reconcile", "--state", "issued")

    assert result.exit_code == 0, result.output
    assert "Checking 2 invoices at Finan" in result.output
    assert "in_sync: 2  out_of_sync: 0  not_accepted: 0  error: 0" in result.output
    details = [r for r in finan.state.requests if r["method"] == "GET"]
    assert len(details) == 2


def test_reconcile_out_of_sync_exits_1_with_a_summary_table(app, client, crm_headers, finan):
    for invoice_id in (17, 18, 19):
        issue(client, crm_headers, invoice_id)
    make_failed(client, crm_headers, finan, 20)
    finan.state.change(finan_id(app, 18), {"reference_code": "EDITED-AT-FINAN"})
    finan.state.forget(finan_id(app, 19))

    result = invoke("reconcile", "17", "18", "19", "20")

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("invoice"))
    assert lines[header].split() == ["invoice", "result", "state", "message"]
    rows = {line.split()[0]: line for line in lines[header + 2 : header + 6]}
    assert rows["17"].split()[1] == "in_sync"
    assert rows["18"].split()[1] == "out_of_sync" and "reference_code" in rows["18"]
    assert rows["19"].split()[1] == "out_of_sync" and "does not know" in rows["19"]
    assert rows["20"].split()[1] == "not_accepted"
    assert "in_sync: 1  out_of_sync: 2  not_accepted: 1  error: 0" in result.output
    assert app.extensions["bridge"].finan_checks.out_of_sync.count() == 2


def test_reconcile_refuses_unknown_ids_and_bad_usage(app, client, crm_headers):
    issue(client, crm_headers, 17)
    unknown = invoke("reconcile", "17", "999")
    assert unknown.exit_code == 1
    assert "999" in unknown.output
    assert invoke("reconcile").exit_code == 2
    assert invoke("reconcile", "17", "--state", "issued").exit_code == 2


def test_reconcile_of_an_empty_state_says_so(app):
    result = invoke("reconcile", "--state", "dead")
    assert result.exit_code == 0
    assert "nothing to check" in result.output
