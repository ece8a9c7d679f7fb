"""L: the bridge's own parts chained as leanly as they go, without the bridge's guarantees.

``POST /api/v1/invoices/<id>/issue`` with the invoice in the body: check the CRM's token,
parse the JSON, claim the invoice with Redis ``SET NX``, load it with the bridge's schema
(``schemas.tourwell.load_invoice``), map it and encode Finan's body with the bridge's
mapping (totals checked), send it with the bridge's signed ``FinanClient`` (one
``requests.Session`` per thread, retries, metrics), answer. No lock, no record, no history,
no content layer, no log line: what an issue costs with the design's libraries at the
least, so the bench can tell the cost of those libraries from the cost of the guarantees
the bridge adds (B1 against L). It is a measuring stick, not a way to issue invoices.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping

import redis
from flask import Flask, jsonify, request

from bridge.config import load_settings
from bridge.integrations.finan.client import FinanClient
from bridge.invoices.mapping import MappingConfig, map_invoice
from bridge.store.records import provider_invoice_id
from schemas.finan import encode_request
from schemas.tourwell import load_invoice

CLAIM_SECONDS = 86_400


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """The lean app, from the bridge's settings (gunicorn: ``bench.lean_app:create_app()``)."""
    settings = load_settings(os.environ if environ is None else environ)
    store = redis.Redis.from_url(settings.redis_url)
    finan = FinanClient(settings)
    config = MappingConfig.from_settings(settings)
    tokens = [f"Bearer {token}".encode() for token in settings.crm_tokens]
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.post("/api/v1/invoices/<int:invoice_id>/issue")
    def issue(invoice_id: int):
        presented = request.headers.get("Authorization", "").encode()
        if not any(hmac.compare_digest(presented, token) for token in tokens):
            return jsonify({"success": False, "message": "unknown token"}), 401
        payload = json.loads(request.get_data())
        if not store.set(f"lean:issued:{invoice_id}", "1", nx=True, ex=CLAIM_SECONDS):
            return jsonify({"success": False, "message": "already issued"}), 409
        invoice = load_invoice(payload)
        body = encode_request(map_invoice(invoice, config))
        answer = finan.update_invoice(
            provider_invoice_id(settings.tourwell_base_url, invoice_id), body
        )
        return jsonify({"success": True, "message": "Invoice issued", "data": answer.data}), 201

    return app
