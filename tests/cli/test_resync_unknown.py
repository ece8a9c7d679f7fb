"""``bridge resync ID`` for an invoice the bridge has no record of (the CRM's call never
came), against a real Redis and the stand-ins; the settings come from the environment."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import crm_writes, finan_puts, run_worker

from bridge.cli import main


@pytest.fixture
def app(environ, monkeypatch, make_app):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return make_app()


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def rows(output: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split()[1:3] for line in output.splitlines() if line[:1].isdigit()
    }


def test_resync_of_an_invoice_only_the_crm_has_creates_its_record(app, finan, tourwell):
    result = invoke("resync", "18")

    assert result.exit_code == 0, result.output
    assert rows(result.output)["18"] == ["sent", "issued"]
    assert len(finan_puts(finan)) == 1
    records = app.extensions["bridge"].records
    assert records.get(18).state == "issued"
    assert [(e.operation, e.actor) for e in records.history(18)] == [("issue", "operator")]
    run_worker(app)
    assert len(crm_writes(tourwell, 18)) == 1


def test_an_id_the_crm_does_not_know_either_is_a_failed_item_and_exit_1(app, finan):
    result = invoke("resync", "18", "999")

    assert result.exit_code == 1
    assert rows(result.output) == {"18": ["sent", "issued"], "999": ["failed", "-"]}
    assert "the CRM has no invoice 999" in result.output
    assert "sent: 1  unchanged: 0  queued: 0  failed: 1  error: 0" in result.output
    assert app.extensions["bridge"].records.get(999) is None
