"""``bridge check``: are the settings valid, and do Redis, the CRM and Finan answer?

Each check makes cheap calls and turns what it sees into a line for a person: which
setting is wrong and how to tell. A check recognises the system it reached by that
system's own answer, so a URL pointing at the wrong system is named as the URL, and the
credentials are blamed only when the right system refuses them:

- the CRM: ``GET /api/v1/invoices/{id}`` with ``TOURWELL_API_TOKEN``. Tourwell answers an
  invoice as ``{"data": {...}}`` and everything else in its envelope
  ``{"success": ..., "message": "..."}``. The token counts as accepted (200, or 404 for an
  invoice it does not have) only when the same request without a token is refused (401/403
  in Tourwell's envelope): a server that answers either way is not Tourwell's Open API.
- Finan: a signed ``GET /api/v1/invoice/detail/{uuid}`` of an invoice that does not exist.
  Finan answers in its envelope ``{"message": {"content": ...}, "code": <six digits>,
  "request_id": ..., "data": ...}``; a 404 means the signature was accepted when the same
  request unsigned is refused (401/403, Finan's envelope).

An answer in the other system's envelope names the URL setting (``TOURWELL_BASE_URL`` or
``PROVIDER_BASE_URL``), never the token or the secret. Nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import requests
from marshmallow import ValidationError

from bridge.config import Settings
from bridge.integrations.finan.client import message_of
from bridge.integrations.finan.signing import FinanAuth
from bridge.integrations.http import TIMEOUT_SECONDS, new_session
from bridge.integrations.tourwell.client import crm_headers
from bridge.store.connection import connect
from schemas.finan import ResponseEnvelopeSchema, code_class

# Finan's detail of an invoice that does not exist: a signed GET that changes nothing.
FINAN_PROBE_ID = "00000000-0000-4000-8000-000000000000"

_finan_envelope = ResponseEnvelopeSchema()

# How this bridge's own 401 answers end their WWW-Authenticate header (bridge/web).
BRIDGE_REALM = 'realm="bridge"'

CRM_URL_HINT = (
    "set TOURWELL_BASE_URL to the agency's Tourwell host, e.g. https://demo.tourwell.net "
    "(it also roots every Finan invoice id: fix it before the first invoice)"
)
FINAN_URL_HINT = (
    "set PROVIDER_BASE_URL to Finan's API base, with its path prefix if any "
    "(the bridge appends /api/v1/invoice/...)"
)


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


# --- whose answer is it? ---


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read once: its status, its JSON body (``None`` when it has none)
    and whose envelope that body is in."""

    status: int
    body: Any
    system: str  # "tourwell", "finan", "bridge" or "unknown"

    @classmethod
    def of(cls, response: requests.Response) -> Answer:
        try:
            body = response.json()
        except ValueError:
            body = None
        system = _system_of(body)
        # The bridge answers in Tourwell's envelope too; its refusals name its realm.
        if system == "tourwell" and BRIDGE_REALM in response.headers.get("WWW-Authenticate", ""):
            system = "bridge"
        return cls(response.status_code, body, system)

    @property
    def said(self) -> str:
        """The answer's own words, for a person (cut short)."""
        if not isinstance(self.body, dict):
            return "no JSON body" if self.body is None else "JSON that is not an object"
        if self.system == "finan":
            code = self.body.get("code")
            return f"{message_of(self.body, default='no message')[:200]!r}, code {code}"
        message = self.body.get("message")
        return repr(message[:200]) if isinstance(message, str) and message else "no message"

    def is_tourwell_invoice(self, invoice_id: int) -> bool:
        """Tourwell's ``GET /api/v1/invoices/{id}``: ``{"data": {the invoice}}``."""
        if self.status != 200 or self.system == "finan" or not isinstance(self.body, dict):
            return False
        data = self.body.get("data")
        return isinstance(data, dict) and data.get("id", invoice_id) == invoice_id


def _system_of(body: Any) -> str:
    if is_finan_envelope(body):
        return "finan"
    if is_tourwell_envelope(body):
        return "tourwell"
    return "unknown"


def is_finan_envelope(body: Any) -> bool:
    """Finan's envelope: a six-digit ``code`` and a ``message`` (``{"content": ...}``), and
    none of Tourwell's ``success``."""
    if not isinstance(body, dict) or "success" in body or "message" not in body:
        return False
    code = body.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or not 100000 <= code <= 999999:
        return False
    try:
        _finan_envelope.load({k: body[k] for k in ("message", "code", "request_id") if k in body})
    except ValidationError:
        return False
    return True


