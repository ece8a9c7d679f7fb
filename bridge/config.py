"""Settings: one table of environment variable -> setting -> converter (docs/contract/settings.md).

``load_settings`` reads every variable, converts and validates it, and collects *all*
problems before raising, so an operator fixes a broken environment in one pass. Each
problem names its variable; a secret's value is never echoed back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


class ConfigError(Exception):
    """One or more settings are missing or malformed; ``problems`` maps variable -> why."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        lines = [f"{name}: {why}" for name, why in problems.items()]
        super().__init__("invalid settings:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class AdminToken:
    """One entry of ``BRIDGE_ADMIN_TOKENS``: an operator's name and token (``name=token``;
    a bare token is named ``operator``). The name shows in histories, batches, logs and on
    the status page; the token never does."""

    name: str
    token: str = field(repr=False)


# A bare token's name; the role every operator's history events keep as their ``actor``.
DEFAULT_OPERATOR_NAME = "operator"


@dataclass(frozen=True)
class Settings:
    crm_tokens: tuple[str, ...]
    tourwell_base_url: str
    tourwell_api_token: str
    provider_base_url: str
    provider_client_id: str
    provider_secret_key: str
    provider_tax_ids: Mapping[int, str]
    redis_url: str | None = None
    data_dir: Path = Path("var")
    admins: tuple[AdminToken, ...] = ()
    tourwell_rate_limit_per_min: int = 60
    # Background calls to Finan (reconciliation) per minute, shared by every process.
    provider_rate_limit_per_min: int = 600
    provider_payment_config: tuple[str, ...] = ()
    provider_due_days: int = 7
    provider_lookup_url_template: str | None = None
    idempotency_ttl: int = 86400
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    # Seconds before each queued attempt at Finan; after the last, dead
    # (docs/contract/semantics.md#queue).
    retry_schedule: tuple[int, ...] = (10, 60, 300, 1800, 7200, 21600, 43200)
    # `bridge worker` serves its metrics on this port (GET /metrics); None: not served.
    worker_metrics_port: int | None = None
    # The status page's sessions end after this long without a request, and this long after
    # logging in at the latest (docs/operators.md#sessions).
    admin_session_idle_seconds: float = 30 * 60.0
    admin_session_max_seconds: float = 8 * 3600.0
    # How many proxies in front of the bridge set X-Forwarded-For (werkzeug's ProxyFix);
    # None: the client is the connection's address.
    trusted_proxies: int | None = None
    # Failed tokens and logins a minute, per client address and overall, before 429s
    # (bridge/web/auth_limits.py).
    auth_failures_per_client_per_min: int = 10
    auth_failures_per_min: int = 100

    @property
    def admin_tokens(self) -> tuple[str, ...]:
        """The operators' tokens alone (``admins`` has their names too)."""
        return tuple(admin.token for admin in self.admins)

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        return (
            f"Settings(tourwell_base_url={self.tourwell_base_url!r}, "
            f"provider_base_url={self.provider_base_url!r}, redis_url="
            f"{'<set>' if self.redis_url else None}, data_dir={str(self.data_dir)!r})"
        )


# --- converters: each takes the raw string and returns the value or raises ValueError ---


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def _token_list(raw: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise ValueError("needs at least one token (comma-separated)")
    return tokens


# An operator's name: letters, digits, spaces and . _ - @, starting with a letter or digit.
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


def _admin_tokens(raw: str) -> tuple[AdminToken, ...]:
    """``name=token`` or bare ``token`` entries, comma-separated. A problem names the
    entry by its position, never by its text: the text may be (part of) a token."""
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not entries:
        raise ValueError("needs at least one token (comma-separated)")
    admins: list[AdminToken] = []
    for position, entry in enumerate(entries, start=1):
        name, sep, token = entry.partition("=")
        name, token = name.strip(), token.strip()
        if not sep:
            name, token = DEFAULT_OPERATOR_NAME, entry
        elif not token or token.startswith("="):
            # "abc=" or "abc==" is far likelier a bare base64 token than a name.
            raise ValueError(
                f"entry #{position} has no token after its name's '=' (a bare token can't "
                "hold '='; to keep such a token, name it: name=token)"
            )
        elif not _OPERATOR_NAME.fullmatch(name):
            raise ValueError(
                f"entry #{position}: the name before '=' must be 1 to 64 letters, digits, "
                "spaces or . _ - @, starting with a letter or digit (name=token)"
            )
        for earlier, admin in enumerate(admins, start=1):
            if admin.token == token:
                raise ValueError(f"entries #{earlier} and #{position} have the same token")
        admins.append(AdminToken(name, token))
    return tuple(admins)


def _http_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://demo.tourwell.net")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value


def _redis_url(raw: str) -> str:
    value = raw.strip()
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, got {raw.strip()!r}") from None
    if value <= 0:
        raise ValueError(f"must be above 0, got {value}")
    return value


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ValueError(f"{raw.strip()!r} is not a UUID") from None


def _tax_ids(raw: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for pair in (p.strip() for p in raw.split(",") if p.strip()):
        rate, sep, tax_id = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r} is not RATE=UUID, e.g. 10=9497360a-9e04-...")
        try:
            rate_value = int(rate.strip())
        except ValueError:
            raise ValueError(f"rate {rate.strip()!r} is not a whole percentage") from None
        if not 0 <= rate_value <= 100:
            raise ValueError(f"rate {rate_value} is outside 0..100")
        if rate_value in table:
            raise ValueError(f"rate {rate_value} is listed twice")
        table[rate_value] = _uuid(tax_id)
    if not table:
        raise ValueError("needs at least one RATE=UUID pair, e.g. 10=<uuid>,8=<uuid>")
    return table


def _uuid_list(raw: str) -> tuple[str, ...]:
    return tuple(_uuid(v) for v in raw.split(",") if v.strip())


def _lookup_template(raw: str) -> str:
    value = raw.strip()
    if "{provider_invoice_id}" not in value:
        raise ValueError("must contain the placeholder {provider_invoice_id}")
    _http_url(value.replace("{provider_invoice_id}", "x"))
    return value


def _fernet_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # The key itself is a secret: say which one, never what it is.
            raise ValueError(
                f"key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None
    return keys


def _port(raw: str) -> int:
    value = _positive_int(raw)
    if value > 65535:
        raise ValueError(f"must be a TCP port, 1 to 65535, got {value}")
    return value


def _minutes(raw: str) -> float:
    """Minutes (decimals allowed, e.g. 0.5), returned as seconds."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"must be a number of minutes, got {raw.strip()!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be above 0 minutes, got {raw.strip()}")
    return value * 60


def _schedule(raw: str) -> tuple[int, ...]:
    try:
        delays = tuple(int(v.strip()) for v in raw.split(",") if v.strip())
    except ValueError:
        raise ValueError("must be whole seconds separated by commas, e.g. 10,60,300") from None
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError("needs at least one delay, none negative, e.g. 10,60,300")
    return delays


# variable -> (Settings field, converter, required)
SETTINGS_TABLE: dict[str, tuple[str, Callable[[str], Any], bool]] = {
    "REDIS_URL": ("redis_url", _redis_url, False),
    "BRIDGE_DATA_DIR": ("data_dir", lambda raw: Path(_text(raw)), False),
    "BRIDGE_CRM_TOKENS": ("crm_tokens", _token_list, True),
    "BRIDGE_ADMIN_TOKENS": ("admins", _admin_tokens, False),
    "TOURWELL_BASE_URL": ("tourwell_base_url", _http_url, True),
    "TOURWELL_API_TOKEN": ("tourwell_api_token", _text, True),
    "TOURWELL_RATE_LIMIT_PER_MIN": ("tourwell_rate_limit_per_min", _positive_int, False),
    "PROVIDER_BASE_URL": ("provider_base_url", _http_url, True),
    "PROVIDER_CLIENT_ID": ("provider_client_id", _text, True),
    "PROVIDER_SECRET_KEY": ("provider_secret_key", _text, True),
    "PROVIDER_TAX_IDS": ("provider_tax_ids", _tax_ids, True),
    "PROVIDER_RATE_LIMIT_PER_MIN": ("provider_rate_limit_per_min", _positive_int, False),
    "PROVIDER_PAYMENT_CONFIG": ("provider_payment_config", _uuid_list, False),
    "PROVIDER_DUE_DAYS": ("provider_due_days", _positive_int, False),
    "PROVIDER_LOOKUP_URL_TEMPLATE": ("provider_lookup_url_template", _lookup_template, False),
    "BRIDGE_IDEMPOTENCY_TTL": ("idempotency_ttl", _positive_int, False),
    "BRIDGE_ENCRYPTION_KEY": ("encryption_keys", _fernet_keys, False),
    "BRIDGE_RETRY_SCHEDULE": ("retry_schedule", _schedule, False),
    "BRIDGE_WORKER_METRICS_PORT": ("worker_metrics_port", _port, False),
    "BRIDGE_ADMIN_SESSION_IDLE_MINUTES": ("admin_session_idle_seconds", _minutes, False),
    "BRIDGE_ADMIN_SESSION_MAX_MINUTES": ("admin_session_max_seconds", _minutes, False),
    "BRIDGE_TRUSTED_PROXIES": ("trusted_proxies", _positive_int, False),
    "BRIDGE_AUTH_FAILURES_PER_CLIENT_PER_MIN": (
        "auth_failures_per_client_per_min",
        _positive_int,
        False,
    ),
    "BRIDGE_AUTH_FAILURES_PER_MIN": ("auth_failures_per_min", _positive_int, False),
}


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from an environment mapping, or raise ``ConfigError``."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for variable, (name, convert, required) in SETTINGS_TABLE.items():
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            if required:
                problems[variable] = "is required but not set"
            continue
        try:
            values[name] = convert(raw)
        except ValueError as exc:
            problems[variable] = str(exc)
    if problems:
        raise ConfigError(problems)
    return Settings(**values)
