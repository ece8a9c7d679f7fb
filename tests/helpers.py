"""What many test modules share: the test credentials, the API's paths, small steps (issue
an invoice, run the queue's jobs) and views of the stand-ins' request logs.

Fixtures live in ``conftest.py``; plain helpers live here, and no test module imports
another.
"""

from __future__ import annotations

import re

import redis as redis_lib

from bridge.config import load_settings
from bridge.store.queue import bridge_queue
from bridge.web.app import create_app
from bridge.worker.jobs import InProcessWorker

# --- credentials the stand-ins and the bridge under test share ---

CRM_TOKEN = "test-crm-token"
OTHER_CRM_TOKEN = "test-crm-token-rotated"
TOURWELL_TOKEN = "test-tourwell-token"
FINAN_CLIENT_ID = "test-client"
FINAN_SECRET = "test-secret"
FINAN_PREFIX = "/open"
ADMIN_TOKEN = "test-admin-token"
ADMIN_TOKENS = f"{ADMIN_TOKEN},other-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

API = "/api/v1/invoices"

# A complete, valid environment for settings tests (no stand-ins behind it).
GOOD_ENVIRON = {
    "BRIDGE_CRM_TOKENS": "crm-a, crm-b",
    "TOURWELL_BASE_URL": "https://demo.tourwell.net/",
    "TOURWELL_API_TOKEN": "tw-token",
    "PROVIDER_BASE_URL": "https://api.finan.example/open",
    "PROVIDER_CLIENT_ID": "client",
    "PROVIDER_SECRET_KEY": "very-secret-value",
    "PROVIDER_TAX_IDS": (
        "10=9497360a-9e04-4967-9ed1-7e29cf36ef7a,0=11111111-1111-4111-8111-111111111111"
    ),
}


def issue(client, headers, invoice_id=17, **kwargs):
    return client.post(f"{API}/{invoice_id}/issue", headers=headers, **kwargs)


def make_failed(client, crm_headers, finan, invoice_id=20):
    """Invoice ``invoice_id`` failed: Finan rejects its issue."""
    finan.state.fail_next("client_error")
    response = issue(client, crm_headers, invoice_id)
    assert response.status_code == 502, response.json
    return response


def finan_puts(finan) -> list[dict]:
    """The update-invoice requests the stand-in Finan accepted or refused, in order."""
    with finan.state.lock:
        return [r for r in finan.state.requests if r["method"] == "PUT"]


def crm_writes(tourwell, invoice_id=17) -> list[dict]:
    """The CRM stand-in's log of the bridge's write-backs to ``invoice_id``."""
    with tourwell.state.lock:
        return [
            r
            for r in tourwell.state.requests
            if r["method"] == "PUT" and r["path"] == f"/api/v1/invoices/{invoice_id}"
        ]


def run_worker(app) -> None:
    """Run every job due now in this process, with ``app``'s services, until none is left."""
    services = app.extensions["bridge"]
    worker = InProcessWorker(
        [bridge_queue(services.redis)], connection=services.redis, services=services
    )
    worker.work(burst=True)


def queue_is_empty(redis) -> bool:
    queue = bridge_queue(redis)
    return queue.count == 0 and queue.scheduled_job_registry.count == 0


def served_openapi_document() -> dict:
    """The document a bridge serves. It depends only on the app's routes and schemas, so
    it can be read at collection time, before the live bridge and its stand-ins exist."""
    environ = {
        "BRIDGE_CRM_TOKENS": CRM_TOKEN,
        "TOURWELL_BASE_URL": "http://127.0.0.1:9",
        "TOURWELL_API_TOKEN": "unused-at-collection",
        "PROVIDER_BASE_URL": "http://127.0.0.1:9",
        "PROVIDER_CLIENT_ID": "unused",
        "PROVIDER_SECRET_KEY": "unused-at-collection",
        "PROVIDER_TAX_IDS": "10=00000000-0000-4000-8000-000000000000",
    }
    unconnected = redis_lib.Redis.from_url("redis://127.0.0.1:1")  # never used here
    app = create_app(load_settings(environ), unconnected)
    return app.test_client().get("/openapi.json").json


def csrf_token(html: str) -> str:
    """The first CSRF token in a status page's HTML (a form's hidden field)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
