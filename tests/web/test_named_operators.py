"""Named operators: BRIDGE_ADMIN_TOKENS takes name=token entries; the name reaches the
history (``by``) and the request's log lines (``operator``); a bare token is "operator"."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import GOOD_ENVIRON

from bridge.config import ConfigError, load_settings
from bridge.observability.logs import JsonFormatter


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS="lan=lan-admin-token-1, bare-admin-token-2")


def history(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    return client.get("/admin/invoices/17", headers=headers).json["data"]["history"]


def test_an_api_resync_names_the_operator_in_history_and_logs(client, caplog):
    handler_lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_lines.append(json.loads(JsonFormatter().format(record)))

    caplog.set_level(logging.INFO)
    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        headers = {"Authorization": "Bearer lan-admin-token-1"}
        assert client.post("/admin/invoices/17/resync", headers=headers).status_code == 200
    finally:
        logging.getLogger().removeHandler(keep)
    event = history(client, "lan-admin-token-1")[0]
    assert (event["actor"], event["by"]) == ("operator", "lan")
    access = [line for line in handler_lines if line["logger"] == "bridge.access"]
    assert access and access[-1]["operator"] == "lan"
    assert all("lan-admin-token-1" not in json.dumps(line) for line in handler_lines)


def test_a_bare_token_is_operator(client):
    headers = {"Authorization": "Bearer bare-admin-token-2"}
    assert client.post("/admin/invoices/17/resync", headers=headers).status_code == 200
    event = history(client, "bare-admin-token-2")[0]
    assert (event["actor"], event["by"]) == ("operator", "operator")


def test_crm_events_have_no_name(client, crm_headers):
    client.post("/api/v1/invoices/17/issue", headers=crm_headers)
    event = history(client, "lan-admin-token-1")[0]
    assert (event["actor"], event["by"]) == ("crm", None)


@pytest.mark.parametrize(
    "value, why",
    [
        ("lan=secret-token-x,bad$name=secret-token-y", "entry #2: the name"),
        ("lan=secret-token-x,ann=secret-token-x", "entries #1 and #2 have the same token"),
        ("secret-token-x,secret-token-x", "entries #1 and #2 have the same token"),
        ("c2VjcmV0LXRva2Vu==", "entry #1 has no token"),
        ("lan=", "entry #1 has no token"),
    ],
)
def test_bad_entries_are_refused_by_position_without_the_secret(value, why):
    with pytest.raises(ConfigError) as raised:
        load_settings({**GOOD_ENVIRON, "BRIDGE_ADMIN_TOKENS": value})
    problem = raised.value.problems["BRIDGE_ADMIN_TOKENS"]
    assert why in problem
    assert "secret" not in str(raised.value) and "c2VjcmV0" not in str(raised.value)
    assert "bad$name" not in str(raised.value)


def test_names_and_tokens_are_read():
    settings = load_settings(
        {**GOOD_ENVIRON, "BRIDGE_ADMIN_TOKENS": "Lan Nguyen=tok-1, ops@agency.vn=t=k-2, tok-3"}
    )
    assert [a.name for a in settings.admins] == ["Lan Nguyen", "ops@agency.vn", "operator"]
    assert settings.admin_tokens == ("tok-1", "t=k-2", "tok-3")
    assert "tok-1" not in repr(settings.admins)
