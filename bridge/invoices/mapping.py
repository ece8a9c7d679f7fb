"""Tourwell invoice -> Finan update-invoice body (docs/contract/mapping.md#body). Pure: no I/O.

The input is an invoice as ``schemas.tourwell.load_invoice`` returns it (money as
``MoneyValue``, numbers as ``Decimal``, times as aware UTC datetimes); the output is the
body as Python values for ``schemas.finan.encode_request``.

The mapping collects every problem it finds before refusing, so one 422 tells an operator
all that needs fixing, each under its field path (``order_info.services[0].prices[1]...``)
or the setting to change (``PROVIDER_TAX_IDS``). A body is only returned when the total
Finan will compute from it equals the CRM's own invoice total to the đồng.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import phonenumbers

from bridge.config import Settings
from bridge.errors import TotalsMismatch, Unprocessable
from schemas.finan import EXCLUDING, INCLUDING, NOT_APPLICABLE, TAX_TYPES, json_number
from schemas.tourwell import MoneyValue

# Update fields that replace the same field of request_info (section 6).
REQUEST_INFO_UPDATES = (
    "company_name",
    "company_address",
    "forward_email",
    "tax_code",
    "description",
    "note",
    "service_summary",
)

_DONG = Decimal(1)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class MappingConfig:
    tax_ids: Mapping[int, str]
    payment_config: tuple[str, ...] = ()
    due_days: int = 7

    @classmethod
    def from_settings(cls, settings: Settings) -> MappingConfig:
        return cls(
            tax_ids=dict(settings.provider_tax_ids),
            payment_config=tuple(settings.provider_payment_config),
            due_days=settings.provider_due_days,
        )


def round_dong(amount: Decimal) -> Decimal:
    """Whole đồng, half up: the one rounding step, applied to final figures only."""
    return amount.quantize(_DONG, rounding=ROUND_HALF_UP)


def apply_update(invoice: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The invoice with a loaded ``UpdateSchema`` body laid over it (a new dict).

    A field the update leaves out, null or empty keeps the invoice's value: the CRM's form
    sends blanks for fields it did not change, and a blank total can't be meant.
    ``lookup_url`` is the record's business, not the invoice's, so it is ignored here.
    """
    result = dict(invoice)
    changes = {k: update[k] for k in REQUEST_INFO_UPDATES if update.get(k) is not None}
    if changes:
        result["request_info"] = {**(invoice.get("request_info") or {}), **changes}
    if update.get("total_amount") is not None:
        total = invoice.get("total_amount") or MoneyValue()
        result["total_amount"] = dataclasses.replace(total, base=update["total_amount"])
    return result


