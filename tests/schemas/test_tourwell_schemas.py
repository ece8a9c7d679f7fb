"""The CRM-side schemas: every money and date form, unknown fields, garbage refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.tourwell import (
    CancelSchema,
    CrmDateTime,
    CrmId,
    InvoiceSchema,
    InvoiceUnreadable,
    Money,
    MoneyValue,
    UpdateSchema,
    load_invoice,
    parse_amount,
    parse_crm_datetime,
)


def sample_invoice() -> dict:
    """A realistic invoice in the shape of Tourwell's GET (reference 001), extra fields and all."""
    return {
        "id": 17,
        "code": "HD017",
        "created_at": "2024-09-05 10:00:00",
        "creator_info": {"id": 3, "name": "Lan", "email": "lan@example.com"},
        "total_amount": {"foreign": 0, "base": "40,000,000"},
        "order_info": {
            "id": 9,
            "code": "DH009",
            "customer": {"id": 5, "code": "KH5", "name": "Nguyễn Văn A", "link_erp": "x"},
            "company": ["Tourwell"],
            "services": [
                {
                    "id": 1,
                    "service_info": {"id": 2, "name": "Tour Đà Lạt", "code": "DL3N"},
                    "item_info": {"name": "3N2Đ", "description": ""},
                    "visa_count": None,
                    "prices": [
                        {
                            "stt": 1,
                            "object": {"title": "Người lớn", "description": "", "note": None},
                            "commission": {"partner": 0, "staff": 0},
                            "unit_price": {"original": "4,000,000", "forex": 0},
                            "quantity": 10,
                            "period": 0,
                            "unit": "khách",
                            "vat": {"value": 0, "type": "percent", "type_label": "%"},
                            "amount_total": {"original": "40,000,000", "forex": 0},
                            "grand_total": {"original": "40,000,000", "forex": 0},
                            "currency": "VND",
                        }
                    ],
                }
            ],
            "currency": {"foreign_currency": "USD", "base_currency": "VND", "exchange_rate": 0},
            "total_payment": {"foreign": "0", "base": 40000000},
            "total_paid": {"foreign": "0", "base": 0},
            "total_discount": {"foreign": "0", "base": 0},
            "payment_state": "unpaid",
        },
        "request_info": {
            "request_at": "05/09/2024 10:00",
            "service_summary": "Tour",
            "note": "",
            "tax_code": "0312345678",
            "company_name": "Công ty ABC",
            "company_address": "1 Lê Lợi, Q1",
            "description": "",
            "forward_email": "ketoan@abc.vn",
        },
        "export_info": {"export_code": None, "export_date": "", "export_by": "Lan"},
        "invoice_provider": {"id": 1, "callback": {"api_url": "https://b", "api_token": "t"}},
    }


def load_money(value):
    return Money().deserialize(value)


# --- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (40000000, MoneyValue(base=Decimal("40000000"))),
        (0.1, MoneyValue(base=Decimal("0.1"))),  # via str(): no binary noise
        ("40000000", MoneyValue(base=Decimal("40000000"))),
        ("40,000,000", MoneyValue(base=Decimal("40000000"))),
        ("40.000.000", MoneyValue(base=Decimal("40000000"))),
        ("1,234.5", MoneyValue(base=Decimal("1234.5"))),
        ("40.5", MoneyValue(base=Decimal("40.5"))),
        (" -1,000 ", MoneyValue(base=Decimal("-1000"))),
        ({"original": "4,000,000", "forex": 160}, MoneyValue(Decimal("4000000"), Decimal("160"))),
        ({"original": "", "forex": "12.5"}, MoneyValue(None, Decimal("12.5"))),
        ({"base": 594000, "foreign": "0"}, MoneyValue(Decimal("594000"), Decimal("0"))),
        ({"foreign": 0, "base": "600,000"}, MoneyValue(Decimal("600000"), Decimal("0"))),
        ({}, MoneyValue(None, None)),
    ],
)
def test_money_reads_every_crm_form(raw, expected):
    assert load_money(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_money_empty_is_none(raw):
    field = Money(allow_none=True)
    assert field.deserialize(raw) is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("abc", "'abc' is not an amount"),
        (True, "got True"),
        ("1.234,56", "is not an amount"),  # European grouping: refused, not misread
        ("1,23", "is not an amount"),
        ("1.2.3", "is not an amount"),
        ([1], "is not an amount"),
        (float("nan"), "finite"),
        ({"amount": 5}, "{original, forex} or {base, foreign}"),
    ],
)
def test_money_refuses_garbage_with_a_clear_message(raw, fragment):
    with pytest.raises(ValidationError) as info:
        load_money(raw)
    assert fragment in str(info.value.messages)


