"""N: the baseline, a naive hand-written issue chain, the way a quick script would do it.

``POST /api/v1/invoices/<id>/issue`` with the invoice in the body: parse the JSON, claim
the invoice with Redis ``SET NX``, load it with a marshmallow schema (built per request),
map it to Finan's body, sign it, ``requests.put`` it to Finan (a new connection each time,
environment lookups on), answer. It does less than the bridge (no lock release, no
record, no totals check, no content layer): it is the yardstick, not a reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from datetime import datetime, timedelta

import phonenumbers
import redis
import requests
from flask import Flask, jsonify, request
from marshmallow import EXCLUDE, Schema, fields

from bench.common import FINAN_CLIENT_ID, FINAN_PREFIX, FINAN_SECRET, PAYMENT_CONFIG, TAX_IDS


class Base(Schema):
    class Meta:
        unknown = EXCLUDE


class Vat(Base):
    value = fields.Integer(allow_none=True)


class Title(Base):
    title = fields.String(allow_none=True)


class Price(Base):
    object = fields.Nested(Title, allow_none=True)
    unit_price = fields.Raw(allow_none=True)
    quantity = fields.Integer(allow_none=True)
    period = fields.Integer(allow_none=True)
    vat = fields.Nested(Vat, allow_none=True)


class ServiceInfo(Base):
    name = fields.String(allow_none=True)


class Service(Base):
    service_info = fields.Nested(ServiceInfo, allow_none=True)
    prices = fields.List(fields.Nested(Price))


class Customer(Base):
    name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)


class OrderInfo(Base):
    customer = fields.Nested(Customer, allow_none=True)
    services = fields.List(fields.Nested(Service))


class RequestInfo(Base):
    request_at = fields.String(allow_none=True)
    company_name = fields.String(allow_none=True)
    company_address = fields.String(allow_none=True)
    forward_email = fields.String(allow_none=True)


class Invoice(Base):
    id = fields.Integer(required=True)
    code = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    order_info = fields.Nested(OrderInfo)
    request_info = fields.Nested(RequestInfo, allow_none=True)


def money(value):
    if isinstance(value, dict):
        value = value.get("original")
    return int(str(value).replace(",", ""))


def finan_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def create_app(redis_url: str | None = None, finan_url: str | None = None) -> Flask:
    """The naive app (gunicorn: ``bench.naive_app:create_app()``, settings from BENCH_*)."""
    app = Flask(__name__)
    store = redis.Redis.from_url(redis_url or os.environ["BENCH_REDIS_URL"])
    finan = finan_url or os.environ["BENCH_FINAN_URL"]

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.post("/api/v1/invoices/<int:invoice_id>/issue")
    def issue(invoice_id):
        payload = json.loads(request.data)
        if not store.set(f"naive:issued:{invoice_id}", "1", nx=True, ex=86400):
            return jsonify({"success": False, "message": "already issued"}), 409
        invoice = Invoice().load(payload.get("data", payload))

        request_info = invoice.get("request_info") or {}
        local = datetime.strptime(
            request_info.get("request_at") or invoice["created_at"], "%Y-%m-%d %H:%M:%S"
        )
        value_at = local - timedelta(hours=7)
        items = []
        for service in invoice["order_info"]["services"]:
            for row in service["prices"]:
                rate = row["vat"]["value"]
                items.append(
                    {
                        "name": f"{service['service_info']['name']} - {row['object']['title']}",
                        "price": money(row["unit_price"]),
                        "quantity": row["quantity"] * (row["period"] or 1),
                        "taxes": [{"name": f"VAT {rate}", "tax_id": TAX_IDS[rate], "rate": rate}],
                    }
                )
        customer = invoice["order_info"]["customer"]
        phone = phonenumbers.format_number(
            phonenumbers.parse(customer["phone"], "VN"), phonenumbers.PhoneNumberFormat.E164
        )
        body = json.dumps(
            {
                "value_at": finan_time(value_at),
                "due_at": finan_time(value_at + timedelta(days=7)),
                "reference_code": invoice["code"],
                "tax_type": "price_excluding_tax",
                "items": items,
                "customer": {
                    "name": request_info.get("company_name") or customer["name"],
                    "phone": phone,
                    "email": request_info.get("forward_email"),
                    "address": request_info.get("company_address"),
                },
                "payment_config": list(PAYMENT_CONFIG),
                "discounts": [],
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

        finan_id = uuid.uuid5(uuid.NAMESPACE_URL, f"naive/{invoice_id}")
        path = f"/api/v1/invoice/update-invoice/{finan_id}"
        timestamp = str(int(time.time()))
        signed = b"_".join([FINAN_SECRET.encode(), b"PUT", path.encode(), body, timestamp.encode()])
        response = requests.put(
            finan + FINAN_PREFIX + path,
            data=body,
            headers={
                "Content-Type": "application/json",
                "x-client-id": FINAN_CLIENT_ID,
                "x-timestamp": timestamp,
                "x-signature": hashlib.sha256(signed).hexdigest(),
            },
            timeout=10,
        )
        answer = response.json()
        if answer.get("code", 0) // 1000 % 10 != 2:
            return jsonify({"success": False, "message": str(answer.get("message"))}), 502
        return jsonify({"success": True, "message": "Invoice issued", "data": answer["data"]}), 201

    return app