class _Problems:
    """Collects mapping problems: ``errors`` maps a field path or setting to messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.errors: dict[str, list[str]] = {}

    def add(self, message: str, *names: str) -> None:
        self.messages.append(message)
        for name in names:
            self.errors.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        message = self.messages[0]
        if len(self.messages) > 1:
            message += f" (and {len(self.messages) - 1} more problems, see errors)"
        raise Unprocessable(f"the invoice can't be mapped: {message}", errors=self.errors)


def _in_vnd(money: MoneyValue | None, rate: Decimal | None) -> Decimal | None:
    """The base (VND) amount, else the foreign amount converted; None when neither works."""
    if money is None:
        return None
    if money.base is not None:
        return money.base
    # A forex of 0 is the CRM's filler in VND-only orders, not a price: never convert it.
    if money.foreign and rate is not None and rate > 0:
        return money.foreign * rate
    return None


def _item_name(service: Mapping[str, Any], row: Mapping[str, Any], number: int) -> str:
    info = service.get("service_info") or {}
    title = (row.get("object") or {}).get("title")
    parts = [part for part in (info.get("name") or info.get("code"), title) if part]
    return " - ".join(parts) or f"Item {number}"


def _only_foreign(money: MoneyValue | None) -> bool:
    return money is not None and money.base is None and bool(money.foreign)


def _converted(
    money: MoneyValue | None, rate: Decimal | None, field: str, problems: _Problems
) -> Decimal | None:
    """``_in_vnd``, noting a problem when a foreign-only amount has no rate to convert it."""
    amount = _in_vnd(money, rate)
    if amount is None and _only_foreign(money):
        problems.add(
            f"{field} has only a foreign amount and order_info.currency.exchange_rate is "
            "missing or 0",
            field,
            "order_info.currency.exchange_rate",
        )
    return amount


def _price(
    row: Mapping[str, Any], rate: Decimal | None, path: str, problems: _Problems
) -> Decimal | None:
    unit_price = row.get("unit_price")
    field = f"{path}.unit_price"
    price = _converted(unit_price, rate, field, problems)
    if price is None:
        if not _only_foreign(unit_price):
            problems.add(f"{field} has no amount", field)
        return None
    if price < 0:
        problems.add(f"{field} is {price:,}: Finan takes no negative prices", field)
        return None
    return as_finan_reads(price)


def as_finan_reads(price: Decimal) -> Decimal:
    """``price`` as Finan will read it from the body sent (``schemas.finan.json_number``:
    whole, exact; else the nearest float64). The totals are checked on that, not on digits
    that are never sent."""
    sent = json_number(price)
    return price if isinstance(sent, int) else Decimal(repr(sent))


def _quantity(row: Mapping[str, Any], path: str, problems: _Problems) -> int | None:
    quantity = row.get("quantity")
    period = row.get("period")
    # A missing quantity counts as one; a period of 0 or none means "not charged per period".
    product = (Decimal(1) if quantity is None else quantity) * (period or Decimal(1))
    if product != product.to_integral_value():
        problems.add(
            f"{path}: quantity × period is {product}, not a whole number (Finan needs one)",
            f"{path}.quantity",
        )
        return None
    if product < 1:
        problems.add(
            f"{path}: quantity × period is {product}; Finan needs at least 1",
            f"{path}.quantity",
        )
        return None
    return int(product)


def _taxes(
    row: Mapping[str, Any], config: MappingConfig, path: str, problems: _Problems
) -> tuple[list[dict[str, Any]], int | None]:
    """(taxes list, rate) for a row; rate is None when the row carries no VAT."""
    rate = (row.get("vat") or {}).get("value")
    if rate is None:
        return [], None
    field = f"{path}.vat.value"
    if rate != rate.to_integral_value():
        problems.add(f"{field} is {rate}: Finan takes whole-percent VAT rates only", field)
        return [], None
    rate = int(rate)
    tax_id = config.tax_ids.get(rate)
    if tax_id is None:
        problems.add(
            f"VAT rate {rate} at {field} has no Finan tax id: add {rate}=<uuid> to "
            "PROVIDER_TAX_IDS",
            "PROVIDER_TAX_IDS",
            field,
        )
        return [], rate
    return [{"name": f"VAT {rate}", "tax_id": tax_id, "rate": rate}], rate


def _same_amount(a: MoneyValue | None, b: MoneyValue | None, rate: Decimal | None) -> bool:
    left, right = _in_vnd(a, rate), _in_vnd(b, rate)
    return left is not None and left == right


def _tax_type(rows: list[tuple[int | None, Mapping[str, Any]]], rate: Decimal | None) -> str:
    taxed = [(vat, row) for vat, row in rows if vat is not None]
    if not taxed:
        return NOT_APPLICABLE
    # A 0 % row has grand_total == amount_total either way: it says nothing about whether
    # prices include VAT, so only positive rates decide. All-0 % stays the default.
    evidence = [row for vat, row in taxed if vat > 0]
    if evidence and all(
        _same_amount(row.get("grand_total"), row.get("amount_total"), rate) for row in evidence
    ):
        return INCLUDING
    return EXCLUDING


# Parsing a number is the costliest step of the mapping after the totals, and the same
# customer's invoices come again and again (updates, replays): remember recent answers.
@functools.lru_cache(maxsize=4096)
def _phone(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, "VN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def customer_name(invoice: Mapping[str, Any]) -> str | None:
    """The name Finan gets as the customer's: the company's, else the CRM customer's."""
    request = invoice.get("request_info") or {}
    crm_customer = (invoice.get("order_info") or {}).get("customer") or {}
    return request.get("company_name") or crm_customer.get("name") or None


