"""``bridge check``: are the settings valid, and do Redis, the CRM and Finan answer?

Each check makes one cheap call and turns what it sees into a line for a person: which
setting is wrong and how to tell. The CRM gets ``GET /api/v1/invoices/{id}`` with
``TOURWELL_API_TOKEN`` (a 404 means the token was accepted); Finan gets a signed
``GET /api/v1/invoice/detail/{uuid}`` (a 404 means the signature was accepted, when the same
request unsigned is refused: else the URL is not Finan's API). Nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests

from bridge.config import Settings
from bridge.integrations.finan.client import message_of
from bridge.integrations.finan.signing import FinanAuth
from bridge.integrations.http import TIMEOUT_SECONDS, new_session
from bridge.integrations.tourwell.client import crm_headers
from bridge.store.connection import connect

# Finan's detail of an invoice that does not exist: a signed GET that changes nothing.
FINAN_PROBE_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_redis(settings: Settings) -> CheckResult:
    where = "REDIS_URL" if settings.redis_url else f"the embedded Redis in {settings.data_dir}"
    try:
        connection = connect(settings)
        connection.ping()
        version = connection.info("server").get("redis_version", "?")
    except (redis.RedisError, OSError) as exc:
        return CheckResult(
            "Redis",
            False,
            f"can't reach {where} ({type(exc).__name__}); check REDIS_URL and that Redis runs",
        )
    return CheckResult("Redis", True, f"{where} answers (Redis {version})")


def check_crm(settings: Settings, invoice_id: int) -> CheckResult:
    url = f"{settings.tourwell_base_url}/api/v1/invoices/{invoice_id}"
    headers = crm_headers(settings.tourwell_api_token)
    try:
        response = new_session().get(url, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return _unreachable("CRM", "TOURWELL_BASE_URL", exc)
    status = response.status_code
    if status in (401, 403):
        return CheckResult(
            "CRM",
            False,
            f"the CRM refused TOURWELL_API_TOKEN (HTTP {status}); set it to the API account "
            "token from the CRM's settings",
        )
    if not _is_json(response):
        return CheckResult(
            "CRM",
            False,
            f"HTTP {status} without JSON: TOURWELL_BASE_URL does not look like Tourwell's Open "
            "API (it is the agency's host, e.g. https://demo.tourwell.net)",
        )
    if status in (200, 404):
        found = "found" if status == 200 else "not found, which is fine"
        return CheckResult(
            "CRM", True, f"token accepted (GET of invoice {invoice_id}: {status}, {found})"
        )
    if status == 429:
        return CheckResult("CRM", True, "token accepted, but the CRM's rate limit is reached now")
    return CheckResult("CRM", False, f"the CRM answered HTTP {status}; try again later")


def check_finan(settings: Settings) -> CheckResult:
    auth = FinanAuth(
        settings.provider_client_id, settings.provider_secret_key, settings.provider_base_url
    )
    url = f"{settings.provider_base_url}/api/v1/invoice/detail/{FINAN_PROBE_ID}"
    try:
        response = new_session().get(url, auth=auth, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return _unreachable("Finan", "PROVIDER_BASE_URL", exc)
    status = response.status_code
    said = _finan_message(response)
    if status in (401, 403):
        return CheckResult(
            "Finan",
            False,
            f"Finan refused the signature (HTTP {status}: {said}); check PROVIDER_CLIENT_ID "
            "and PROVIDER_SECRET_KEY (and that this machine's clock is right: Finan allows "
            "30 s)",
        )
    if status in (200, 404):
        # Only a Finan that checks signatures there proves the signature was checked: the
        # same request unsigned must be refused (a wrong base URL answers 404 either way).
        try:
            unsigned = new_session().get(url, timeout=TIMEOUT_SECONDS).status_code
        except requests.RequestException:
            unsigned = None
        if unsigned in (401, 403):
            return CheckResult(
                "Finan", True, f"signature accepted (a signed GET answered {status})"
            )
        return CheckResult(
            "Finan",
            False,
            f"HTTP {status} whether signed or not: PROVIDER_BASE_URL does not point at Finan's "
            "API (the bridge appends /api/v1/invoice/... to it)",
        )
    return CheckResult("Finan", False, f"Finan answered HTTP {status} ({said}); try again later")


def run_checks(
    settings: Settings, crm_invoice_id: int, each: Callable[[CheckResult], None] | None = None
) -> list[CheckResult]:
    results = []
    for check in (
        lambda: check_redis(settings),
        lambda: check_crm(settings, crm_invoice_id),
        lambda: check_finan(settings),
    ):
        result = check()
        results.append(result)
        if each is not None:
            each(result)
    return results


def _unreachable(name: str, setting: str, exc: requests.RequestException) -> CheckResult:
    detail = f"can't reach {setting} ({type(exc).__name__}); check the URL and the network"
    return CheckResult(name, False, detail)


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _finan_message(response: requests.Response) -> str:
    try:
        envelope = response.json()
    except ValueError:
        return "no JSON body"
    if not isinstance(envelope, dict):
        return "no JSON body"
    return message_of(envelope, default="no message")[:200]