def test_money_object_error_names_the_inner_key():
    with pytest.raises(ValidationError) as info:
        load_money({"original": "lots", "forex": 1})
    assert set(info.value.messages) == {"original"}


def test_parse_amount_keeps_decimals_exact():
    assert parse_amount("0.10") == Decimal("0.10")
    assert parse_amount(Decimal("5")) == Decimal("5")
    assert parse_amount(None) is None


@given(st.integers(-(10**15) + 1, 10**15 - 1))
def test_integers_and_their_texts_are_read_exactly(number):
    assert parse_amount(number) == Decimal(number)
    assert parse_amount(f" {number} ") == Decimal(number)
    assert parse_amount(f"{number:,}") == Decimal(number)
    assert load_money({"original": f"{number:,}", "forex": 0}) == MoneyValue(
        Decimal(number), Decimal(0)
    )


def test_other_forms_still_take_the_patterns():
    for text in ("²", "١٢", "1,23", "1,2345", "12a", "1 000"):
        with pytest.raises(ValueError, match="is not an amount"):
            parse_amount(text)


def test_money_object_errors_name_every_bad_key_in_order():
    with pytest.raises(ValidationError) as info:
        load_money({"original": "x", "forex": "y", "foreign": True, "base": [], "z": 1})
    assert list(info.value.messages) == ["base", "foreign", "forex", "original"]
    assert info.value.messages["foreign"] == ["expected an amount, got True"]
    with pytest.raises(ValidationError) as info:
        load_money({"z": 1})
    assert info.value.messages == [
        "expected an amount or an object with {original, forex} or {base, foreign}"
    ]


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-09-05T10:00:00+07:00", datetime(2024, 9, 5, 3, 0, tzinfo=UTC)),
        ("2024-09-05T03:00:00Z", datetime(2024, 9, 5, 3, 0, tzinfo=UTC)),
        ("2024-09-05T16:59:59.999Z", datetime(2024, 9, 5, 16, 59, 59, 999000, tzinfo=UTC)),
        ("2024-09-05T10:00:00", datetime(2024, 9, 5, 3, 0, tzinfo=UTC)),  # no zone: Vietnam
        ("2024-09-05 10:00", datetime(2024, 9, 5, 3, 0, tzinfo=UTC)),
        ("2024-09-05 10:00:30", datetime(2024, 9, 5, 3, 0, 30, tzinfo=UTC)),
        ("2024-09-05", datetime(2024, 9, 4, 17, 0, tzinfo=UTC)),  # midnight in Hanoi
        ("05/09/2024", datetime(2024, 9, 4, 17, 0, tzinfo=UTC)),
        ("05/09/2024 10:00", datetime(2024, 9, 5, 3, 0, tzinfo=UTC)),
        ("05/09/2024 10:00:30", datetime(2024, 9, 5, 3, 0, 30, tzinfo=UTC)),
    ],
)
def test_dates_in_every_form_become_aware_utc(raw, expected):
    loaded = CrmDateTime().deserialize(raw)
    assert loaded == expected
    assert loaded.utcoffset().total_seconds() == 0


def test_empty_date_is_none():
    assert CrmDateTime(allow_none=True).deserialize("") is None
    assert CrmDateTime(allow_none=True).deserialize(None) is None


@pytest.mark.parametrize("raw", ["next tuesday", "2024-13-45", "31/02/2024", 1725505200])
def test_unparseable_date_names_the_accepted_formats(raw):
    with pytest.raises(ValidationError) as info:
        CrmDateTime().deserialize(raw)
    assert "DD/MM/YYYY" in str(info.value.messages)


# --- the invoice ---------------------------------------------------------------------------


def test_sample_invoice_loads_into_python_values():
    invoice = load_invoice({"data": sample_invoice()})
    assert invoice["id"] == 17
    assert invoice["total_amount"] == MoneyValue(Decimal("40000000"), Decimal("0"))
    assert invoice["created_at"] == datetime(2024, 9, 5, 3, 0, tzinfo=UTC)
    assert invoice["request_info"]["request_at"] == datetime(2024, 9, 5, 3, 0, tzinfo=UTC)
    row = invoice["order_info"]["services"][0]["prices"][0]
    assert row["unit_price"] == MoneyValue(Decimal("4000000"), Decimal("0"))
    assert row["quantity"] == Decimal("10")
    assert row["vat"]["value"] == Decimal("0")
    assert invoice["request_info"]["note"] is None  # "" is "not given"


