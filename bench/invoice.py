"""The invoice the bench issues: about 20 price rows at two VAT rates, written as the CRM
writes them (amount strings with thousands separators, ``{original, forex}`` objects, a
local date), and with a total that is exactly what Finan will compute, so every issue
passes the bridge's totals check.

The load generator needs the same body with a different invoice id per request: the body
is rendered once with ``ID_PLACEHOLDER`` as the id, and the wrk script puts the id in.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from typing import Any

ID_PLACEHOLDER = "__INVOICE_ID__"
SERVICES = 4
ROWS_PER_SERVICE = 5
VAT_RATES = (8, 10)


def _money(amount: int, form: int) -> Any:
    """One amount in one of the CRM's forms, chosen by ``form``."""
    if form % 3 == 0:
        return {"original": f"{amount:,}", "forex": 0}
    if form % 3 == 1:
        return {"original": amount, "forex": 0}
    return f"{amount:,}"


def bench_invoice(invoice_id: int = 1) -> dict[str, Any]:
    """A Tourwell invoice (the bare GET shape) with SERVICES x ROWS_PER_SERVICE rows."""
    services = []
    total = Decimal(0)
    tax = Decimal(0)
    for s in range(SERVICES):
        rows = []
        for r in range(ROWS_PER_SERVICE):
            n = s * ROWS_PER_SERVICE + r
            rate = VAT_RATES[n % len(VAT_RATES)]
            unit_price = 250_000 + 50_000 * n  # multiples of 50,000: VAT is whole đồng
            quantity = 1 + n % 3
            period = 2 if r == 4 else 0  # some rows are per night; 0 means "not per period"
            amount = unit_price * quantity * (period or 1)
            vat = amount * rate // 100
            total += amount + vat
            tax += vat
            rows.append(
                {
                    "stt": r + 1,
                    "object": {"title": f"Hạng mục {n + 1}", "description": "", "note": None},
                    "commission": {"partner": 0, "staff": 0},
                    "unit_price": _money(unit_price, n),
                    "quantity": quantity,
                    "period": period,
                    "unit": "khách",
                    "vat": {"value": rate, "type": "percent", "type_label": f"VAT {rate}%"},
                    "amount_total": _money(amount, n + 1),
                    "grand_total": _money(amount + vat, n + 2),
                    "currency": "VND",
                }
            )
        services.append(
            {
                "id": 300 + s,
                "service_info": {"id": 800 + s, "name": f"Dịch vụ {s + 1}", "code": f"DV{s + 1}"},
                "item_info": {"name": f"Dịch vụ {s + 1}", "description": ""},
                "departure_date": "2026-12-05",
                "prices": rows,
            }
        )
    return {
        "id": invoice_id,
        "code": "HD-BENCH",
        "created_at": "2026-11-20 09:12:44",
        "total_amount": {"foreign": 0, "base": f"{int(total):,}"},
        "order_info": {
            "id": 901,
            "code": "DH2601",
            "customer": {
                "id": 41,
                "code": "KH0041",
                "name": "Phạm Văn Long",
                "phone": "0912 345 678",
            },
            "services": services,
            "currency": {"foreign_currency": "VND", "base_currency": "VND", "exchange_rate": 1},
            "total_payment": {"foreign": "0", "base": int(total)},
            "total_discount": {"foreign": "0", "base": 0},
            "payment_state": "unpaid",
        },
        "request_info": {
            "request_at": "2026-11-20 09:30:00",
            "forward_email": "long.pv@gmail.com",
            "company_name": "",
            "company_address": "25 Lý Thường Kiệt, Hoàn Kiếm, Hà Nội",
            "service_summary": "Tour và khách sạn",
            "note": "",
            "tax_code": "",
            "description": "",
        },
        "export_info": {"export_code": None, "export_date": "", "export_by": ""},
        "invoice_provider": {"id": 2, "name": "Finan", "type": "external"},
    }


@functools.cache  # the same text every time; issue_body renders it for each request
def body_template() -> str:
    """The issue body as JSON text, ``"id": "__INVOICE_ID__"`` to be replaced (with quotes)."""
    text = json.dumps({"data": bench_invoice(0)}, ensure_ascii=False, separators=(",", ":"))
    marker = '"id":0,"code":"HD-BENCH"'
    assert text.count(marker) == 1
    return text.replace(marker, f'"id":"{ID_PLACEHOLDER}","code":"HD-BENCH"')


def issue_body(invoice_id: int) -> bytes:
    """The issue body for one invoice id, exactly as the load generator sends it."""
    return body_template().replace(f'"{ID_PLACEHOLDER}"', str(invoice_id)).encode("utf-8")
