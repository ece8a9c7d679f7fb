"""Seed data for the sandbox and the tests: a Vietnamese travel agency's invoices.

Each invoice is the bare object of Tourwell's ``GET /api/v1/invoices/{id}`` (the stand-in
wraps it in ``{"data": ...}``), written the way the CRM writes them: money as numbers,
strings with thousands separators and ``{original, forex}`` objects, dates in several
formats. Each one exercises a different part of the mapping (DESIGN.md section 6):

- 17 (HD017): VND, two services, rows at VAT 8 and 10, a row with a period of 2 nights.
- 18 (HD018): a fixed discount of 200,000 đồng.
- 19 (HD019): priced in USD; one row has only ``forex`` amounts, so the bridge converts.
- 20 (HD020): prices include VAT (each row's grand_total equals its amount_total).
- 21 (HD021): a real 0 % row and a row with no VAT at all (``vat: null``).

Row conventions: ``amount_total`` = unit price x quantity x period (a period of 0 counts as
1), ``grand_total`` = amount_total + VAT, or equal to it when the VAT is inside the price.
Every ``total_amount.base`` is exactly what Finan computes for the mapped body (its
arithmetic: VAT per row, then the discount on the after-tax sum), to the đồng;
``tests/test_samples.py`` recomputes each one.
"""

from __future__ import annotations

import copy
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

_CREATOR = {"id": 3, "name": "Nguyễn Thu Hà", "email": "ketoan@dulichsenvang.vn"}
_PROVIDER = {
    "id": 2,
    "name": "Finan",
    "type": "external",
    "callback": {"api_url": "http://127.0.0.1:8000/api/v1/invoices", "api_token": "********"},
}


def _vat(rate: int) -> dict[str, Any]:
    return {"value": rate, "type": "percent", "type_label": f"VAT {rate}%"}


def _row(
    stt: int,
    title: str,
    unit_price: dict[str, Any],
    quantity: int,
    vat: dict[str, Any] | None,
    amount_total: dict[str, Any],
    grand_total: dict[str, Any],
    *,
    period: int = 0,
    unit: str = "khách",
    currency: str = "VND",
) -> dict[str, Any]:
    return {
        "stt": stt,
        "object": {"title": title, "description": "", "note": None},
        "commission": {"partner": 0, "staff": 0, "total_partner": 0, "total_com_staff": 0},
        "unit_price": unit_price,
        "quantity": quantity,
        "period": period,
        "unit": unit,
        "vat": vat,
        "amount_total": amount_total,
        "grand_total": grand_total,
        "currency": currency,
    }


def _service(service_id: int, name: str, code: str, departure: str, rows: list) -> dict:
    return {
        "id": service_id,
        "service_info": {"id": service_id + 500, "name": name, "code": code},
        "item_info": {"name": name, "description": ""},
        "departure_date": departure,
        "return_date": "",
        "seat_number": "",
        "room_number": "",
        "pickup_location": "",
        "pickup_time": "",
        "visa_count": None,
        "passenger_note": "",
        "service_code_note": "",
        "financial_summary": {"total_amount": 0, "total_amount_cost": 0, "total_amount_profit": 0},
        "prices": rows,
    }


def _vnd(amount: Any) -> dict[str, Any]:
    return {"original": amount, "forex": 0}


def _invoice(
    invoice_id: int,
    *,
    created_at: str,
    total_amount: dict[str, Any],
    customer: dict[str, Any],
    services: list[dict[str, Any]],
    request_info: dict[str, Any],
    total_payment: dict[str, Any],
    total_discount: dict[str, Any] | None = None,
    currency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "code": f"HD{invoice_id:03d}",
        "created_at": created_at,
        "creator_info": _CREATOR,
        "total_amount": total_amount,
        "order_info": {
            "id": 900 + invoice_id,
            "code": f"DH{2600 + invoice_id}",
            "link_erp": f"https://demo.tourwell.net/orders/{900 + invoice_id}",
            "customer": customer,
            "company": [],
            "creator": {"id": 3, "name": "Nguyễn Thu Hà"},
            "source": {"id": 1, "name": "Website"},
            "sales_person": [{"id": 7, "name": "Lê Quang Huy"}],
            "services": services,
            "created_at": created_at,
            "order_at": created_at,
            "cancel_at": "",
            "currency": currency
            or {"foreign_currency": "VND", "base_currency": "VND", "exchange_rate": 1},
            "total_payment": total_payment,
            "total_paid": {"foreign": "0", "base": 0},
            "total_remaining": total_payment,
            "total_discount": total_discount or {"foreign": "0", "base": 0},
            "payment_state": "unpaid",
        },
        "request_info": {
            "service_summary": "",
            "note": "",
            "tax_code": "",
            "company_name": "",
            "company_address": "",
            "description": "",
            **request_info,
        },
        "export_info": {
            "export_code": None,
            "export_date": "",
            "export_note": None,
            "export_by": "",
        },
        "invoice_provider": _PROVIDER,
    }


