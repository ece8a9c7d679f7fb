"""The bridge's error tree.

Every error a client can see is a ``BridgeError``: an HTTP status, a short machine
``reason``, a message for a person, and optional per-field ``errors``. One Flask handler
(``bridge.web.app``) renders all of them in the error envelope of
docs/contract/http.md#errors, so no code path builds an error response by hand.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    status: int = 500
    reason: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class MalformedJSON(BridgeError):
    status = 400
    reason = "malformed_json"


class Unauthorized(BridgeError):
    status = 401
    reason = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="bridge"'}


class NotFound(BridgeError):
    status = 404
    reason = "not_found"


class NoSuchInvoice(NotFound):
    """Neither the bridge nor the CRM has the invoice (a re-sync of the never-seen): a bulk
    re-sync counts it as a failed item, not as an error."""


class Conflict(BridgeError):
    """A transition the record's state does not allow."""

    status = 409
    reason = "conflict"


class InFlight(Conflict):
    """Another operation on the same invoice (or the same Idempotency-Key) is running."""

    reason = "in_flight"


class PayloadTooLarge(BridgeError):
    status = 413
    reason = "payload_too_large"


class UnsupportedMediaType(BridgeError):
    status = 415
    reason = "unsupported_media_type"


class Unprocessable(BridgeError):
    """The input is well-formed but can't be used: mapping failed, totals disagree, ..."""

    status = 422
    reason = "unprocessable"


class TotalsMismatch(Unprocessable):
    """The total Finan would compute for the mapped body differs from the CRM invoice's."""


class IdempotencyKeyReused(Unprocessable):
    reason = "idempotency_key_reused"


class TooManyFailures(BridgeError):
    """Too many failed tokens or logins, from this client or overall: wait ``Retry-After``."""

    status = 429
    reason = "too_many_failures"


class ProviderRejected(BridgeError):
    """Finan answered with a client-class code: retrying the same body will not help."""

    status = 502
    reason = "provider_rejected"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        provider_message: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.provider_message = provider_message or message  # Finan's own words


class CrmFailed(BridgeError):
    """The CRM answered in a way the bridge can't use (not a transient failure)."""

    status = 502
    reason = "crm_error"


class CrmRejectedToken(CrmFailed):
    """The CRM refused TOURWELL_API_TOKEN: an operator must fix the setting."""

    reason = "crm_rejected_token"


class Unavailable(BridgeError):
    """A dependency (Redis, the CRM, Finan) can't be reached right now; try again later."""

    status = 503
    reason = "unavailable"


class RedisUnavailable(Unavailable):
    reason = "redis_unavailable"


class CrmUnavailable(Unavailable):
    reason = "crm_unavailable"


class ProviderUnavailable(Unavailable):
    """Finan was unreachable or answered server-class codes after the inline retries."""

    reason = "provider_unavailable"
