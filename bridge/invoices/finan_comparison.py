"""What Finan holds, compared with the last body Finan accepted: pure, no I/O.

``compare`` takes the bridge's side (the last accepted update-invoice body, and the totals
Finan answered when it accepted it) and Finan's side (the ``data`` of its ``GET detail``,
or None when Finan does not know the invoice), and lists the fields that differ.

Compared meaningfully, not as text: money and numbers as ``Decimal`` (``594000``,
``594000.0`` and ``"594000"`` are one amount), times as instants (``...T16:59:59.999Z`` is
``...T23:59:59.999+07:00``), uuids in any case, text stripped (empty and missing are one),
payment configs as a set. Finan's field names are normalised first (``camelCase`` to
``snake_case``), and its customer may come as ``customer`` or as the ``contact_info`` of
its answers (``contact_name``, ``contact_number``).

Finan's detail format beyond its update answer is not documented (DESIGN.md section 2
names the endpoint and ``payment_due_amount``), so a field is compared only when Finan's
copy carries it: a field Finan does not return says nothing either way. Fields Finan adds
of its own (ids, codes, ``payment_due_amount``, which payments change) are not compared.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

UNKNOWN_TO_FINAN = "invoice"  # the field of the one difference when Finan has no copy

# canonical name -> where Finan may keep it (after snake_case), first found wins
CUSTOMER_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "name": (("customer", "name"), ("contact_info", "contact_name")),
    "phone": (("customer", "phone"), ("contact_info", "contact_number"), ("contact_info", "phone")),
    "email": (("customer", "email"), ("contact_info", "contact_email"), ("contact_info", "email")),
    "address": (("customer", "address"), ("contact_info", "contact_address")),
}


@dataclass(frozen=True)
class Difference:
    field: str  # e.g. total_amount, customer.name, items[1].price, items
    bridge: Any  # the bridge's value, JSON-ready (None: none)
    finan: Any  # Finan's value, JSON-ready (None: none)


def compare(
    accepted: Mapping[str, Any],
    totals: tuple[Decimal | None, Decimal | None],
    finan: Mapping[str, Any] | None,
) -> list[Difference]:
    """The differences between Finan's copy ``finan`` and the body Finan accepted
    (``accepted``, as decoded from the record) with the ``(total_amount, tax_amount)`` it
    answered then. None for ``finan``: Finan does not know the invoice, one difference."""
    if finan is None:
        return [Difference(UNKNOWN_TO_FINAN, "accepted by Finan", None)]
    held = _snake_keys(finan)
    found: list[Difference] = []

    def check(name: str, ours: Any, theirs: Any, norm: Callable[[Any], Any]) -> None:
        a, b = norm(ours), norm(theirs)
        if a != b:
            found.append(Difference(name, _shown(a), _shown(b)))

    for name, norm in (
        ("reference_code", _text),
        ("tax_type", _text),
        ("value_at", _instant),
        ("due_at", _instant),
    ):
        if name in held:
            check(name, accepted.get(name), held[name], norm)
    for name, ours in zip(("total_amount", "tax_amount"), totals, strict=True):
        if name in held and ours is not None:
            check(name, ours, held[name], _number)

    customer = accepted.get("customer") or {}
    for name, places in CUSTOMER_FIELDS.items():
        theirs = _first(held, places)
        if theirs is not _ABSENT:
            check(f"customer.{name}", customer.get(name), theirs, _text)

    if "payment_config" in held:
        check("payment_config", accepted.get("payment_config"), held["payment_config"], _ids)
    if "discounts" in held:
        check("discounts", accepted.get("discounts"), held["discounts"], _discounts)
    if "items" in held:
        found += _item_differences(accepted.get("items") or [], held["items"])
    return found


def _item_differences(ours: list[Any], theirs: Any) -> list[Difference]:
    if not isinstance(theirs, list):
        theirs = []
    if len(ours) != len(theirs):
        return [
            Difference(
                "items",
                _shown([_item(item) for item in ours]),
                _shown([_item(item) for item in theirs]),
            )
        ]
    found = []
    for number, (mine, held) in enumerate(zip(ours, theirs, strict=True)):
        mine, held = _item(mine), _item(held)
        for name in ("name", "price", "quantity", "taxes"):
            if name in held and mine.get(name) != held[name]:
                found.append(
                    Difference(
                        f"items[{number}].{name}", _shown(mine.get(name)), _shown(held[name])
                    )
                )
    return found


# --- normalising one value ---

_ABSENT = object()
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_CAMEL.sub(r"_\1", str(k)).lower(): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _first(held: Mapping[str, Any], places: tuple[tuple[str, str], ...]) -> Any:
    for parent, name in places:
        part = held.get(parent)
        if isinstance(part, Mapping) and name in part:
            return part[name]
    return _ABSENT


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> Decimal | str | None:
    """A number as a Decimal (from a number or its text); text that is none stays text,
    so it differs from every number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return str(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return str(value)
    return number if number.is_finite() else str(value)


def _instant(value: Any) -> datetime | str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:  # Finan writes its times with a zone; without one, UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _uuid(value: Any) -> str | None:
    if isinstance(value, Mapping):  # a config object rather than its id
        value = value.get("id")
    text = _text(value)
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _ids(value: Any) -> list[str]:
    return sorted({u for u in (_uuid(v) for v in value or []) if u is not None})


def _flag(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text, text)


def _discounts(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [
        {"is_rate": _flag(d.get("is_rate")), "value": _number(d.get("value"))}
        if isinstance(d, Mapping)
        else {"value": _number(d)}
        for d in value
    ]


def _taxes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    taxes = [
        {
            "name": _text(t.get("name")),
            "tax_id": _uuid(t.get("tax_id")),
            "rate": _number(t.get("rate")),
        }
        for t in value
        if isinstance(t, Mapping)
    ]
    return sorted(taxes, key=lambda t: (str(t["tax_id"]), str(t["rate"]), str(t["name"])))


def _item(value: Any) -> dict[str, Any]:
    """An item's compared fields, normalised; only those it carries."""
    if not isinstance(value, Mapping):
        return {"name": _text(value)}
    item: dict[str, Any] = {}
    for name, norm in (("name", _text), ("price", _number), ("quantity", _number)):
        if name in value:
            item[name] = norm(value[name])
    if "taxes" in value:
        item["taxes"] = _taxes(value["taxes"])
    return item


def _shown(value: Any) -> Any:
    """A normalised value as JSON shows it: whole amounts as integers, others as text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value.normalize())
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value
