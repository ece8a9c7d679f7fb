"""Credentials and addresses every bench process agrees on (made up, loopback only)."""

from __future__ import annotations

from bridge.sandbox.samples import (
    SANDBOX_PAYMENT_CONFIG,
    SANDBOX_TAX_IDS,
    sandbox_provider_settings,
)

CRM_TOKEN = "bench-crm-token"
FINAN_CLIENT_ID = "bench-client"
FINAN_SECRET = "bench-secret"
FINAN_PREFIX = "/open"
TAX_IDS = SANDBOX_TAX_IDS
PAYMENT_CONFIG = SANDBOX_PAYMENT_CONFIG
# Never called on the issue path with the invoice in the body; the bridge needs a value.
TOURWELL_BASE_URL = "http://127.0.0.1:9"

ISSUE_PATH = "/api/v1/invoices/{invoice_id}/issue"
CRM_HEADERS = {"Authorization": f"Bearer {CRM_TOKEN}", "Content-Type": "application/json"}


def bridge_environment(redis_url: str, finan_url: str) -> dict[str, str]:
    """The bridge's settings for the bench: its Redis, and the Finan stand-in at ``finan_url``."""
    return {
        "REDIS_URL": redis_url,
        "BRIDGE_CRM_TOKENS": CRM_TOKEN,
        "TOURWELL_BASE_URL": TOURWELL_BASE_URL,
        "TOURWELL_API_TOKEN": "bench-tourwell-token",
        "PROVIDER_BASE_URL": finan_url + FINAN_PREFIX,
        "PROVIDER_CLIENT_ID": FINAN_CLIENT_ID,
        "PROVIDER_SECRET_KEY": FINAN_SECRET,
        **sandbox_provider_settings(),
    }
