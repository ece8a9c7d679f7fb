"""The field bases that take marshmallow's per-object and per-field overhead away
(``FlatNested``, ``DirectLoad``, the ``Direct*`` fields, ``BodySchema``): each must load,
refuse and word its errors exactly as the marshmallow class it stands in for."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, ValidationError, fields, missing, validate

from schemas.fields import DirectBoolean, DirectInteger, DirectList, DirectString, FlatNested
from schemas.finan import BodySchema, ResponseEnvelopeSchema, UpdateInvoiceRequestSchema
from schemas.tourwell import (
    CrmDecimal,
    CrmSchema,
    CrmString,
    InvoiceSchema,
    Money,
    MoneyValue,
    parse_amount,
)


def outcome(load, value: Any) -> tuple:
    """What a load gives: the value, or the messages and the partly loaded data."""
    try:
        return ("loaded", load(value))
    except ValidationError as error:
        return ("refused", error.messages, error.valid_data)


def flat_fields(schema: Schema) -> list[FlatNested]:
    """Every FlatNested under a schema, in lists too, nested schemas included."""
    found = []
    for field in schema.load_fields.values():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, FlatNested):
            found.append(inner)
            found.extend(flat_fields(inner.schema))
    return found


ROOTS = (InvoiceSchema(), UpdateInvoiceRequestSchema(), ResponseEnvelopeSchema())
FLAT = [field for root in ROOTS for field in flat_fields(root)]


def as_nested(field: FlatNested) -> fields.Nested:
    """The plain ``fields.Nested`` that ``field`` stands in for."""
    return fields.Nested(
        field.nested,
        required=field.required,
        allow_none=field.allow_none,
        load_default=field.load_default,
        unknown=field.unknown,
    )


def test_every_nested_object_of_the_three_bodies_is_flat():
    names = {type(field.schema).__name__ for field in FLAT}
    assert {"PriceSchema", "VatSchema", "PriceObjectSchema", "OrderInfoSchema"} <= names
    assert {"ItemSchema", "TaxSchema", "CustomerSchema", "DiscountSchema"} <= names
    assert {"MessageSchema", "InvoiceDataSchema"} <= names


def test_no_flat_schema_has_load_hooks():
    # FlatNested skips the schema's load machinery, so a load hook there would be ignored.
    # ``_hooks`` is marshmallow's private record of a schema's hooks: if a release renames
    # it, this test fails, and the check has to be found again.
    for field in FLAT:
        hooks = field.schema._hooks
        for kind in ("pre_load", "post_load", "validates", "validates_schema"):
            assert not hooks[kind], f"{type(field.schema).__name__} has a {kind} hook"


# Values as the CRM and Finan send them, and as they shouldn't: the fields' refusals count.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**16), 10**16),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", " ", "abc", "40,000,000", "1.500", "40.000.000", "²", "2024-09-05", "8", " 12 "]
    ),
    st.text(max_size=8),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["title", "value", "original", "forex", "base", "name", "x"]),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


@st.composite
def object_for(draw, field: FlatNested) -> Any:
    """An object for ``field``: its own keys (and some unknown ones) with any values."""
    keys = [f.data_key or name for name, f in field.schema.load_fields.items()]
    if draw(st.integers(0, 9)) == 0:
        return draw(JSONISH)  # not an object at all, most of the time
    return draw(st.dictionaries(st.sampled_from([*keys, "unknown_key"]), JSONISH, max_size=6))


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_flat_nested_loads_and_refuses_as_fields_nested(data):
    field = data.draw(st.sampled_from(FLAT))
    value = data.draw(object_for(field))
    assert outcome(field.deserialize, value) == outcome(as_nested(field).deserialize, value)


class _Row(CrmSchema):
    title = CrmString(load_default=None, allow_none=True)
    rate = CrmDecimal(data_key="vat", required=True)


class _Strict(Schema):
    name = fields.String(required=True)


@pytest.mark.parametrize(
    "value",
    [
        {"title": " Người lớn ", "vat": "8", "extra": 1},
        {"vat": None},
        {"title": 5, "vat": "1.500"},
        {},
        "row",
        ["row"],
        None,
    ],
)
def test_flat_nested_messages_and_data_keys(value):
    flat = FlatNested(_Row, allow_none=True)
    assert outcome(flat.deserialize, value) == outcome(
        fields.Nested(_Row, allow_none=True).deserialize, value
    )


def test_flat_nested_refusals_word_for_word():
    flat = FlatNested(_Row)
    with pytest.raises(ValidationError) as info:
        flat.deserialize({"title": ["x"], "vat": "lots"})
    assert info.value.messages == {
        "title": ["expected text, got list"],
        "vat": [
            "'lots' is not an amount (expected a number or a string like '40000000', "
            "'40,000,000', '40.000.000' or '1,234.5')"
        ],
    }
    assert info.value.valid_data == {}
    with pytest.raises(ValidationError) as info:
        flat.deserialize([1])
    assert info.value.messages == {"_schema": ["Invalid input type."]}
    with pytest.raises(ValidationError) as info:
        flat.deserialize(None)
    assert info.value.messages == ["Field may not be null."]


@pytest.mark.parametrize("unknown", [RAISE, EXCLUDE, INCLUDE])
def test_flat_nested_honours_unknown(unknown):
    value = {"name": "x", "extra": 1, "other": [2]}
    flat, nested = FlatNested(_Strict, unknown=unknown), fields.Nested(_Strict, unknown=unknown)
    assert outcome(flat.deserialize, value) == outcome(nested.deserialize, value)
    if unknown == RAISE:
        with pytest.raises(ValidationError) as info:
            flat.deserialize(value)
        assert info.value.messages == {"extra": ["Unknown field."], "other": ["Unknown field."]}


def test_flat_nested_leaves_many_and_partial_to_fields_nested():
    rows = [{"name": "a"}, {"x": 1}, "b"]
    assert outcome(FlatNested(_Strict, many=True).deserialize, rows) == outcome(
        fields.Nested(_Strict, many=True).deserialize, rows
    )
    assert FlatNested(_Strict).deserialize({}, partial=True) == {}
    with pytest.raises(ValidationError):
        FlatNested(_Strict).deserialize({})


def test_flat_nested_dumps_through_its_schema():
    assert FlatNested(_Row).serialize("row", {"row": {"rate": Decimal("1E+1")}}) == {"vat": "10"}


# --- DirectLoad and the Direct* fields -----------------------------------------------------


def test_direct_load_gives_validators_and_processors_marshmallows_path():
    short = CrmString(validate=validate.Length(max=3))
    with pytest.raises(ValidationError) as info:
        short.deserialize("abcd")
    assert info.value.messages == ["Longer than maximum length 3."]
    assert short.deserialize(" abc ") == "abc"
    assert CrmString(pre_load=lambda value: value * 2).deserialize("ab") == "abab"
    assert CrmDecimal(post_load=lambda value: -value).deserialize("1,000") == Decimal(-1000)


def test_direct_load_keeps_null_missing_and_required():
    with pytest.raises(ValidationError) as info:
        CrmString().deserialize(None)
    assert info.value.messages == ["Field may not be null."]
    assert CrmString(allow_none=True).deserialize(None) is None
    assert CrmString().deserialize(missing) is missing
    assert CrmString(load_default="-").deserialize(missing) == "-"
    with pytest.raises(ValidationError) as info:
        CrmString(required=True).deserialize(missing)
    assert info.value.messages == ["Missing data for required field."]


BUILT_INS = [
    (DirectString, fields.String),
    (DirectInteger, fields.Integer),
    (DirectBoolean, fields.Boolean),
]
ODD_VALUES = [
    "x", "", b"bytes", 1, 0, -3, 1.5, 2.0, True, False, None, missing, [1], {"a": 1},
    "12", " 7 ", "1e3", "true", "off", "١٢", Decimal("3"), Decimal("NaN"), 10**30,
]  # fmt: skip


@pytest.mark.parametrize(("direct", "built_in"), BUILT_INS)
@pytest.mark.parametrize(
    "options", [{}, {"required": True}, {"allow_none": True}, {"strict": True}]
)
def test_direct_fields_load_as_marshmallows(direct, built_in, options):
    if "strict" in options and built_in is not fields.Integer:
        options = {}
    for value in ODD_VALUES:
        assert outcome(direct(**options).deserialize, value) == outcome(
            built_in(**options).deserialize, value
        ), value


def test_direct_list_loads_as_marshmallows():
    for value in [[1, "2", 3], [1, "x", None], "12", None, (1,), {"a": 1}, [], missing]:
        for options in ({}, {"required": True}, {"allow_none": True}):
            assert outcome(DirectList(DirectInteger(), **options).deserialize, value) == outcome(
                fields.List(fields.Integer(), **options).deserialize, value
            ), (value, options)


def test_direct_fields_dump_as_marshmallows():
    obj = {"s": "x", "i": 7, "b": True, "l": [1, 2]}
    assert DirectString().serialize("s", obj) == "x"
    assert DirectInteger().serialize("i", obj) == 7
    assert DirectBoolean().serialize("b", obj) is True
    assert DirectList(DirectInteger()).serialize("l", obj) == [1, 2]


def test_body_schema_reads_keys_and_leaves_the_rest_to_marshmallow():
    schema = BodySchema()
    assert schema.get_attribute({"a": 1}, "a", missing) == 1
    assert schema.get_attribute({"a": None}, "a", missing) is None
    assert schema.get_attribute({}, "a", missing) is missing
    assert schema.get_attribute(SimpleNamespace(a=2), "a", missing) == 2
    assert schema.get_attribute({"a": {"b": 3}}, "a.b", missing) == 3


def test_request_body_dumps_and_loads_with_marshmallows_messages():
    body = {
        "value_at": datetime(2024, 9, 5, tzinfo=UTC),
        "due_at": datetime(2024, 10, 5, tzinfo=UTC),
        "reference_code": "HD35",
        "tax_type": "price_excluding_tax",
        "items": [
            {"name": "Tour", "price": Decimal("100000"), "quantity": 2, "taxes": []},
        ],
        "customer": {"name": "Khách", "phone": None},
        "payment_config": ["p"],
        "discounts": [{"is_rate": False, "value": 5}],
    }

    dumped = UpdateInvoiceRequestSchema().dump(body)
    assert dumped["value_at"] == "2024-09-05T00:00:00.000Z"
    assert dumped["items"] == [{"name": "Tour", "price": 100000, "quantity": 2, "taxes": []}]
    assert dumped["customer"] == {"name": "Khách"}
    assert UpdateInvoiceRequestSchema().load(dumped)["items"][0]["price"] == Decimal(100000)
    wrong = {**dumped, "items": [{"name": 5, "extra": 1}]}
    assert outcome(UpdateInvoiceRequestSchema().load, wrong)[1]["items"] == {
        0: {
            "name": ["Not a valid string."],
            "price": ["Missing data for required field."],
            "quantity": ["Missing data for required field."],
            "taxes": ["Missing data for required field."],
            "extra": ["Unknown field."],
        }
    }


# --- the money fast paths --------------------------------------------------------------------


@given(st.integers(-(10**15) + 1, 10**15 - 1))
def test_integers_and_their_texts_are_read_exactly(number):
    assert parse_amount(number) == Decimal(number)
    assert parse_amount(f" {number} ") == Decimal(number)
    assert parse_amount(f"{number:,}") == Decimal(number)
    assert Money().deserialize({"original": f"{number:,}", "forex": 0}) == MoneyValue(
        Decimal(number), Decimal(0)
    )


def test_other_forms_still_take_the_patterns():
    for text in ("²", "١٢", "1,23", "1,2345", "12a", "1 000"):
        with pytest.raises(ValueError, match="is not an amount"):
            parse_amount(text)


def test_money_object_errors_name_every_bad_key_in_order():
    with pytest.raises(ValidationError) as info:
        Money().deserialize({"original": "x", "forex": "y", "foreign": True, "base": [], "z": 1})
    assert list(info.value.messages) == ["base", "foreign", "forex", "original"]
    assert info.value.messages["foreign"] == ["expected an amount, got True"]
    with pytest.raises(ValidationError) as info:
        Money().deserialize({"z": 1})
    assert info.value.messages == [
        "expected an amount or an object with {original, forex} or {base, foreign}"
    ]
