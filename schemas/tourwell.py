"""Schemas for the Tourwell CRM's side: its invoice (the GET shape) and its operation bodies.

The CRM is loose with types and evolves without notice, so:

- every schema ignores unknown fields (``CrmSchema``; marshmallow does not pass ``unknown``
  on to nested schemas, so each nested schema subclasses it);
- a price row is loaded about twenty times per invoice, so the row schemas declare only
  what the mapping reads: a field the bridge never uses is not checked either, like any
  unknown field, and can't refuse an invoice;
- every field but the invoice ``id`` is optional and nullable;
- money, numbers and dates arrive in several forms, and the custom fields below turn each
  of them into one Python type (``MoneyValue``, ``Decimal``, an aware UTC ``datetime``),
  so the mapping never sees a string where it wants a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields

from schemas import json_input
from schemas.fields import ExcludeUnknownSchema, optional

# A time the CRM sends without a zone is the agency's wall clock: Vietnam, no DST.
VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")

# Amount strings: a plain number, comma thousands groups (with an optional decimal part),
# or two or more dot groups ("40.000.000"). A single dot is a decimal point, so "40.000"
# is forty; grouping is checked so that "1.234,56" is refused instead of misread. Digits are
# ASCII only (re.ASCII): "١٢٣" or a full-width "１２３" is not something the CRM's forms send.
_PLAIN = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
_COMMA_GROUPS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)
_DOT_GROUPS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3}){2,}", re.ASCII)
# "1.500" is 1.5 to one reader and 1 500 to another (the dot is the thousands separator in
# Vietnamese). Both sides of the totals check would be misread alike, so refuse it.
_AMBIGUOUS_DOT = re.compile(r"[+-]?[1-9]\d{0,2}\.\d{3}", re.ASCII)  # "0.500" is never thousands
# Far above any invoice (a quadrillion đồng); keeps every product and sum of the mapping
# exact within Decimal's precision, and refuses absurd input instead of overflowing.
MAX_AMOUNT = Decimal(10) ** 15
# Dates outside these years are typos, and near the calendar's ends adding the due days
# would overflow.
MIN_YEAR, MAX_YEAR = 1970, 9000

_DATE_FORMATS = (
    "ISO 8601 (e.g. 2024-09-05T10:00:00+07:00), YYYY-MM-DD HH:MM[:SS], YYYY-MM-DD, "
    "DD/MM/YYYY[ HH:MM[:SS]]"
)
_DMY_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")


def parse_amount(value: Any) -> Decimal | None:
    """A CRM number (JSON number or string, maybe with thousands separators) as a Decimal.

    ``None`` and the empty string are "no amount". Raises ``ValueError`` for anything else.
    """
    number = _parse_number(value)
    if number is not None and abs(number) >= MAX_AMOUNT:
        raise ValueError(
            f"{json_input.shown(value)} is too large to be an amount (limit {MAX_AMOUNT:,})"
        )
    return number


def _parse_number(value: Any) -> Decimal | None:
    # The CRM's usual forms come first: a JSON integer, "40000000" and "40,000,000".
    if type(value) is int:
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():  # "²" and "١" are digits too: the regexes decide
            return Decimal(text)
        if _COMMA_GROUPS.fullmatch(text):  # has no dot group, so it is never ambiguous
            return Decimal(text.replace(",", ""))
        if not text:
            return None
        if _AMBIGUOUS_DOT.fullmatch(text):
            raise ValueError(
                f"{json_input.shown(value)} is ambiguous: write {text.replace('.', '')!r} or "
                f"{text.replace('.', ',')!r} for thousands, or drop the trailing zeros"
            )
        if _PLAIN.fullmatch(text):
            return Decimal(text)
        if _DOT_GROUPS.fullmatch(text):
            return Decimal(text.replace(".", ""))
    elif value is None:
        return None
    elif isinstance(value, bool):  # bool is an int subclass: True must not become 1 đồng
        raise ValueError(f"expected an amount, got {json_input.shown(value)}")
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float | Decimal):
        # str() first: Decimal(0.1) would carry the float's binary noise.
        number = Decimal(str(value)) if isinstance(value, float) else value
        if not number.is_finite():
            raise ValueError(f"expected a finite amount, got {json_input.shown(value)}")
        return number
    raise ValueError(
        f"{json_input.shown(value)} is not an amount (expected a number or a string like "
        "'40000000', '40,000,000', '40.000.000' or '1,234.5')"
    )


def _amount_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")  # "f": never "1E+3"


# --- the CRM's fields ---------------------------------------------------------------------


@dataclass(frozen=True)
class MoneyValue:
    """An amount in the base currency (VND) and/or the order's foreign currency."""

    base: Decimal | None = None
    foreign: Decimal | None = None


