"""Credentials and addresses every bench process agrees on (made up, loopback only)."""

from __future__ import annotations

from bridge.sandbox.samples import SANDBOX_PAYMENT_CONFIG, SANDBOX_TAX_IDS

CRM_TOKEN = "bench-crm-token"
FINAN_CLIENT_ID = "bench-client"
FINAN_SECRET = "bench-secret"
FINAN_PREFIX = "/open"
TAX_IDS = SANDBOX_TAX_IDS
PAYMENT_CONFIG = SANDBOX_PAYMENT_CONFIG
# Never called on the issue path with the invoice in the body; the bridge needs a value.
TOURWELL_BASE_URL = "http://127.0.0.1:9"

ISSUE_PATH = "/api/v1/invoices/{invoice_id}/issue"