def _customer(invoice: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    request = invoice.get("request_info") or {}
    crm_customer = (invoice.get("order_info") or {}).get("customer") or {}
    name = customer_name(invoice)
    if not name:
        problems.add(
            "no customer name: request_info.company_name and order_info.customer.name "
            "are both empty",
            "request_info.company_name",
            "order_info.customer.name",
        )
    return {
        "name": name,
        "phone": _phone(crm_customer.get("phone")),
        "email": request.get("forward_email"),
        "address": request.get("company_address"),
    }


def _discounts(
    order: Mapping[str, Any], rate: Decimal | None, problems: _Problems
) -> list[dict[str, Any]]:
    amount = _converted(order.get("total_discount"), rate, "order_info.total_discount", problems)
    if amount is None or amount <= 0:
        return []
    # Finan's discount value is whole đồng; a fractional discount that changes the total
    # is caught by the totals check.
    return [{"is_rate": False, "value": int(round_dong(amount))}]


def _check_totals(invoice: Mapping[str, Any], body: dict[str, Any]) -> None:
    crm_total = invoice.get("total_amount")
    if crm_total is None or crm_total.base is None:
        message = "the CRM invoice has no total_amount (base, VND) to check the mapped body against"
        raise Unprocessable(message, errors={"total_amount": [message]})
    expected = round_dong(crm_total.base)
    computed, _ = finan_totals(body)
    if computed != expected:
        message = (
            f"Finan would compute a total of {computed:,} VND but the CRM invoice "
            f"total_amount is {expected:,} VND"
        )
        raise TotalsMismatch(message, errors={"total_amount": [message]})


def map_invoice(
    invoice: dict[str, Any], config: MappingConfig, now: datetime | None = None
) -> dict[str, Any]:
    """The Finan update-invoice body for a loaded invoice, or ``Unprocessable``."""
    problems = _Problems()
    order = invoice.get("order_info") or {}
    exchange_rate = (order.get("currency") or {}).get("exchange_rate")

    items: list[dict[str, Any]] = []
    rows: list[tuple[int | None, Mapping[str, Any]]] = []
    for s, service in enumerate(order.get("services") or []):
        for p, row in enumerate(service.get("prices") or []):
            path = f"order_info.services[{s}].prices[{p}]"
            price = _price(row, exchange_rate, path, problems)
            quantity = _quantity(row, path, problems)
            taxes, vat = _taxes(row, config, path, problems)
            rows.append((vat, row))
            name = _item_name(service, row, len(items) + 1)
            items.append({"name": name, "price": price, "quantity": quantity, "taxes": taxes})
    customer = _customer(invoice, problems)
    discounts = _discounts(order, exchange_rate, problems)
    problems.raise_if_any()

    request = invoice.get("request_info") or {}
    value_at = request.get("request_at") or invoice.get("created_at") or now or datetime.now(UTC)
    if value_at.tzinfo is None:  # only ``now`` can be naive here; the schema gives UTC
        value_at = value_at.replace(tzinfo=UTC)
    value_at = value_at.astimezone(UTC)
    body = {
        "value_at": value_at,
        "due_at": value_at + timedelta(days=config.due_days),
        "reference_code": invoice.get("code") or f"TW-{invoice['id']}",
        "tax_type": _tax_type(rows, exchange_rate),
        "items": items,
        "customer": customer,
        "payment_config": list(config.payment_config),
        "discounts": discounts,
    }
    _check_totals(invoice, body)
    return body


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def finan_totals(body: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """(total_amount, tax_amount) as Finan computes them for ``body``, in whole đồng.

    Finan's observed arithmetic (docs/contract/mapping.md#finan-arithmetic): VAT per item
    according to ``tax_type``, discounts then applied in order to the after-tax sum, ``tax_amount``
    taken before discounts. Rounding happens once, at the end.
    """
    tax_type = body.get("tax_type")
    if tax_type not in TAX_TYPES:
        raise ValueError(f"unknown tax_type {tax_type!r}")
    with localcontext() as exact:
        # Amounts are capped at 10**15 (schemas.tourwell.MAX_AMOUNT); with this precision
        # no product or sum of them is ever rounded before the final whole-đồng rounding.
        exact.prec = 60
        return _totals(body, tax_type)


def _totals(body: Mapping[str, Any], tax_type: str) -> tuple[Decimal, Decimal]:
    total = Decimal(0)
    tax = Decimal(0)
    for item in body.get("items") or []:
        amount = _decimal(item["price"]) * _decimal(item["quantity"])
        rate = sum((_decimal(t["rate"]) for t in item.get("taxes") or []), Decimal(0))
        if tax_type == EXCLUDING:
            item_tax = amount * rate / _HUNDRED
            total += amount + item_tax
        elif tax_type == INCLUDING:
            item_tax = amount * rate / (_HUNDRED + rate)
            total += amount
        else:
            item_tax = Decimal(0)
            total += amount
        tax += item_tax
    for discount in body.get("discounts") or []:
        value = _decimal(discount["value"])
        total = total * (1 - value / _HUNDRED) if discount["is_rate"] else total - value
    return round_dong(total), round_dong(tax)


def cancel_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` that leaves nothing to collect: Finan's legacy API has no cancel."""
    cancelled = copy.deepcopy(dict(body))
    cancelled.update(items=[], payment_config=[], discounts=[], tax_type=NOT_APPLICABLE)
    return cancelled