# The keys of a money object, in the order its errors name them.
_MONEY_KEYS = ("base", "foreign", "forex", "original")


class Money(fields.Field):
    """Loads every money form the CRM uses into a ``MoneyValue``.

    A number or a string is a base amount; ``{original, forex}`` (price rows) and
    ``{base, foreign}`` (invoice totals) carry both currencies.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if type(value) is dict or isinstance(value, Mapping):
            return self._from_object(value)
        try:
            base = parse_amount(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return None if base is None else MoneyValue(base=base)

    @staticmethod
    def _from_object(value: Mapping[str, Any]) -> MoneyValue:
        parsed: dict[str, Decimal | None] = {}
        problems: dict[str, list[str]] = {}
        for key in _MONEY_KEYS:
            if key in value:
                try:
                    parsed[key] = parse_amount(value[key])
                except ValueError as exc:
                    problems[key] = [str(exc)]
        if value and not parsed and not problems:
            raise ValidationError(
                "expected an amount or an object with {original, forex} or {base, foreign}"
            )
        if problems:
            raise ValidationError(problems)
        base = parsed.get("original")
        foreign = parsed.get("forex")
        return MoneyValue(
            base=base if base is not None else parsed.get("base"),
            foreign=foreign if foreign is not None else parsed.get("foreign"),
        )

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return {"base": _amount_text(value.base), "foreign": _amount_text(value.foreign)}


class CrmDecimal(fields.Field):
    """A number (quantity, period, rate, exchange rate) in any form ``parse_amount`` reads."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_amount(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return _amount_text(value)


class CrmString(fields.Field):
    """Text; whitespace-only is "not given" (None), and a JSON integer is taken as its digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # e.g. a phone or a code the CRM sent as a number
        if not isinstance(value, str):
            raise ValidationError(f"expected text, got {type(value).__name__}")
        return value.strip() or None


class CrmId(fields.Field):
    """A positive integer id, as a JSON integer or a string of digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = value.strip() if isinstance(value, str) else None
        if text and text.isascii() and text.isdigit():  # "²" is a digit to str.isdigit
            value = int(text)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValidationError(f"expected a positive integer id, got {json_input.shown(value)}")
        return value


def parse_crm_datetime(value: str) -> datetime | None:
    """A CRM date string as an aware UTC datetime; None when empty. Raises ``ValueError``."""
    text = value.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)  # also takes "YYYY-MM-DD HH:MM" and dates
    except ValueError:
        for pattern in _DMY_FORMATS:
            try:
                moment = datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
        else:
            raise ValueError(
                f"{json_input.shown(value)} is not a date; accepted: {_DATE_FORMATS}"
            ) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"{json_input.shown(value)} is outside the years {MIN_YEAR} to {MAX_YEAR}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VIETNAM_TIME)
    return moment.astimezone(UTC)


