"""Encryption at rest: with BRIDGE_ENCRYPTION_KEY set, Redis holds no customer data in clear."""

from __future__ import annotations

from cryptography.fernet import Fernet
from helpers import API

from bridge.config import load_settings
from bridge.sandbox.samples import sample_invoices
from bridge.web.app import create_app


def customer_strings() -> list[str]:
    invoice = sample_invoices()[17]
    request_info, customer = invoice["request_info"], invoice["order_info"]["customer"]
    found = [customer.get("name"), request_info.get("forward_email"),
             request_info.get("company_address"), request_info.get("company_name")]  # fmt: skip
    return [text for text in found if text]


def everything_in_redis(redis) -> bytes:
    """Every value the bridge stored, read as a person with redis-cli would read it."""
    values: list[bytes] = []
    for key in redis.scan_iter("*"):
        kind = redis.type(key)
        if kind == b"string":
            values.append(redis.get(key))
        elif kind == b"hash":
            values.extend(redis.hgetall(key).values())
        elif kind == b"list":
            values.extend(redis.lrange(key, 0, -1))
        elif kind == b"zset":
            values.extend(redis.zrange(key, 0, -1))
    return b"\n".join(values)


def bridge_with(environ, redis, keys: str | None):
    extra = {"BRIDGE_ENCRYPTION_KEY": keys} if keys else {}
    return create_app(load_settings({**environ, **extra}), redis).test_client()


def test_without_a_key_customer_data_is_plain_so_the_check_below_can_fail(
    environ, redis, crm_headers
):
    client = bridge_with(environ, redis, None)
    assert client.post(f"{API}/17/issue", headers=crm_headers).status_code == 201

    stored = everything_in_redis(redis)
    assert any(text.encode() in stored for text in customer_strings())


def test_with_a_key_redis_holds_no_customer_name_or_email_in_clear(environ, redis, crm_headers):
    client = bridge_with(environ, redis, Fernet.generate_key().decode())
    assert client.post(f"{API}/17/issue", headers=crm_headers).status_code == 201
    assert client.put(f"{API}/17", headers=crm_headers, json={}).status_code == 200

    stored = everything_in_redis(redis)
    assert customer_strings()
    for text in customer_strings():
        assert text.encode() not in stored
    assert client.get(f"{API}/17", headers=crm_headers).json["data"]["state"] == "issued"


def test_keys_rotate_and_a_missing_key_is_a_clear_503(environ, redis, crm_headers):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    bridge_with(environ, redis, old).post(f"{API}/17/issue", headers=crm_headers)

    rotated = bridge_with(environ, redis, f"{new},{old}")
    assert rotated.get(f"{API}/17", headers=crm_headers).status_code == 200

    lost = bridge_with(environ, redis, new).get(f"{API}/17", headers=crm_headers)
    assert lost.status_code == 503
    assert "BRIDGE_ENCRYPTION_KEY" in lost.json["message"]
    assert old not in lost.json["message"] and new not in lost.json["message"]


def test_records_written_in_clear_stay_readable_after_encryption_is_turned_on(
    environ, redis, crm_headers
):
    bridge_with(environ, redis, None).post(f"{API}/17/issue", headers=crm_headers)
    key = Fernet.generate_key().decode()

    response = bridge_with(environ, redis, key).get(f"{API}/17", headers=crm_headers)

    assert response.status_code == 200
    assert response.json["data"]["state"] == "issued"
