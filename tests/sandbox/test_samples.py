"""The sample invoices are internally consistent and total what Finan will compute.

The recomputation here reads the CRM's values itself (docs/contract/mapping.md#body) and applies
Finan's arithmetic (section 2) itself, independently of the bridge's mapping and of the
Finan stand-in, so a sample with a wrong figure can't hide behind shared code.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

import pytest

from bridge.errors import Unprocessable
from bridge.sandbox.finan_rules import compute_totals
from bridge.sandbox.samples import SANDBOX_PAYMENT_CONFIG, SANDBOX_TAX_IDS, sample_invoices
from schemas.tourwell import load_invoice

SAMPLES = sample_invoices()
# The invoice files, as the package ships them (bridge/sandbox/invoices/<id>-<name>.json).
INVOICE_FOLDER = resources.files("bridge.sandbox").joinpath("invoices")
INVOICE_FILES = sorted(INVOICE_FOLDER.iterdir(), key=lambda entry: entry.name)
FILE_NAME = re.compile(r"(?P<id>[1-9]\d*)-[a-z0-9]+(?:-[a-z0-9]+)*\.json")


def _money(value: Any, exchange_rate: Decimal) -> Decimal:
    """A CRM amount in VND: a number, a "1,500,000" string or an {original, forex} object."""
    if isinstance(value, dict):
        if value.get("original") not in (None, ""):
            return _money(value["original"], exchange_rate)
        return Decimal(str(value["forex"])) * exchange_rate
    return Decimal(str(value).replace(",", ""))


def _rows(invoice: dict) -> list[dict]:
    return [row for service in invoice["order_info"]["services"] for row in service["prices"]]


def _rate(row: dict) -> int | None:
    vat = row.get("vat")
    return None if vat is None or vat.get("value") is None else int(vat["value"])


def _prices_include_vat(invoice: dict) -> bool:
    """Whether every row with a VAT rate has its VAT inside the price (grand = amount)."""
    exchange_rate = Decimal(str(invoice["order_info"]["currency"]["exchange_rate"]))
    taxed = [row for row in _rows(invoice) if _rate(row) is not None]
    return bool(taxed) and all(
        _money(row["grand_total"], exchange_rate) == _money(row["amount_total"], exchange_rate)
        for row in taxed
    )


def _expected_finan_total(invoice: dict) -> Decimal:
    exchange_rate = Decimal(str(invoice["order_info"]["currency"]["exchange_rate"]))
    including = _prices_include_vat(invoice)
    total = Decimal(0)
    for row in _rows(invoice):
        amount = _money(row["unit_price"], exchange_rate) * row["quantity"] * (row["period"] or 1)
        rate = _rate(row) or 0
        total += amount if including else amount * (100 + rate) / 100
    total -= _money(invoice["order_info"]["total_discount"]["base"], exchange_rate)
    return total.quantize(Decimal(1), ROUND_HALF_UP)


@pytest.mark.parametrize("invoice_id", sorted(SAMPLES))
def test_total_amount_is_what_finan_will_compute(invoice_id: int) -> None:
    invoice = SAMPLES[invoice_id]
    assert _money(invoice["total_amount"]["base"], Decimal(1)) == _expected_finan_total(invoice)


@pytest.mark.parametrize("invoice_id", sorted(SAMPLES))
def test_rows_follow_the_crm_conventions(invoice_id: int) -> None:
    invoice = SAMPLES[invoice_id]
    exchange_rate = Decimal(str(invoice["order_info"]["currency"]["exchange_rate"]))
    for row in _rows(invoice):
        amount = _money(row["unit_price"], exchange_rate) * row["quantity"] * (row["period"] or 1)
        grand = _money(row["grand_total"], exchange_rate)
        assert _money(row["amount_total"], exchange_rate) == amount, row["object"]["title"]
        rate = _rate(row) or 0
        assert grand in (amount, amount * (100 + rate) / 100), row["object"]["title"]


@pytest.mark.parametrize("invoice_id", sorted(SAMPLES))
def test_the_finan_standin_agrees(invoice_id: int) -> None:
    # A hand-mapped body, just enough for compute_totals: the stand-in's arithmetic and the
    # one above must agree on every sample.
    invoice = SAMPLES[invoice_id]
    exchange_rate = Decimal(str(invoice["order_info"]["currency"]["exchange_rate"]))
    including = _prices_include_vat(invoice)
    body = {
        "tax_type": "price_including_tax" if including else "price_excluding_tax",
        "items": [
            {
                "price": _money(row["unit_price"], exchange_rate),
                "quantity": row["quantity"] * (row["period"] or 1),
                "taxes": [] if _rate(row) is None else [{"rate": _rate(row)}],
            }
            for row in _rows(invoice)
        ],
        "discounts": [
            {"is_rate": False, "value": int(invoice["order_info"]["total_discount"]["base"])}
        ],
    }
    total, _tax = compute_totals(body)
    assert total == _money(invoice["total_amount"]["base"], Decimal(1))


def test_ids_and_codes() -> None:
    assert len(SAMPLES) >= 4
    for invoice_id, invoice in SAMPLES.items():
        assert invoice["id"] == invoice_id
        assert re.fullmatch(r"HD0\d\d", invoice["code"])
        assert int(invoice["code"][2:]) == invoice_id
    assert len({invoice["code"] for invoice in SAMPLES.values()}) == len(SAMPLES)


def test_the_samples_cover_the_cases_the_mapping_must_handle() -> None:
    rows = {invoice_id: _rows(invoice) for invoice_id, invoice in SAMPLES.items()}
    rates = {_rate(row) for all_rows in rows.values() for row in all_rows}
    assert {10, 8, 0, None} <= rates
    assert any(inv["order_info"]["total_discount"]["base"] for inv in SAMPLES.values())
    assert any(
        inv["order_info"]["currency"]["foreign_currency"] == "USD"
        and any(row["unit_price"]["original"] is None for row in rows[inv["id"]])
        for inv in SAMPLES.values()
    )
    assert any(
        all(row["grand_total"] == row["amount_total"] for row in all_rows if _rate(row))
        for all_rows in rows.values()
    )


def test_every_rate_has_a_tax_id_and_the_ids_are_uuids() -> None:
    used = {_rate(row) for inv in SAMPLES.values() for row in _rows(inv)} - {None}
    assert used <= set(SANDBOX_TAX_IDS)
    for value in (*SANDBOX_TAX_IDS.values(), *SANDBOX_PAYMENT_CONFIG):
        assert str(uuid.UUID(value)) == value
    assert len(set(SANDBOX_TAX_IDS.values())) == len(SANDBOX_TAX_IDS)


def test_sample_invoices_returns_fresh_copies() -> None:
    first = sample_invoices()
    first[17]["request_info"]["note"] = "changed"
    first[17]["invoice_provider"]["name"] = "changed"
    assert sample_invoices()[17]["request_info"]["note"] == ""
    assert sample_invoices()[17]["invoice_provider"]["name"] == "Finan"


def test_the_invoice_folder_holds_only_invoice_files() -> None:
    assert INVOICE_FILES, "no invoice files found in bridge/sandbox/invoices"
    for entry in INVOICE_FILES:
        assert entry.is_file() and FILE_NAME.fullmatch(entry.name), entry.name


@pytest.mark.parametrize("entry", INVOICE_FILES, ids=lambda entry: entry.name)
def test_each_invoice_file_loads_and_validates(entry: Any) -> None:
    invoice = json.loads(entry.read_text(encoding="utf-8"))
    assert isinstance(invoice, dict), "one invoice object per file, not wrapped in {data: ...}"
    try:
        loaded = load_invoice(invoice)
    except Unprocessable as exc:
        pytest.fail(f"{entry.name} isn't a valid CRM invoice: {exc.errors}")
    match = FILE_NAME.fullmatch(entry.name)
    assert match, entry.name
    assert invoice["id"] == loaded["id"] == int(match["id"]), entry.name


def test_invoice_ids_are_unique_and_all_loaded() -> None:
    ids = [int(FILE_NAME.fullmatch(entry.name)["id"]) for entry in INVOICE_FILES]
    assert len(ids) == len(set(ids)), sorted(ids)
    assert list(SAMPLES) == sorted(ids)