def is_tourwell_envelope(body: Any) -> bool:
    """Tourwell's envelope: ``{"success": <bool>, "message": "...", "data"?: ...}``; or, for
    a refused token, Laravel's bare ``{"message": "Unauthenticated."}``."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return False
    if "code" in body:
        return False
    if isinstance(body.get("success"), bool):
        return True
    return "success" not in body and set(body) <= {"message", "errors"}


def _refused(answer: Answer, system: str) -> bool:
    return answer.status in (401, 403) and answer.system == system


# --- the CRM ---


def check_crm(settings: Settings, invoice_id: int) -> CheckResult:
    url = f"{settings.tourwell_base_url}/api/v1/invoices/{invoice_id}"
    session = new_session()
    try:
        response = session.get(
            url, headers=crm_headers(settings.tourwell_api_token), timeout=TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        return _unreachable("CRM", "TOURWELL_BASE_URL", exc)
    answer = Answer.of(response)
    status = answer.status

    def wrong(detail: str) -> CheckResult:
        return CheckResult("CRM", False, detail)

    if answer.system == "finan":
        return wrong(
            f"TOURWELL_BASE_URL reaches Finan, not the CRM: HTTP {status} in Finan's envelope "
            f"({answer.said}); {CRM_URL_HINT}"
        )
    if answer.system == "bridge":
        return wrong(
            f'TOURWELL_BASE_URL reaches this bridge itself (HTTP {status}, realm "bridge"), '
            f"not the CRM; {CRM_URL_HINT}"
        )
    found = answer.is_tourwell_invoice(invoice_id)
    if not found and answer.system != "tourwell":
        if status >= 500 or status == 429:
            return wrong(
                f"HTTP {status} ({answer.said}), not Tourwell's envelope: the CRM may be down, "
                "or TOURWELL_BASE_URL is not the CRM; try again later"
            )
        return wrong(
            f"TOURWELL_BASE_URL does not look like Tourwell's Open API: HTTP {status} with "
            f"{'no JSON body' if answer.body is None else 'JSON not in Tourwell envelope'}; "
            f"{CRM_URL_HINT}"
        )
    if status in (401, 403):
        return wrong(
            f"the CRM refused TOURWELL_API_TOKEN (HTTP {status}: {answer.said}); set it to the "
            "API account token from the CRM's settings"
        )
    if status == 429:
        return wrong(
            f"the CRM's rate limit is reached now (HTTP 429: {answer.said}), so the token "
            "could not be confirmed; run the check again in a minute"
        )
    if status >= 500:
        return wrong(f"the CRM answered HTTP {status} ({answer.said}); try again later")
    if not (found or status == 404):
        return wrong(f"the CRM answered HTTP {status} ({answer.said})")

    # A 200 or 404 proves the token only where the token is checked: the same request with
    # no token must be refused, in Tourwell's envelope.
    try:
        anonymous = Answer.of(
            session.get(url, headers={"Accept": "application/json"}, timeout=TIMEOUT_SECONDS)
        )
    except requests.RequestException as exc:
        return _unreachable("CRM", "TOURWELL_BASE_URL", exc)
    if not _refused(anonymous, "tourwell"):
        return wrong(
            f"TOURWELL_BASE_URL answers HTTP {anonymous.status} even without a token, so it "
            f"is not Tourwell's Open API (or not its path); {CRM_URL_HINT}"
        )
    what = "found" if found else "not found, which is fine"
    return CheckResult(
        "CRM",
        True,
        f"Tourwell's Open API; token accepted (GET of invoice {invoice_id}: {status}, {what}; "
        f"without the token: {anonymous.status})",
    )


# --- Finan ---


def check_finan(settings: Settings) -> CheckResult:
    auth = FinanAuth(
        settings.provider_client_id, settings.provider_secret_key, settings.provider_base_url
    )
    url = f"{settings.provider_base_url}/api/v1/invoice/detail/{FINAN_PROBE_ID}"
    session = new_session()
    try:
        answer = Answer.of(session.get(url, auth=auth, timeout=TIMEOUT_SECONDS))
    except requests.RequestException as exc:
        return _unreachable("Finan", "PROVIDER_BASE_URL", exc)
    status = answer.status

    def wrong(detail: str) -> CheckResult:
        return CheckResult("Finan", False, detail)

    if answer.system in ("tourwell", "bridge"):
        return wrong(
            f"PROVIDER_BASE_URL reaches a server answering in Tourwell's envelope (HTTP "
            f"{status}: {answer.said}): the CRM or this bridge, not Finan; {FINAN_URL_HINT}"
        )
    if answer.system != "finan":
        if status >= 500 or status == 429:
            return wrong(
                f"HTTP {status} ({answer.said}), not Finan's envelope: Finan may be down, or "
                "PROVIDER_BASE_URL is not Finan's API; try again later"
            )
        return wrong(
            f"PROVIDER_BASE_URL does not look like Finan's API: HTTP {status} with "
            f"{'no JSON body' if answer.body is None else 'JSON not in Finan envelope'}; "
            f"{FINAN_URL_HINT}"
        )
    kind = code_class(answer.body["code"])
    if status >= 500 or status == 429 or kind == "server":
        return wrong(f"Finan answered HTTP {status} ({answer.said}); try again later")
    if status in (401, 403):
        return wrong(
            f"Finan refused the signature (HTTP {status}: {answer.said}); check "
            "PROVIDER_CLIENT_ID and PROVIDER_SECRET_KEY (and that this machine's clock is "
            "right: Finan allows 30 s)"
        )
    if status not in (200, 404):
        return wrong(f"Finan answered HTTP {status} ({answer.said})")

    # Only a Finan that checks signatures there proves the signature was checked: the same
    # request unsigned must be refused (a wrong path prefix answers 404 either way).
    try:
        unsigned = Answer.of(session.get(url, timeout=TIMEOUT_SECONDS))
    except requests.RequestException as exc:
        return _unreachable("Finan", "PROVIDER_BASE_URL", exc)
    if not _refused(unsigned, "finan"):
        return wrong(
            f"HTTP {status} whether signed or not ({unsigned.status} unsigned): "
            f"PROVIDER_BASE_URL reaches Finan but not its invoice API; {FINAN_URL_HINT}"
        )
    return CheckResult(
        "Finan",
        True,
        f"Finan's API; signature accepted (a signed GET answered {status}, unsigned "
        f"{unsigned.status})",
    )


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
    if isinstance(exc, requests.Timeout):
        why = "no answer in time"
    elif isinstance(exc, requests.ConnectionError):
        why = "connection refused or failed: nothing answers there"
    else:
        why = type(exc).__name__
    detail = f"unreachable: can't reach {setting} ({why}); check the URL and the network"
    return CheckResult(name, False, detail)
