"""Finan's rules for an update-invoice body, and its arithmetic
(docs/contract/mapping.md#finan-arithmetic).

The Finan stand-in refuses a body the way Finan does (``validate_invoice_body``) and totals
it the way Finan does (``compute_totals``). This is written independently of the bridge's
mapping on purpose: it plays the other system, so a mistake in the bridge shows up as a
disagreement instead of being copied into both sides.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

TAX_TYPES = ("price_excluding_tax", "price_including_tax", "tax_not_applicable")

_FINAN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_FINAN_PHONE = re.compile(r"\+84[0-9]{9,10}")


class InvalidBody(Exception):
    """The body breaks one of Finan's rules; ``field`` names where."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, Decimal | float)


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _optional_list(body: Mapping[str, Any], field: str) -> list[Any]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidBody(field, "must be a list")
    return value


def _check_time(body: Mapping[str, Any], field: str) -> None:
    value = body.get(field)
    if not isinstance(value, str) or not _FINAN_TIME.fullmatch(value):
        raise InvalidBody(field, "must be a time like 2024-09-05T16:59:59.999Z")
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise InvalidBody(field, f"{value!r} is not a real date and time") from None


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidBody(where, "must be an object")
    if not isinstance(item.get("name"), str) or not item["name"].strip():
        raise InvalidBody(f"{where}.name", "is required")
    if not _is_number(item.get("price")) or item["price"] < 0:
        raise InvalidBody(f"{where}.price", "must be a number, not negative")
    if not _is_int(item.get("quantity")) or item["quantity"] < 1:
        raise InvalidBody(f"{where}.quantity", "must be an integer, at least 1")
    for t, tax in enumerate(_optional_list(item, "taxes")):
        at = f"{where}.taxes[{t}]"
        if not isinstance(tax, dict):
            raise InvalidBody(at, "must be an object")
        if not is_uuid(tax.get("tax_id")):
            raise InvalidBody(f"{at}.tax_id", "must be a UUID")
        if not _is_int(tax.get("rate")) or not 0 <= tax["rate"] <= 100:
            raise InvalidBody(f"{at}.rate", "must be an integer from 0 to 100")
        if "name" in tax and not isinstance(tax["name"], str):
            raise InvalidBody(f"{at}.name", "must be a string")


def _check_customer(customer: Any) -> None:
    if not isinstance(customer, dict):
        raise InvalidBody("customer", "is required and must be an object")
    if not isinstance(customer.get("name"), str) or not customer["name"].strip():
        raise InvalidBody("customer.name", "is required")
    phone = customer.get("phone")
    if phone not in (None, "") and (
        not isinstance(phone, str) or not _FINAN_PHONE.fullmatch(phone)
    ):
        raise InvalidBody("customer.phone", "must be in +84 form, e.g. +84912345678")
    email = customer.get("email")
    if email not in (None, "") and (not isinstance(email, str) or "@" not in email):
        raise InvalidBody("customer.email", "must be an email address")
    if not isinstance(customer.get("address", ""), str | None):
        raise InvalidBody("customer.address", "must be a string")


def validate_invoice_body(body: Any) -> None:
    """Raise ``InvalidBody`` naming the first field Finan would refuse."""
    if not isinstance(body, dict):
        raise InvalidBody("body", "must be a JSON object")
    _check_time(body, "value_at")
    _check_time(body, "due_at")
    if not isinstance(body.get("reference_code", ""), str | None):
        raise InvalidBody("reference_code", "must be a string")
    if body.get("tax_type") not in TAX_TYPES:
        raise InvalidBody("tax_type", f"must be one of {', '.join(TAX_TYPES)}")
    for i, item in enumerate(_optional_list(body, "items")):
        _check_item(item, f"items[{i}]")
    _check_customer(body.get("customer"))
    for i, config in enumerate(_optional_list(body, "payment_config")):
        if not is_uuid(config):
            raise InvalidBody(f"payment_config[{i}]", "must be a UUID")
    for i, discount in enumerate(_optional_list(body, "discounts")):
        at = f"discounts[{i}]"
        if not isinstance(discount, dict) or not isinstance(discount.get("is_rate"), bool):
            raise InvalidBody(f"{at}.is_rate", "must be true or false")
        if not _is_int(discount.get("value")) or discount["value"] < 0:
            raise InvalidBody(f"{at}.value", "must be an integer, not negative")
        if discount["is_rate"] and discount["value"] > 100:
            raise InvalidBody(f"{at}.value", "a rate discount can't exceed 100")


def compute_totals(body: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """Finan's ``(total_amount, tax_amount)`` for a valid body, in whole đồng.

    Taxes per item at the sum of its rates; discounts, in order, on the after-tax total;
    ``tax_amount`` before discounts; rounding (half up) only at the very end.
    """
    tax_type = body["tax_type"]
    total = Decimal(0)
    tax = Decimal(0)
    for item in body.get("items") or []:
        amount = Decimal(str(item["price"])) * item["quantity"]
        rate = Decimal(sum(t["rate"] for t in item.get("taxes") or []))
        if tax_type == "price_excluding_tax":
            total += amount * (100 + rate) / 100
            tax += amount * rate / 100
        elif tax_type == "price_including_tax":
            total += amount
            tax += amount * rate / (100 + rate)
        else:  # tax_not_applicable
            total += amount
    for discount in body.get("discounts") or []:
        value = Decimal(discount["value"])
        total = total * (100 - value) / 100 if discount["is_rate"] else total - value
    if total < 0:
        raise InvalidBody("discounts", "exceed the invoice total")
    whole = Decimal(1)
    return total.quantize(whole, ROUND_HALF_UP), tax.quantize(whole, ROUND_HALF_UP)
