"""The operators' desk, small things: each fixed, or where today's behaviour is right,
documented and held here. Counts said in the singular or the plural; ``bridge resync
abc`` says what an id is; log lines wait until the progress bar and its table are drawn;
a repeat answers as the README says; a second cancel with a new note keeps it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ADMIN, ADMIN_TOKEN, issue, make_failed

from bridge.cli import main

API = "/api/v1/invoices"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def cli_env(environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


@pytest.fixture
def app(cli_env, make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --- bridge resync abc ---


@pytest.mark.parametrize("given", ["abc", "0", "-3", "١٧", "1.5"])
def test_an_id_that_is_not_a_whole_number_from_1_is_named(app, given):
    result = invoke("resync", "--", given)

    assert result.exit_code == 2
    assert f"invoice ids are whole numbers ≥ 1: '{given}'" in result.output
    assert "integer range" not in result.output


def test_reconcile_says_the_same(app):
    result = invoke("reconcile", "abc")

    assert result.exit_code == 2
    assert "invoice ids are whole numbers ≥ 1: 'abc'" in result.output


# --- the log line between the progress bar and the table ---


def test_log_lines_come_after_the_table_not_inside_the_progress_bar(
    app, client, crm_headers, finan
):
    make_failed(client, crm_headers, finan, 20)
    finan.state.fail_next("client_error")  # the re-sync is rejected again: a warning is logged

    result = invoke("resync", "20")

    assert result.exit_code == 1
    lines = result.output.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("invoice"))
    logged = next(i for i, line in enumerate(lines) if "Finan rejected the invoice" in line)
    assert logged > table + 2  # after the table's heading, rule and row
    assert lines[logged - 1] == "Log lines of the run:"
    assert not any("Finan rejected" in line for line in lines[:table])
    assert lines[table + 2].split()[:2] == ["20", "failed"]


# --- singular and plural ---


def test_one_invoice_is_one_invoice_on_the_command_line(app, client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)

    listed = invoke("resync", "--state", "failed", "--yes")
    one = invoke("resync", "20", "--force")

    assert "1 invoice is failed:" in listed.output
    assert "Re-syncing 1 invoice" in one.output and "1 invoices" not in one.output


def test_one_invoice_is_one_invoice_in_the_admin_api(app, client, crm_headers, finan):
    make_failed(client, crm_headers, finan, 20)

    listed = client.get("/admin/invoices", headers=ADMIN).json
    bulk = client.post("/admin/resync", headers=ADMIN, json={"ids": [20]}).json

    assert listed["message"] == "1 invoice"
    assert bulk["message"].startswith("Bulk re-sync of 1 invoice accepted")
    assert client.post(f"{API}/17/issue", headers=crm_headers).status_code == 201
    assert client.get("/admin/invoices", headers=ADMIN).json["message"] == "2 invoices"


def test_one_queued_attempt_on_the_page(make_app, crm_headers, finan):
    from helpers import run_worker

    # The first queued attempt is due at once, the second in an hour: one is made.
    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN, BRIDGE_RETRY_SCHEDULE="0,3600")
    client = app.test_client()
    finan.state.fail_next("unavailable", count=50)
    assert issue(client, crm_headers, 17).status_code == 202
    run_worker(app)
    assert app.extensions["bridge"].records.get(17).pending.attempts == 1
    form = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    client.post("/admin/login", data={"csrf_token": token, "token": ADMIN_TOKEN})

    page = client.get("/admin/invoice/17?lang=en").get_data(as_text=True)

    assert "1 queued attempt" in page and "1 queued attempts" not in page


# --- a repeat's answer, as the README says ---


def test_a_repeat_answers_as_the_readme_says(app, client, crm_headers):
    readme = " ".join(README.read_text().split())
    assert issue(client, crm_headers, 17).status_code == 201

    repeat = issue(client, crm_headers, 17)
    update = client.put(f"{API}/17", headers=crm_headers, json={})

    assert (repeat.status_code, update.status_code) == (201, 200)
    assert f"`201` `{repeat.json['message']}`" in readme
    assert f"`200` `{update.json['message']}`" in readme
    assert "answers as a first success would" not in readme


# --- a second cancel with a new note ---


def test_a_second_cancel_with_a_new_note_keeps_it_and_the_history_the_old_one(
    app, client, crm_headers, finan
):
    assert issue(client, crm_headers, 17).status_code == 201
    cancel = f"{API}/17/cancel"
    assert (
        client.post(cancel, headers=crm_headers, json={"cancel_note": "first"}).status_code == 201
    )
    sent = len(finan.state.requests_snapshot())

    again = client.post(cancel, headers=crm_headers, json={"cancel_note": "second"})
    bare = client.post(cancel, headers=crm_headers)

    assert again.status_code == 201 and again.json["data"]["cancel_note"] == "second"
    assert bare.status_code == 201 and bare.json["data"]["cancel_note"] == "second"
    assert len(finan.state.requests_snapshot()) == sent  # nothing sent to Finan
    history = app.extensions["bridge"].records.history(17)
    assert any("was 'first'" in (event.message or "") for event in history)
