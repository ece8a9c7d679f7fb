"""The status page's three columns for an invoice (``/admin/invoice/<id>/compare``): what
the CRM says now (the body a re-sync would send: ``operations.preview``), what Finan last
accepted (the record's last body) and what Finan holds now (its ``GET detail``:
``finan_checks.check``), field by field as people read them, the cells that differ marked.

Asked on demand (a button on the invoice page): it costs a CRM call and a Finan call, and
sends nothing. A side that can't be had (the CRM unavailable, Finan never accepted the
invoice, Finan unavailable) is said so in its column; the others are still shown.

Finan's copy is read the way ``bridge.invoices.finan_comparison`` reads it (its field
names in ``snake_case``, its customer as ``customer`` or ``contact_info``); values are
compared as it compares them (amounts as decimals, times as instants, text stripped).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from bridge.errors import BridgeError
from bridge.invoices.finan_comparison import (
    _ABSENT,
    CUSTOMER_FIELDS,
    _first,
    _instant,
    _number,
    _snake_keys,
    _text,
)
from bridge.web.admin_page import (
    _LOGIN,
    _NOT_FOUND,
    bp,
    html,
    login_required,
    page,
    page_error,
    readable_body,
)
from bridge.web.http import services
from bridge.web.openapi import INVOICE_ID

# The sides, left to right; the one the others are compared with is Finan's last accepted
# body (the CRM's when Finan never accepted one).
SIDES = ("crm", "accepted", "finan")

# (key, label, kind): kind says how a value is shown and compared.
HEAD_FIELDS = (
    ("customer.name", lazy_gettext("Customer"), "text"),
    ("customer.address", lazy_gettext("Address"), "text"),
    ("customer.phone", lazy_gettext("Phone"), "text"),
    ("customer.email", lazy_gettext("Email"), "text"),
    ("reference_code", lazy_gettext("Reference"), "text"),
    ("value_at", lazy_gettext("Invoice date"), "time"),
    ("due_at", lazy_gettext("Due"), "time"),
)
ITEM_FIELDS = (
    ("name", lazy_gettext("Item"), "text"),
    ("quantity", lazy_gettext("Quantity"), "number"),
    ("price", lazy_gettext("Unit price"), "money"),
    ("taxes", lazy_gettext("VAT"), "text"),
    ("total", lazy_gettext("Line total"), "money"),
)
TOTAL_FIELDS = (
    ("total", lazy_gettext("Total"), "money"),
    ("tax", lazy_gettext("of which VAT"), "money"),
)
NORMALISE = {"text": _text, "time": _instant, "number": _number, "money": _number}


def body_fields(body: str | None) -> dict[str, Any] | None:
    """A Finan body (the CRM's now, or the last accepted) as ``key -> value``; None when
    there is none, or it is not an invoice to read (a cancel's body)."""
    readable = readable_body(body)
    if readable is None:
        return None
    fields: dict[str, Any] = {
        f"customer.{name}": readable["customer"].get(name) for name in CUSTOMER_FIELDS
    }
    fields.update(
        reference_code=readable["reference_code"],
        value_at=readable["value_at"],
        due_at=readable["due_at"],
        total=readable["total"],
        tax=readable["tax"],
    )
    for number, item in enumerate(readable["items"]):
        for name in ("name", "quantity", "price", "total"):
            fields[f"items.{number}.{name}"] = item[name]
        fields[f"items.{number}.taxes"] = ", ".join(item["taxes"]) or None
    return fields


def finan_fields(held: dict[str, Any]) -> dict[str, Any]:
    """Finan's copy (its detail's ``data``) as ``key -> value``: only what it carries."""
    held = _snake_keys(held)
    fields: dict[str, Any] = {}
    for name, places in CUSTOMER_FIELDS.items():
        value = _first(held, places)
        fields[f"customer.{name}"] = None if value is _ABSENT else value
    for name in ("reference_code", "value_at", "due_at"):
        fields[name] = held.get(name)
    fields["total"], fields["tax"] = held.get("total_amount"), held.get("tax_amount")
    excluding = held.get("tax_type") == "price_excluding_tax"
    items = held.get("items") if isinstance(held.get("items"), list) else []
    for number, item in enumerate(items):
        taxes = item.get("taxes") or []
        rate = sum((_number(tax.get("rate")) or Decimal(0) for tax in taxes), Decimal(0))
        price, quantity = _number(item.get("price")), _number(item.get("quantity"))
        total = None
        if isinstance(price, Decimal) and isinstance(quantity, Decimal):
            amount = price * quantity
            line = amount + (amount * rate / 100 if excluding else 0)
            total = line.quantize(Decimal(1), ROUND_HALF_UP)
        fields[f"items.{number}.name"] = item.get("name")
        fields[f"items.{number}.quantity"] = item.get("quantity")
        fields[f"items.{number}.price"] = item.get("price")
        fields[f"items.{number}.total"] = total
        fields[f"items.{number}.taxes"] = (
            ", ".join(f"{tax.get('name')} ({tax.get('rate')}%)" for tax in taxes) or None
        )
    return fields


def item_count(fields: dict[str, Any] | None) -> int:
    if not fields:
        return 0
    return len({key.split(".")[1] for key in fields if key.startswith("items.")})


def compared_rows(sides: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The table's rows: a label, a kind, each side's value and whether it differs from
    the baseline (Finan's last accepted body, else the CRM's)."""
    baseline = "accepted" if sides["accepted"] is not None else "crm"
    fields: list[tuple[str, Any, str]] = [*HEAD_FIELDS]
    items = max(item_count(side) for side in sides.values())
    for number in range(items):
        for name, label, kind in ITEM_FIELDS:
            shown = (
                _("Item %(num)s", num=number + 1)
                if name == "name"
                else _("%(what)s, item %(num)s", what=label, num=number + 1)
            )
            fields.append((f"items.{number}.{name}", shown, kind))
    fields += TOTAL_FIELDS
    rows = []
    for key, label, kind in fields:
        values = {side: (got or {}).get(key) for side, got in sides.items()}
        if all(values[side] is None for side in SIDES):
            continue
        normalise = NORMALISE[kind]
        base = sides[baseline]
        differs = {
            side: sides[side] is not None
            and base is not None
            and side != baseline
            and normalise(values[side]) != normalise(values[baseline])
            for side in SIDES
        }
        rows.append(
            {"key": key, "label": label, "kind": kind, "values": values, "differs": differs}
        )
    return rows


@bp.get("/invoice/<int:invoice_id>/compare", parameters=[INVOICE_ID])
@page(
    "comparePage",
    "The CRM now, what Finan last accepted and what Finan holds now, side by side",
    {
        "200": html(
            "The three sides, as people read them, the cells that differ marked (asked of the "
            "CRM and of Finan now; a side that can't be had says why). Sends nothing."
        ),
        "302": _LOGIN,
        "404": _NOT_FOUND,
    },
)
@login_required
def compare(invoice_id: int) -> Any:
    record = services().records.get(invoice_id)
    if record is None:
        return page_error(
            404, _("Invoice %(invoice_id)s is unknown to the bridge.", invoice_id=invoice_id)
        )
    raw: dict[str, Any] = {"crm": None, "accepted": record.last_body, "finan": None}
    problems: dict[str, str] = {}
    try:
        preview = services().operations.preview(invoice_id)
        raw["crm"] = preview.body
    except BridgeError as exc:
        problems["crm"] = exc.message
    finan_known = True
    if record.last_body is None:
        problems["accepted"] = _("Finan has never accepted a body for this invoice.")
        problems["finan"] = problems["accepted"]
    else:
        try:
            check = services().finan_checks.check(invoice_id)
            raw["finan"], finan_known = check.finan, check.finan is not None
        except BridgeError as exc:
            problems["finan"] = exc.message
    sides = {
        "crm": body_fields(raw["crm"]),
        "accepted": body_fields(raw["accepted"]),
        "finan": finan_fields(raw["finan"]) if raw["finan"] is not None else None,
    }
    if not finan_known:
        problems["finan"] = _("Nothing: Finan does not know this invoice.")
    for side in ("crm", "accepted"):
        if raw[side] is not None and sides[side] is None:
            problems[side] = _("Not an invoice to read (a cancel, or not mapped): see its JSON.")
    rows = compared_rows(sides)
    return render_template(
        "admin/compare.html",
        record=record,
        rows=rows,
        raw=raw,
        problems=problems,
        differing=sum(any(row["differs"].values()) for row in rows),
    )
