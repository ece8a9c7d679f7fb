"""Settings: every variable of docs/contract/settings.md, validated in one place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GOOD_ENVIRON

from bridge.config import SETTINGS_TABLE, ConfigError, Settings, load_settings


def test_defaults_fill_every_optional_setting():
    settings = load_settings(GOOD_ENVIRON)

    assert settings.crm_tokens == ("crm-a", "crm-b")
    assert settings.tourwell_base_url == "https://demo.tourwell.net"  # trailing slash dropped
    assert settings.provider_tax_ids == {
        10: "9497360a-9e04-4967-9ed1-7e29cf36ef7a",
        0: "11111111-1111-4111-8111-111111111111",
    }
    assert settings.redis_url is None
    assert settings.data_dir == Path("var")
    assert settings.admin_tokens == ()
    assert settings.tourwell_rate_limit_per_min == 60
    assert settings.provider_payment_config == ()
    assert settings.provider_due_days == 7
    assert settings.provider_lookup_url_template is None
    assert settings.idempotency_ttl == 86400
    assert settings.encryption_keys == ()


def test_every_variable_of_the_design_is_in_the_table():
    design = {
        "REDIS_URL",
        "BRIDGE_DATA_DIR",
        "BRIDGE_CRM_TOKENS",
        "BRIDGE_ADMIN_TOKENS",
        "TOURWELL_BASE_URL",
        "TOURWELL_API_TOKEN",
        "TOURWELL_RATE_LIMIT_PER_MIN",
        "PROVIDER_BASE_URL",
        "PROVIDER_CLIENT_ID",
        "PROVIDER_SECRET_KEY",
        "PROVIDER_TAX_IDS",
        "PROVIDER_PAYMENT_CONFIG",
        "PROVIDER_DUE_DAYS",
        "PROVIDER_LOOKUP_URL_TEMPLATE",
        "PROVIDER_RATE_LIMIT_PER_MIN",
        "BRIDGE_IDEMPOTENCY_TTL",
        "BRIDGE_ENCRYPTION_KEY",
    }
    # The bridge's own additions: the queue's retry schedule (docs/reliability.md), the
    # worker's metrics port (docs/operators.md), the pace of background calls to Finan; the
    # status page's session timeouts, the limits on failed tokens and the trusted proxies
    # (docs/contract/http.md#too-many-failures).
    own = {"BRIDGE_RETRY_SCHEDULE", "BRIDGE_WORKER_METRICS_PORT", "PROVIDER_RATE_LIMIT_PER_MIN"}
    own |= {
        "BRIDGE_ADMIN_SESSION_IDLE_MINUTES",
        "BRIDGE_ADMIN_SESSION_MAX_MINUTES",
        "BRIDGE_AUTH_FAILURES_PER_CLIENT_PER_MIN",
        "BRIDGE_AUTH_FAILURES_PER_MIN",
        "BRIDGE_TRUSTED_PROXIES",
    }
    assert set(SETTINGS_TABLE) == design | own


@pytest.mark.parametrize(
    "variable", [v for v, (_, _, required) in SETTINGS_TABLE.items() if required]
)
def test_a_missing_required_setting_is_named(variable):
    environ = {k: v for k, v in GOOD_ENVIRON.items() if k != variable}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert set(caught.value.problems) == {variable}


BAD_VALUES = [
    ("TOURWELL_BASE_URL", "demo.tourwell.net", "http"),
    ("PROVIDER_BASE_URL", "ftp://finan", "http"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("TOURWELL_RATE_LIMIT_PER_MIN", "sixty", "whole number"),
    ("TOURWELL_RATE_LIMIT_PER_MIN", "0", "above 0"),
    ("PROVIDER_DUE_DAYS", "-3", "above 0"),
    ("BRIDGE_IDEMPOTENCY_TTL", "1.5", "whole number"),
    ("PROVIDER_TAX_IDS", "10", "RATE=UUID"),
    ("PROVIDER_TAX_IDS", "ten=9497360a-9e04-4967-9ed1-7e29cf36ef7a", "percentage"),
    ("PROVIDER_TAX_IDS", "10=not-a-uuid", "not a UUID"),
    ("PROVIDER_TAX_IDS", "150=9497360a-9e04-4967-9ed1-7e29cf36ef7a", "0..100"),
    ("PROVIDER_PAYMENT_CONFIG", "abc", "not a UUID"),
    ("PROVIDER_LOOKUP_URL_TEMPLATE", "https://finan.example/invoice", "{provider_invoice_id}"),
    ("BRIDGE_ENCRYPTION_KEY", "too-short", "Fernet"),
    ("BRIDGE_CRM_TOKENS", " , ", "at least one token"),
    ("BRIDGE_RETRY_SCHEDULE", "10,1m", "whole seconds"),
    ("BRIDGE_RETRY_SCHEDULE", "10,-5", "none negative"),
]


@pytest.mark.parametrize(("variable", "value", "hint"), BAD_VALUES)
def test_a_malformed_setting_is_named_with_what_to_fix(variable, value, hint):
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOD_ENVIRON, variable: value})
    assert variable in caught.value.problems
    assert hint in caught.value.problems[variable]


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_settings({"PROVIDER_DUE_DAYS": "x"})
    assert "PROVIDER_DUE_DAYS" in caught.value.problems
    assert "BRIDGE_CRM_TOKENS" in caught.value.problems


def test_secrets_never_appear_in_errors_or_repr():
    key = "not-a-fernet-key-but-secret"
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOD_ENVIRON, "BRIDGE_ENCRYPTION_KEY": key})
    assert key not in str(caught.value)
    settings = load_settings(GOOD_ENVIRON)
    assert isinstance(settings, Settings)
    assert GOOD_ENVIRON["PROVIDER_SECRET_KEY"] not in repr(settings)
    assert "tw-token" not in repr(settings)


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [("PROVIDER_SECRET_KEY", None), ("PROVIDER_TAX_IDS", "10=nope"), ("TOURWELL_BASE_URL", "x")],
)
def test_bridge_refuses_to_start_and_names_the_setting(command, variable, value, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_TABLE}
    environ.update(GOOD_ENVIRON)
    environ["BRIDGE_DATA_DIR"] = str(tmp_path)
    if value is None:
        del environ[variable]
    else:
        environ[variable] = value

    result = subprocess.run(
        [sys.executable, "-m", "bridge", command],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert GOOD_ENVIRON["PROVIDER_SECRET_KEY"] not in result.stderr
