"""Schemas for Finan's side: the update-invoice request body and the response envelope.

``encode_request`` produces the exact bytes that are signed, sent and fingerprinted, so
everything about them is deterministic: field order is the schema's declaration order,
JSON is compact, and money is a JSON number (an integer when whole).

The request schemas dump through ``BodySchema``, which reads a plain dict's keys directly
(marshmallow's public ``get_attribute`` hook); loading is marshmallow's own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, pre_load

from schemas.fields import ExcludeUnknownSchema, optional

# Finan's tax_type values: how each item's taxes relate to its price.
EXCLUDING = "price_excluding_tax"
INCLUDING = "price_including_tax"
NOT_APPLICABLE = "tax_not_applicable"
TAX_TYPES = (EXCLUDING, INCLUDING, NOT_APPLICABLE)


class FinanTime(fields.Field):
    """Dumps an aware datetime as Finan writes it: UTC, milliseconds, ``Z``."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time here is a bug upstream; guessing its zone would shift the due date.
            raise ValueError(f"{attr}: naive datetime {value!r}; the mapping gives aware UTC")
        text = value.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError("expected an ISO 8601 time string")
        try:
            moment = datetime.fromisoformat(value.strip())
            return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)
        except (ValueError, OverflowError):
            raise ValidationError(f"{value!r} is not an ISO 8601 time") from None


def json_number(amount: Decimal) -> int | float:
    """A finite amount as Finan's JSON takes it (its numbers are float64): ``int`` when
    whole (VND), exact; else the nearest ``float``."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


class JsonMoney(fields.Field):
    """A Decimal amount as a JSON number (``json_number``)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise ValueError(f"{attr}: {value!r} is not a finite amount")
        return json_number(number)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError("expected a number")
        try:
            number = Decimal(str(value))
        except ArithmeticError:
            raise ValidationError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise ValidationError(f"{value!r} is not a finite number")
        return number


# --- request: PUT /api/v1/invoice/update-invoice/{id} -------------------------------------


class BodySchema(Schema):
    """Base of the request schemas: they dump the mapping's plain dicts.

    marshmallow reads each value through ``utils.get_value`` (dotted paths, then ``obj[key]``,
    then ``getattr``); a key that is there is read directly here. Anything else, a missing
    key included, still goes that way.
    """

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if type(obj) is dict and attr in obj and "." not in attr:
            return obj[attr]
        return super().get_attribute(obj, attr, default)


class TaxSchema(BodySchema):
    name = fields.String(required=True)
    tax_id = fields.String(required=True)  # a uuid; validated once, in PROVIDER_TAX_IDS
    rate = fields.Integer(required=True)


class ItemSchema(BodySchema):
    name = fields.String(required=True)
    price = JsonMoney(required=True)
    quantity = fields.Integer(required=True)
    taxes = fields.List(fields.Nested(TaxSchema), required=True)


class CustomerSchema(BodySchema):
    name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    address = fields.String(allow_none=True)

    @post_dump
    def _omit_unknown_values(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Finan's body documents no nulls: a value we don't know is left out, not sent as null.
        return {key: value for key, value in data.items() if value is not None}


class DiscountSchema(BodySchema):
    is_rate = fields.Boolean(required=True)
    value = fields.Integer(required=True)


class UpdateInvoiceRequestSchema(BodySchema):
    value_at = FinanTime(required=True)
    due_at = FinanTime(required=True)
    reference_code = fields.String(required=True)
    tax_type = fields.String(required=True)
    items = fields.List(fields.Nested(ItemSchema), required=True)
    customer = fields.Nested(CustomerSchema, required=True)
    payment_config = fields.List(fields.String(), required=True)
    discounts = fields.List(fields.Nested(DiscountSchema), required=True)


# Built once and shared by every thread: a new instance would build its nested schemas
# again on first use, which costs more than the dump itself.
_REQUEST_SCHEMA = UpdateInvoiceRequestSchema()


def encode_request(body: dict[str, Any]) -> bytes:
    """The exact bytes to sign and send for a mapped body (compact UTF-8 JSON)."""
    dumped = _REQUEST_SCHEMA.dump(body)
    text = json.dumps(dumped, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def decode_request(raw: bytes | str) -> dict[str, Any]:
    """A body ``encode_request`` produced, back as Python values (e.g. a record's last body).

    ``encode_request(decode_request(encode_request(body)))`` gives the same bytes again.
    Raises ``ValueError`` when ``raw`` is not such a body: it is the bridge's own data.
    """
    try:
        return _REQUEST_SCHEMA.load(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"not an update-invoice body the bridge encoded: {exc}") from exc


# --- response envelope --------------------------------------------------------------------


class FinanSchema(ExcludeUnknownSchema):
    """Base of the response schemas: Finan may add fields; we read only what we use."""


class MessageSchema(FinanSchema):
    content = optional(fields.Raw)


class InvoiceDataSchema(FinanSchema):
    """Only the fields the bridge keeps are checked: a success must not turn into a failure
    because Finan changed the type of a field the bridge never reads."""

    id = optional(fields.String)
    order_code = optional(fields.String)
    system_code = optional(fields.String)
    total_amount = optional(JsonMoney)
    tax_amount = optional(JsonMoney)


class ResponseEnvelopeSchema(FinanSchema):
    message = optional(fields.Nested, MessageSchema)
    code = fields.Integer(load_default=None, allow_none=True, strict=True)
    request_id = optional(fields.String)
    data = optional(fields.Nested, InvoiceDataSchema)

    @pre_load
    def _wrap_plain_message(self, payload: Any, **kwargs: Any) -> Any:
        # Tolerate a plain-text "message" too: losing Finan's words would hide why it refused.
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            return {**payload, "message": {"content": payload["message"]}}
        return payload


def code_class(code: int) -> str:
    """``"success"``, ``"client"`` or ``"server"``: the HTTP class in the code's third digit.

    Anything that isn't a six-digit code counts as ``"server"``: retrying is the safe
    reading of an answer we can't understand.
    """
    if isinstance(code, bool) or not isinstance(code, int) or not 100000 <= code <= 999999:
        return "server"
    third_digit = str(code)[2]
    return {"2": "success", "4": "client"}.get(third_digit, "server")