class CrmDateTime(fields.Field):
    """A CRM date or time (see ``parse_crm_datetime``) as an aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError(f"expected a date string; accepted: {_DATE_FORMATS}")
        try:
            return parse_crm_datetime(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat()


# --- the invoice, in the shape of GET /api/v1/invoices/{id} -------------------------------


class CrmSchema(ExcludeUnknownSchema):
    """Base of every CRM schema: the CRM adds fields over time, and that must not break us."""


class CustomerSchema(CrmSchema):
    id = optional(CrmId)
    code = optional(CrmString)
    name = optional(CrmString)
    phone = optional(CrmString)  # not in the published shape; used when present
    email = optional(CrmString)


class ServiceInfoSchema(CrmSchema):
    id = optional(CrmId)
    name = optional(CrmString)
    code = optional(CrmString)


# The row schemas: only what the mapping reads (item name, price, quantity, VAT and the
# two totals that tell whether prices include VAT). The CRM also sends, per row, ``unit``,
# ``currency``, ``commission``, ``object.description``, ``vat.type`` and ``vat.type_label``;
# they are ignored like unknown fields.


class PriceObjectSchema(CrmSchema):
    title = optional(CrmString)


class VatSchema(CrmSchema):
    value = optional(CrmDecimal)


class PriceSchema(CrmSchema):
    object = optional(fields.Nested, PriceObjectSchema)
    unit_price = optional(Money)
    quantity = optional(CrmDecimal)
    period = optional(CrmDecimal)
    vat = optional(fields.Nested, VatSchema)
    amount_total = optional(Money)
    grand_total = optional(Money)


class ServiceSchema(CrmSchema):
    id = optional(CrmId)
    service_info = optional(fields.Nested, ServiceInfoSchema)
    prices = optional(fields.List, fields.Nested(PriceSchema))


class CurrencySchema(CrmSchema):
    foreign_currency = optional(CrmString)
    base_currency = optional(CrmString)
    exchange_rate = optional(CrmDecimal)


class OrderInfoSchema(CrmSchema):
    id = optional(CrmId)
    code = optional(CrmString)
    customer = optional(fields.Nested, CustomerSchema)
    services = optional(fields.List, fields.Nested(ServiceSchema))
    currency = optional(fields.Nested, CurrencySchema)
    total_discount = optional(Money)
    total_payment = optional(Money)


class RequestInfoSchema(CrmSchema):
    request_at = optional(CrmDateTime)
    service_summary = optional(CrmString)
    note = optional(CrmString)
    tax_code = optional(CrmString)
    company_name = optional(CrmString)
    company_address = optional(CrmString)
    description = optional(CrmString)
    forward_email = optional(CrmString)


class InvoiceSchema(CrmSchema):
    id = CrmId(required=True)
    code = optional(CrmString)
    created_at = optional(CrmDateTime)
    total_amount = optional(Money)
    order_info = optional(fields.Nested, OrderInfoSchema)
    request_info = optional(fields.Nested, RequestInfoSchema)


# Built once: a schema instance builds its nested schemas on first use, which costs about
# as much as loading a whole invoice again. Loading keeps no state on the instance, so
# every thread shares it.
_INVOICE_SCHEMA = InvoiceSchema()


class InvoiceUnreadable(ValueError):
    """A CRM invoice that can't be read: ``message`` for a person, ``errors`` per field."""

    def __init__(self, message: str, errors: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


def load_invoice(payload: Any) -> dict[str, Any]:
    """Validate a CRM invoice, given as ``{"data": {...}}`` or as the bare object.

    Raises ``InvoiceUnreadable`` with marshmallow's per-field messages when it can't be read.
    """
    if isinstance(payload, Mapping) and "data" in payload and "id" not in payload:
        payload = payload["data"]
    if not isinstance(payload, Mapping):
        raise InvoiceUnreadable(
            'the invoice can\'t be read: expected a JSON object (the invoice, or {"data": ...})',
            errors={"_schema": [f"expected an object, got {json_input.kind(payload)}"]},
        )
    try:
        return _INVOICE_SCHEMA.load(payload)
    except ValidationError as exc:
        raise InvoiceUnreadable(
            "the invoice can't be read: some fields are missing or malformed",
            errors=exc.normalized_messages(),
        ) from exc


# --- operation bodies the CRM sends ------------------------------------------------------


class UpdateSchema(CrmSchema):
    """The body of Tourwell's ``PUT /api/v1/invoices/{id}``: flat, every field optional.

    Absent fields stay absent after load, so "not sent" and "sent" can be told apart.
    """

    total_amount = CrmDecimal(allow_none=True)  # text, maybe "40,000,000"
    description = CrmString(allow_none=True)
    note = CrmString(allow_none=True)
    service_summary = CrmString(allow_none=True)
    tax_code = CrmString(allow_none=True)
    company_name = CrmString(allow_none=True)
    company_address = CrmString(allow_none=True)
    forward_email = CrmString(allow_none=True)
    lookup_url = CrmString(allow_none=True)


class CancelSchema(CrmSchema):
    cancel_note = CrmString(allow_none=True, load_default=None)
