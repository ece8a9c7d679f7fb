"""The comparison of Finan's copy with the last accepted body: pure, by tables."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bridge.invoices.finan_comparison import Difference, compare

TAX = "9497360a-9e04-4967-9ed1-7e29cf36ef7a"
PAY = "fcefa968-fe00-4d06-a431-53bd001e7f4b"

BODY = {
    "value_at": "2024-09-05T16:59:59.999Z",
    "due_at": "2024-10-05T16:59:59.999Z",
    "reference_code": "HD017",
    "tax_type": "price_excluding_tax",
    "items": [
        {"name": "GTX-4090", "price": Decimal("100000"), "quantity": 1,
         "taxes": [{"name": "VAT 10", "tax_id": TAX, "rate": 10}]},
        {"name": "GTX-4030", "price": Decimal("500000"), "quantity": 1,
         "taxes": [{"name": "VAT 10", "tax_id": TAX, "rate": 10}]},
    ],
    "customer": {"name": "Nhan", "phone": "+84912345678", "email": "a@b.vn"},
    "payment_config": [PAY],
    "discounts": [{"is_rate": True, "value": 10}],
}  # fmt: skip
TOTALS = (Decimal(594000), Decimal(60000))
EXCLUDING, DUE = BODY["tax_type"], BODY["due_at"]


def finan_copy(**changes):
    """Finan's detail of BODY, as the real API might spell it."""
    copy = {
        "id": "f6906b54-edfb-427f-9204-5f74948b33e8",
        "order_code": "HD35",
        "system_code": "SOSPMFBA",
        "value_at": "2024-09-05T23:59:59.999+07:00",  # the same instant, another zone
        "due_at": "2024-10-05T16:59:59.999Z",
        "total_amount": 594000.0,
        "tax_amount": "60000",
        "referenceCode": "HD017",  # camelCase: normalised
        "tax_type": "price_excluding_tax",
        "items": [
            {"name": "GTX-4090", "price": 100000.0, "quantity": 1, "amount": 110000,
             "taxes": [{"name": "VAT 10", "tax_id": TAX.upper(), "rate": 10.0}]},
            {"name": " GTX-4030 ", "price": "500000", "quantity": "1",
             "taxes": [{"name": "VAT 10", "tax_id": TAX, "rate": 10}]},
        ],
        "contact_info": {"contact_name": "Nhan", "contact_number": "+84912345678"},
        "payment_config": [{"id": PAY.upper()}],
        "discounts": [{"is_rate": True, "value": 10}],
        "payment_due_amount": 0,  # paid: not compared
        "created_at": "2024-09-10T11:17:05.81035+07:00",
    }  # fmt: skip
    copy.update(changes)
    return copy


def fields(differences):
    return [d.field for d in differences]


def test_the_same_invoice_in_other_spellings_is_in_sync():
    assert compare(BODY, TOTALS, finan_copy()) == []


def test_finan_not_knowing_the_invoice_is_one_difference():
    assert compare(BODY, TOTALS, None) == [Difference("invoice", "accepted by Finan", None)]


@pytest.mark.parametrize(
    ("change", "field", "bridge", "finan"),
    [
        ({"total_amount": 600000}, "total_amount", 594000, 600000),
        ({"tax_amount": 0}, "tax_amount", 60000, 0),
        ({"referenceCode": "HD018"}, "reference_code", "HD017", "HD018"),
        ({"tax_type": "tax_not_applicable"}, "tax_type", EXCLUDING, "tax_not_applicable"),
        ({"due_at": "2024-10-06T16:59:59.999Z"}, "due_at", DUE, "2024-10-06T16:59:59.999Z"),
        ({"contact_info": {"contact_name": "Other"}}, "customer.name", "Nhan", "Other"),
        ({"payment_config": []}, "payment_config", [PAY], []),
        ({"discounts": []}, "discounts", [{"is_rate": True, "value": 10}], []),
    ],
)  # fmt: skip
def test_a_changed_field_is_named_with_both_values(change, field, bridge, finan):
    assert compare(BODY, TOTALS, finan_copy(**change)) == [Difference(field, bridge, finan)]


def test_an_item_changed_is_named_by_its_place():
    items = finan_copy()["items"]
    items[1] = {**items[1], "price": 499999.5}
    assert compare(BODY, TOTALS, finan_copy(items=items)) == [
        Difference("items[1].price", 500000, "499999.5")
    ]


def test_a_different_number_of_items_shows_both_lists():
    differences = compare(BODY, TOTALS, finan_copy(items=[]))
    assert fields(differences) == ["items"]
    assert len(differences[0].bridge) == 2 and differences[0].finan == []


def test_fields_finan_does_not_return_are_not_compared():
    bare = {"id": "x", "total_amount": 594000, "tax_amount": 60000}
    assert compare(BODY, TOTALS, bare) == []
    assert fields(compare(BODY, TOTALS, {"total_amount": 1})) == ["total_amount"]


def test_a_customer_field_as_customer_or_contact_info_and_empty_as_missing():
    copy = finan_copy(customer={"name": "Nhan", "email": "a@b.vn", "address": ""})
    assert compare(BODY, TOTALS, copy) == []  # no address on either side
    copy = finan_copy(customer={"email": "x@y.vn"})
    assert compare(BODY, TOTALS, copy) == [Difference("customer.email", "a@b.vn", "x@y.vn")]


def test_unknown_totals_are_not_compared_and_text_for_a_number_differs():
    assert compare(BODY, (None, None), finan_copy(total_amount=1)) == []
    assert compare(BODY, TOTALS, finan_copy(total_amount="n/a")) == [
        Difference("total_amount", 594000, "n/a")
    ]
