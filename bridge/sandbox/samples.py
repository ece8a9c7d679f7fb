"""Seed data for the sandbox and the tests: a Vietnamese travel agency's invoices.

The invoices are data, one per file in ``bridge/sandbox/invoices/<id>-<short-name>.json``
(package data, read with ``importlib.resources`` so regular installs find them too). Each
file is the bare object of Tourwell's ``GET /api/v1/invoices/{id}`` (the stand-in wraps it
in ``{"data": ...}``), written the way the CRM writes them: money as numbers, strings with
thousands separators and ``{original, forex}`` objects, dates in several formats. Each one
exercises a different part of the mapping (docs/contract/mapping.md#body):

- 17 (HD017): VND, two services, rows at VAT 8 and 10, a row with a period of 2 nights.
  3,240,000 + 1,215,000 + 1,870,000 = 6,325,000 (VAT 500,000).
- 18 (HD018): a fixed discount of 200,000 đồng.
  10,778,400 + 4,070,000 = 14,848,400, less the discount = 14,648,400.
- 19 (HD019): priced in USD; one row has only ``forex`` amounts (the CRM left the VND
  amounts empty), so the bridge converts. At 25,400: 650 USD = 16,510,000 and
  149.50 USD = 3,797,300; 33,020,000 x 1.1 + 3,797,300 x 1.1 = 40,499,030.
- 20 (HD020): prices include VAT (each row's grand_total equals its amount_total).
  10,800,000 + 1,900,000 + 710,000 = 13,410,000.
- 21 (HD021): a real 0 % row and a row with no VAT at all (``vat: null``: travel
  insurance, 35,000 a day for 2 travellers over 5 days).
  34,344,000 (VAT 8) + 2,400,000 (VAT 0) + 350,000 (no VAT) = 37,094,000.

Row conventions: ``amount_total`` = unit price x quantity x period (a period of 0 counts as
1), ``grand_total`` = amount_total + VAT, or equal to it when the VAT is inside the price.
Every ``total_amount.base`` is exactly what Finan computes for the mapped body (its
arithmetic: VAT per row, then the discount on the after-tax sum), to the đồng;
``tests/sandbox/test_samples.py`` recomputes each one.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

# Finan tax ids by VAT rate; the VAT 10 id and the payment config are those of Finan's own
# worked example, the others are fixed made-up ids.
SANDBOX_TAX_IDS: dict[int, str] = {
    10: "9497360a-9e04-4967-9ed1-7e29cf36ef7a",
    8: "bc9166e9-c748-4a32-86ec-1d7b85b21a24",
    5: "c1be6c01-fe3b-4075-aff0-f66da234f962",
    0: "05fb8051-e6a4-451b-b0cf-231095bfc889",
}
SANDBOX_PAYMENT_CONFIG: tuple[str, ...] = (
    "fcefa968-fe00-4d06-a431-53bd001e7f4b",
    "e7202c6f-096c-45e8-8159-67ff70727374",
)


def sandbox_provider_settings() -> dict[str, str]:
    """``PROVIDER_TAX_IDS`` and ``PROVIDER_PAYMENT_CONFIG`` naming the ids above, as text."""
    return {
        "PROVIDER_TAX_IDS": ",".join(f"{rate}={uuid}" for rate, uuid in SANDBOX_TAX_IDS.items()),
        "PROVIDER_PAYMENT_CONFIG": ",".join(SANDBOX_PAYMENT_CONFIG),
    }


# Finan's own worked example (reference page 004), as the JSON it documents: two items of
# 100,000 and 500,000 at VAT 10 and a 10 % discount, which Finan totals as 594,000 with
# 60,000 of tax. Read-only: copy before changing it.
FINAN_WORKED_EXAMPLE: dict[str, Any] = {
    "value_at": "2024-09-05T16:59:59.999Z",
    "due_at": "2024-10-05T16:59:59.999Z",
    "reference_code": "NhanTest",
    "tax_type": "price_excluding_tax",
    "items": [
        {
            "name": "GTX-4090",
            "price": 100000,
            "quantity": 1,
            "taxes": [{"name": "VAT 10", "tax_id": SANDBOX_TAX_IDS[10], "rate": 10}],
        },
        {
            "name": "GTX-4030",
            "price": 500000,
            "quantity": 1,
            "taxes": [{"name": "VAT 10", "tax_id": SANDBOX_TAX_IDS[10], "rate": 10}],
        },
    ],
    "customer": {"name": "NhanTr10abc"},
    "payment_config": [SANDBOX_PAYMENT_CONFIG[0]],
    "discounts": [{"is_rate": True, "value": 10}],
}


@functools.cache
def _invoice_texts() -> tuple[str, ...]:
    """The text of every ``invoices/*.json`` file of this package, read once per process."""
    folder = resources.files(__package__).joinpath("invoices")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    return tuple(entry.read_text(encoding="utf-8") for entry in files)


def sample_invoices() -> dict[int, dict[str, Any]]:
    """Fresh copies of the sample invoices, by CRM invoice id (in id order)."""
    invoices: dict[int, dict[str, Any]] = {}
    for text in _invoice_texts():
        invoice = json.loads(text)
        if invoice["id"] in invoices:
            raise ValueError(f"two sample invoice files have the id {invoice['id']}")
        invoices[invoice["id"]] = invoice
    return dict(sorted(invoices.items()))