def test_unknown_fields_are_ignored_at_every_level():
    raw = sample_invoice()
    raw["brand_new_field"] = {"x": 1}
    raw["order_info"]["services"][0]["prices"][0]["surcharge"] = "1"
    raw["order_info"]["services"][0]["prices"][0]["vat"]["legal_basis"] = "Decree 72"
    invoice = load_invoice(raw)
    assert "brand_new_field" not in invoice
    assert "creator_info" not in invoice
    row = invoice["order_info"]["services"][0]["prices"][0]
    assert "surcharge" not in row
    assert "legal_basis" not in row["vat"]


def test_bare_and_wrapped_invoice_load_the_same():
    assert load_invoice(sample_invoice()) == load_invoice({"data": sample_invoice()})


def test_only_id_is_required_and_missing_fields_are_none():
    invoice = load_invoice({"id": "42"})
    assert invoice["id"] == 42
    assert invoice["order_info"] is None
    assert invoice["total_amount"] is None


def test_optional_phone_and_numeric_codes_are_read():
    raw = sample_invoice()
    raw["order_info"]["customer"]["phone"] = 912345678
    raw["order_info"]["currency"]["exchange_rate"] = "25,450"
    invoice = load_invoice(raw)
    assert invoice["order_info"]["customer"]["phone"] == "912345678"
    assert invoice["order_info"]["currency"]["exchange_rate"] == Decimal("25450")


@pytest.mark.parametrize("payload", [None, [], "invoice", 17])
def test_a_non_object_is_unprocessable(payload):
    with pytest.raises(InvoiceUnreadable) as info:
        load_invoice(payload)
    assert "can't be read" in info.value.message
    assert info.value.errors["_schema"][0].startswith("expected an object, got")


@pytest.mark.parametrize("bad_id", [None, 0, -3, "abc", True, 1.5, "²", "١٢"])
def test_a_missing_or_bad_id_is_unprocessable(bad_id):
    raw = sample_invoice()
    raw["id"] = bad_id
    with pytest.raises(InvoiceUnreadable) as info:
        load_invoice(raw)
    assert "id" in info.value.errors


def test_load_errors_name_the_field_path():
    raw = sample_invoice()
    raw["order_info"]["services"][0]["prices"][0]["unit_price"] = {"original": "abc"}
    raw["request_info"]["request_at"] = "soon"
    with pytest.raises(InvoiceUnreadable) as info:
        load_invoice(raw)
    errors = info.value.errors
    assert "original" in errors["order_info"]["services"][0]["prices"][0]["unit_price"]
    assert "request_at" in errors["request_info"]


def test_nested_errors_are_word_for_word_at_their_paths():
    # What the bridge returns in a 422's ``errors``: each nested object's messages under its
    # key, list rows under their index, and "Invalid input type." for what is not an object.
    raw = {
        "id": 17,
        "order_info": {
            "customer": "Nguyễn Văn A",
            "currency": None,
            "services": [
                {
                    "service_info": {"id": 0},
                    "prices": [{"object": {"title": ["x"]}, "vat": 8}, "row", {"quantity": "lots"}],
                },
                {"prices": None},
            ],
        },
        "request_info": [],
    }
    with pytest.raises(InvoiceUnreadable) as info:
        load_invoice(raw)
    not_an_object = {"_schema": ["Invalid input type."]}
    assert info.value.errors == {
        "order_info": {
            "customer": not_an_object,
            "services": {
                0: {
                    "service_info": {"id": ["expected a positive integer id, got 0"]},
                    "prices": {
                        0: {"object": {"title": ["expected text, got list"]}, "vat": not_an_object},
                        1: not_an_object,
                        2: {
                            "quantity": [
                                "'lots' is not an amount (expected a number or a string like "
                                "'40000000', '40,000,000', '40.000.000' or '1,234.5')"
                            ]
                        },
                    },
                }
            },
        },
        "request_info": not_an_object,
    }