def _hd017() -> dict[str, Any]:
    # 3,240,000 + 1,215,000 + 1,870,000 = 6,325,000 (VAT 500,000)
    return _invoice(
        17,
        created_at="2026-11-20 09:12:44",
        total_amount={"foreign": 0, "base": "6,325,000"},
        customer={
            "id": 41,
            "code": "KH0041",
            "name": "Phạm Văn Long",
            "phone": "0912 345 678",
            "link_erp": "",
        },
        services=[
            _service(
                301,
                "Tour Hạ Long 3N2Đ",
                "HL3N2D",
                "2026-12-05",
                [
                    _row(
                        1,
                        "Người lớn",
                        {"original": "1,500,000", "forex": 0},
                        2,
                        _vat(8),
                        _vnd("3,000,000"),
                        _vnd("3,240,000"),
                    ),
                    _row(
                        2,
                        "Trẻ em (5-11 tuổi)",
                        _vnd(1125000),
                        1,
                        _vat(8),
                        _vnd(1125000),
                        _vnd(1215000),
                    ),
                ],
            ),
            _service(
                302,
                "Khách sạn Mường Thanh Luxury Hạ Long",
                "KS-MTHL",
                "2026-12-05",
                [
                    _row(
                        1,
                        "Phòng Deluxe hướng biển",
                        _vnd("850000"),
                        1,
                        _vat(10),
                        _vnd("1,700,000"),
                        _vnd("1,870,000"),
                        period=2,
                        unit="phòng/đêm",
                    ),
                ],
            ),
        ],
        request_info={
            "request_at": "2026-11-20 09:30:00",
            "forward_email": "long.pv@gmail.com",
            "company_address": "25 Lý Thường Kiệt, Hoàn Kiếm, Hà Nội",
            "service_summary": "Tour Hạ Long 3N2Đ cho 3 khách",
        },
        total_payment={"foreign": "0", "base": 6325000},
    )


def _hd018() -> dict[str, Any]:
    # 10,778,400 + 4,070,000 = 14,848,400, less the 200,000 discount = 14,648,400
    return _invoice(
        18,
        created_at="2026-11-20 13:41:05",
        total_amount={"foreign": 0, "base": "14,648,400"},
        customer={
            "id": 57,
            "code": "KH0057",
            "name": "Đỗ Minh Tuấn",
            "phone": "0983.112.456",
            "link_erp": "",
        },
        services=[
            _service(
                311,
                "Tour Đà Nẵng - Hội An 4N3Đ",
                "DN-HA-4N3D",
                "2026-12-12",
                [
                    _row(
                        1,
                        "Người lớn",
                        {"original": "4,990,000", "forex": 0},
                        2,
                        _vat(8),
                        _vnd("9,980,000"),
                        _vnd("10,778,400"),
                    ),
                ],
            ),
            _service(
                312,
                "Vé máy bay Hà Nội - Đà Nẵng khứ hồi",
                "VMB-HAN-DAD",
                "2026-12-12",
                [
                    _row(
                        1,
                        "Người lớn",
                        _vnd("1,850,000"),
                        2,
                        _vat(10),
                        _vnd(3700000),
                        _vnd(4070000),
                        unit="vé",
                    ),
                ],
            ),
        ],
        request_info={
            "request_at": "20/11/2026 14:00",
            "company_name": "Công ty TNHH Phần mềm Sao Việt",
            "tax_code": "0109876543",
            "company_address": "Tầng 5, 18 Tam Trinh, Hai Bà Trưng, Hà Nội",
            "forward_email": "ketoan@saoviet.vn",
            "description": "Du lịch nghỉ dưỡng cuối năm",
        },
        total_payment={"foreign": "0", "base": 14648400},
        total_discount={"foreign": "0", "base": 200000},
    )


def _hd019() -> dict[str, Any]:
    # Exchange rate 25,400: 650 USD = 16,510,000; 149.50 USD = 3,797,300.
    # 33,020,000 x 1.1 + 3,797,300 x 1.1 = 36,322,000 + 4,177,030 = 40,499,030
    return _invoice(
        19,
        created_at="2026-11-21 10:02:17",
        total_amount={"foreign": 1594.45, "base": "40,499,030"},
        customer={
            "id": 63,
            "code": "KH0063",
            "name": "Nguyễn Hoàng Anh",
            "phone": "+84 903 456 789",
            "link_erp": "",
        },
        services=[
            _service(
                321,
                "Tour Singapore - Malaysia 5N4Đ",
                "SG-MY-5N4D",
                "2027-01-08",
                [
                    # Priced in USD only: the CRM left the VND amounts empty.
                    _row(
                        1,
                        "Người lớn",
                        {"original": None, "forex": 650},
                        2,
                        _vat(10),
                        {"original": None, "forex": 1300},
                        {"original": None, "forex": 1430},
                        currency="USD",
                    ),
                    _row(
                        2,
                        "Phụ thu phòng đơn",
                        {"original": "3,797,300", "forex": 149.5},
                        1,
                        _vat(10),
                        {"original": "3,797,300", "forex": 149.5},
                        {"original": "4,177,030", "forex": 164.45},
                        unit="phòng",
                        currency="USD",
                    ),
                ],
            ),
        ],
        request_info={
            "request_at": "2026-11-21T10:15:00+07:00",
            "company_name": "Công ty Cổ phần Thương mại Hoàng Anh",
            "tax_code": "0312345678",
            "company_address": "120 Nguyễn Thị Minh Khai, Quận 3, TP. Hồ Chí Minh",
            "forward_email": "finance@hoanganh.com.vn",
        },
        total_payment={"foreign": "1594.45", "base": 40499030},
        currency={"foreign_currency": "USD", "base_currency": "VND", "exchange_rate": 25400},
    )


