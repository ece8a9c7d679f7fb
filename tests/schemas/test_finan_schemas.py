"""Finan-side schemas: the exact request bytes, the response envelope, code classes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError, missing

from bridge.sandbox.samples import FINAN_WORKED_EXAMPLE
from schemas.finan import (
    BodySchema,
    ResponseEnvelopeSchema,
    UpdateInvoiceRequestSchema,
    code_class,
    decode_request,
    encode_request,
)

TAX_ID = FINAN_WORKED_EXAMPLE["items"][0]["taxes"][0]["tax_id"]
PAYMENT_ID = FINAN_WORKED_EXAMPLE["payment_config"][0]

REFERENCE_JSON = FINAN_WORKED_EXAMPLE  # Finan's worked example (reference 004)


def reference_body() -> dict:
    """The same example as the mapping produces it: Python values, not JSON."""
    value_at = datetime(2024, 9, 5, 16, 59, 59, 999000, tzinfo=UTC)
    body = copy.deepcopy(REFERENCE_JSON)
    body["value_at"] = value_at
    body["due_at"] = value_at + timedelta(days=30)
    for item in body["items"]:
        item["price"] = Decimal(item["price"])
    body["customer"] = {"name": "NhanTr10abc", "phone": None, "email": None, "address": None}
    return body


def test_reference_body_encodes_to_finans_example():
    assert json.loads(encode_request(reference_body())) == REFERENCE_JSON


def test_encoding_is_compact_and_in_documented_key_order():
    encoded = encode_request(reference_body())
    assert encoded.startswith(b'{"value_at":"2024-09-05T16:59:59.999Z","due_at":')
    assert b", " not in encoded and b": " not in encoded and b"\n" not in encoded
    assert list(json.loads(encoded)) == list(REFERENCE_JSON)


def test_encoding_is_stable():
    first = encode_request(reference_body())
    assert encode_request(reference_body()) == first
    assert encode_request(copy.deepcopy(reference_body())) == first


def test_times_are_utc_with_milliseconds_and_z():
    body = reference_body()
    body["value_at"] = datetime(2024, 9, 5, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=7)))
    assert json.loads(encode_request(body))["value_at"] == "2024-09-05T03:00:00.123Z"


def test_a_naive_time_is_refused_rather_than_guessed():
    body = reference_body()
    body["due_at"] = datetime(2024, 9, 5)
    with pytest.raises(ValueError, match="naive"):
        encode_request(body)


def test_money_is_an_integer_when_whole_else_a_float():
    body = reference_body()
    body["items"][0]["price"] = Decimal("100000.00")
    body["items"][1]["price"] = Decimal("303897.975")
    encoded = encode_request(body)
    assert b'"price":100000,' in encoded
    assert b'"price":303897.975,' in encoded


def test_customer_omits_unknown_values_and_keeps_utf8():
    body = reference_body()
    body["customer"] = {"name": "Công ty Du lịch", "phone": "+84912345678", "email": None}
    encoded = encode_request(body)
    assert json.loads(encoded)["customer"] == {"name": "Công ty Du lịch", "phone": "+84912345678"}
    assert "Công ty Du lịch".encode() in encoded  # raw UTF-8, not \\u escapes


def test_an_empty_invoice_encodes():
    body = reference_body()
    body.update(items=[], payment_config=[], discounts=[], tax_type="tax_not_applicable")
    assert b'"items":[],' in encode_request(body)


def test_decode_request_round_trips_the_exact_bytes():
    body = reference_body()
    body["items"][1]["price"] = Decimal("303897.975")
    encoded = encode_request(body)
    decoded = decode_request(encoded.decode())
    assert decoded["value_at"] == body["value_at"]
    assert decoded["items"][1]["price"] == Decimal("303897.975")
    assert encode_request(decoded) == encoded


@pytest.mark.parametrize("raw", ["", "[]", '{"items": "nope"}', b"\xff"])
def test_decode_request_refuses_what_it_did_not_encode(raw):
    with pytest.raises(ValueError, match="not an update-invoice body"):
        decode_request(raw)


def test_body_schema_reads_keys_and_leaves_the_rest_to_marshmallow():
    schema = BodySchema()
    assert schema.get_attribute({"a": 1}, "a", missing) == 1
    assert schema.get_attribute({"a": None}, "a", missing) is None
    assert schema.get_attribute({}, "a", missing) is missing
    assert schema.get_attribute(SimpleNamespace(a=2), "a", missing) == 2
    assert schema.get_attribute({"a": {"b": 3}}, "a.b", missing) == 3


def test_request_body_loads_back_and_refuses_with_paths():
    body = {
        "value_at": datetime(2024, 9, 5, tzinfo=UTC),
        "due_at": datetime(2024, 10, 5, tzinfo=UTC),
        "reference_code": "HD35",
        "tax_type": "price_excluding_tax",
        "items": [{"name": "Tour", "price": Decimal("100000"), "quantity": 2, "taxes": []}],
        "customer": {"name": "Khách", "phone": None},
        "payment_config": ["p"],
        "discounts": [{"is_rate": False, "value": 5}],
    }
    dumped = UpdateInvoiceRequestSchema().dump(body)
    assert dumped["value_at"] == "2024-09-05T00:00:00.000Z"
    assert dumped["items"] == [{"name": "Tour", "price": 100000, "quantity": 2, "taxes": []}]
    assert dumped["customer"] == {"name": "Khách"}
    assert UpdateInvoiceRequestSchema().load(dumped)["items"][0]["price"] == Decimal(100000)
    wrong = {**dumped, "items": [{"name": 5, "extra": 1}], "customer": "Khách"}
    with pytest.raises(ValidationError) as info:
        UpdateInvoiceRequestSchema().load(wrong)
    assert info.value.messages == {
        "items": {
            0: {
                "name": ["Not a valid string."],
                "price": ["Missing data for required field."],
                "quantity": ["Missing data for required field."],
                "taxes": ["Missing data for required field."],
                "extra": ["Unknown field."],
            }
        },
        "customer": {"_schema": ["Invalid input type."]},
    }


# --- response ------------------------------------------------------------------------------

REFERENCE_RESPONSE = {
    "message": {"content": "Bạn vừa thực hiện tạo thành công %s"},
    "code": 102001,
    "request_id": "967f96b9-bf2a-4888-ae4e-c762d2dd2ef8",
    "data": {
        "id": "f6906b54-edfb-427f-9204-5f74948b33e8",
        "order_code": "HD35",
        "system_code": "SOSPMFBA",
        "value_at": "2024-09-05T16:59:59.999Z",
        "due_at": "2024-10-05T16:59:59.999Z",
        "total_amount": 594000,
        "tax_amount": 60000,
        "contact_info": {"contact_name": "NhanTr10abc", "contact_number": ""},
        "payment_config": [PAYMENT_ID],
        "created_at": "2024-09-10T11:17:05.81035+07:00",
        "something_new": True,
    },
    "trace": "ignored",
}


def test_response_envelope_reads_finans_example():
    envelope = ResponseEnvelopeSchema().load(REFERENCE_RESPONSE)
    assert envelope["code"] == 102001
    assert envelope["message"]["content"].startswith("Bạn vừa")
    data = envelope["data"]
    assert data["id"] == "f6906b54-edfb-427f-9204-5f74948b33e8"
    assert (data["order_code"], data["system_code"]) == ("HD35", "SOSPMFBA")
    assert data["total_amount"] == Decimal("594000")
    assert data["tax_amount"] == Decimal("60000")
    # Only what the bridge keeps is read; a field it never uses can't fail a success.
    assert "due_at" not in data and "contact_info" not in data
    assert "something_new" not in data and "trace" not in envelope


def test_response_envelope_ignores_odd_types_in_fields_the_bridge_does_not_use():
    odd = {
        **REFERENCE_RESPONSE,
        "data": {
            **REFERENCE_RESPONSE["data"],
            "created_at": "",
            "contact_info": {"contact_number": 912345678},
            "value_at": "0001-01-01T00:00:00+07:00",
        },
    }
    assert ResponseEnvelopeSchema().load(odd)["data"]["total_amount"] == Decimal("594000")


def test_response_envelope_tolerates_a_bare_error():
    envelope = ResponseEnvelopeSchema().load({"code": 104001, "message": "invalid tax_id"})
    assert envelope == {
        "code": 104001,
        "message": {"content": "invalid tax_id"},
        "request_id": None,
        "data": None,
    }


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (102000, "success"),
        (102001, "success"),
        (202000, "success"),
        (104000, "client"),
        (104001, "client"),
        (105000, "server"),
        (103000, "server"),
        (100000, "server"),
        (200, "server"),
        (1020000, "server"),
        (-102000, "server"),
        ("102000", "server"),
        (None, "server"),
        (True, "server"),
    ],
)
def test_code_class_reads_the_third_digit(code, expected):
    assert code_class(code) == expected