def test_absent_and_null_nested_objects_both_load_as_none():
    invoice = load_invoice(
        {"id": 1, "order_info": {"services": [{"prices": [{}]}]}, "request_info": None}
    )
    assert invoice["request_info"] is None
    assert invoice["order_info"]["customer"] is None
    assert invoice["order_info"]["currency"] is None
    assert invoice["order_info"]["services"] == [
        {
            "id": None,
            "service_info": None,
            "prices": [
                {
                    "object": None,
                    "unit_price": None,
                    "quantity": None,
                    "period": None,
                    "vat": None,
                    "amount_total": None,
                    "grand_total": None,
                }
            ],
        }
    ]


def test_a_null_required_id_says_so():
    with pytest.raises(InvoiceUnreadable) as info:
        load_invoice({"id": None})
    assert info.value.errors == {"id": ["Field may not be null."]}


def test_invoice_schema_dumps_what_it_loaded():
    invoice = load_invoice(sample_invoice())
    dumped = InvoiceSchema().dump(invoice)
    assert dumped["total_amount"] == {"base": "40000000", "foreign": "0"}
    assert dumped["created_at"] == "2024-09-05T03:00:00+00:00"


# --- operation bodies ----------------------------------------------------------------------


def test_update_reads_amount_strings_and_ignores_unknown_fields():
    update = UpdateSchema().load(
        {"total_amount": "40,000,000", "note": "paid", "lookup_url": "https://x/1", "new": 1}
    )
    assert update == {
        "total_amount": Decimal("40000000"),
        "note": "paid",
        "lookup_url": "https://x/1",
    }


def test_update_leaves_absent_fields_absent():
    assert UpdateSchema().load({}) == {}
    assert UpdateSchema().load({"company_name": ""}) == {"company_name": None}


def test_update_refuses_a_garbage_total():
    with pytest.raises(ValidationError) as info:
        UpdateSchema().load({"total_amount": "a lot"})
    assert "total_amount" in info.value.messages


def test_update_dumps_the_total_as_plain_digits():
    assert UpdateSchema().dump({"total_amount": Decimal("1E+6")}) == {"total_amount": "1000000"}


def test_cancel_note_is_optional():
    assert CancelSchema().load({}) == {"cancel_note": None}
    assert CancelSchema().load({"cancel_note": "customer left", "x": 1}) == {
        "cancel_note": "customer left"
    }
    with pytest.raises(ValidationError):
        CancelSchema().load({"cancel_note": ["not", "text"]})


# --- input that must be refused, not misread or crashed on ---


@pytest.mark.parametrize("text", ["1.500", "25.000", "-999.000"])
def test_one_dot_then_three_digits_is_ambiguous_and_refused(text):
    with pytest.raises(ValueError, match="ambiguous"):
        parse_amount(text)


@pytest.mark.parametrize(("text", "value"), [("0.500", "0.5"), ("1.5", "1.5"), ("1.5000", "1.5")])
def test_unambiguous_decimals_are_read(text, value):
    assert parse_amount(text) == Decimal(value)


@pytest.mark.parametrize("text", ["١٢٣", "１２３", "12,٣٤٥", "1.٥", "٤٠.٠٠٠.٠٠٠"])
def test_digits_other_than_ascii_are_refused(text):
    with pytest.raises(ValueError, match="is not an amount"):
        parse_amount(text)


@pytest.mark.parametrize("value", [10**15, "1" + "0" * 30, 1e308, "-1,000,000,000,000,000"])
def test_absurd_amounts_are_refused(value):
    with pytest.raises(ValueError, match="too large"):
        parse_amount(value)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00", "9999-12-31 23:59:59", "01/01/1900"])
def test_dates_outside_the_sane_years_are_refused(text):
    with pytest.raises(ValueError, match="outside the years"):
        parse_crm_datetime(text)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "kind"), [(_nested(5000), "array"), ({"a": _nested(5000)}, "object")]
)
def test_a_value_nested_too_deep_to_print_is_named_by_its_kind(value, kind):
    with pytest.raises(ValueError) as amount:
        parse_amount(value)
    with pytest.raises(ValidationError) as crm_id:
        CrmId().deserialize(value)
    assert f"a JSON {kind}" in str(amount.value)
    assert f"a JSON {kind}" in str(crm_id.value)


def test_a_long_string_is_echoed_cut_short():
    with pytest.raises(ValueError) as caught:
        parse_amount("x" * 10_000)
    assert len(str(caught.value)) < 300 and "..." in str(caught.value)