def _hd020() -> dict[str, Any]:
    # VAT inside the prices: 10,800,000 + 1,900,000 + 710,000 = 13,410,000
    return _invoice(
        20,
        created_at="2026-11-21 08:40:00",
        total_amount={"foreign": 0, "base": "13,410,000"},
        customer={
            "id": 72,
            "code": "KH0072",
            "name": "Trần Thị Mai",
            "phone": "0912 345 678",
            "link_erp": "",
        },
        services=[
            _service(
                331,
                "Combo Phú Quốc 3N2Đ vé máy bay + khách sạn",
                "PQ-COMBO",
                "2026-12-20",
                [
                    _row(
                        1,
                        "Người lớn",
                        {"original": "5,400,000", "forex": 0},
                        2,
                        _vat(8),
                        _vnd("10,800,000"),
                        _vnd("10,800,000"),
                    )
                ],
            ),
            _service(
                332,
                "Vé VinWonders Phú Quốc",
                "VW-PQ",
                "2026-12-21",
                [
                    _row(
                        1,
                        "Người lớn",
                        _vnd(950000),
                        2,
                        _vat(10),
                        _vnd(1900000),
                        _vnd(1900000),
                        unit="vé",
                    ),
                    _row(
                        2,
                        "Trẻ em (1m - 1m4)",
                        _vnd("710,000"),
                        1,
                        _vat(10),
                        _vnd("710,000"),
                        _vnd("710,000"),
                        unit="vé",
                    ),
                ],
            ),
        ],
        request_info={
            "request_at": "2026-11-21T01:45:00Z",
            "forward_email": "mai.tt@yahoo.com",
            "note": "Khách thanh toán chuyển khoản",
        },
        total_payment={"foreign": "0", "base": 13410000},
    )


def _hd021() -> dict[str, Any]:
    # 34,344,000 (VAT 8) + 2,400,000 (VAT 0) + 350,000 (no VAT) = 37,094,000
    return _invoice(
        21,
        created_at="2026-11-22 16:05:31",
        total_amount={"foreign": 0, "base": "37,094,000"},
        customer={
            "id": 88,
            "code": "KH0088",
            "name": "Vũ Thị Lan",
            "phone": "0243 826 1234",
            "link_erp": "",
        },
        services=[
            _service(
                341,
                "Tour Hàn Quốc Seoul - Nami - Everland 5N4Đ",
                "KR-5N4D",
                "2027-03-28",
                [
                    _row(
                        1,
                        "Người lớn",
                        _vnd("15,900,000"),
                        2,
                        _vat(8),
                        _vnd("31,800,000"),
                        _vnd("34,344,000"),
                    )
                ],
            ),
            _service(
                342,
                "Dịch vụ visa Hàn Quốc",
                "VISA-KR",
                "2027-03-01",
                [
                    _row(
                        1,
                        "Phí lãnh sự",
                        _vnd("1,200,000"),
                        2,
                        _vat(0),
                        _vnd("2,400,000"),
                        _vnd("2,400,000"),
                        unit="hồ sơ",
                    ),
                ],
            ),
            _service(
                343,
                "Bảo hiểm du lịch quốc tế",
                "BH-QT",
                "2027-03-28",
                [
                    # 35,000 a day for 2 travellers over 5 days; insurance carries no VAT.
                    _row(
                        1,
                        "Gói cơ bản",
                        _vnd(35000),
                        2,
                        None,
                        _vnd("350,000"),
                        _vnd("350,000"),
                        period=5,
                        unit="khách/ngày",
                    ),
                ],
            ),
        ],
        request_info={
            "request_at": "22/11/2026",
            "company_name": "Công ty TNHH Kiến trúc Lan Vũ",
            "tax_code": "0105556667",
            "company_address": "8 Phan Chu Trinh, Hoàn Kiếm, Hà Nội",
            "forward_email": "lan.vu@kientruclanvu.vn",
        },
        total_payment={"foreign": "0", "base": 37094000},
    )


def sample_invoices() -> dict[int, dict[str, Any]]:
    """Fresh copies of the sample invoices, by CRM invoice id."""
    invoices = (_hd017(), _hd018(), _hd019(), _hd020(), _hd021())
    return {invoice["id"]: copy.deepcopy(invoice) for invoice in invoices}
