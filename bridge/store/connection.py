"""The one place a Redis connection is made, and the key names the bridge uses.

Keys are built by the small functions below, all under one prefix, so an operator can
find (or clear) everything the bridge stores with ``SCAN MATCH bridge:*``.
"""

from __future__ import annotations

import redis

from bridge.config import Settings
from bridge.store import embedded_redis

KEY_PREFIX = "bridge:"

# A CRM-facing request must fail fast (503) when Redis is gone, not hang the caller.
SOCKET_TIMEOUT_SECONDS = 2.0


def connect(settings: Settings) -> redis.Redis:
    """Redis at ``REDIS_URL``, else the embedded server under ``BRIDGE_DATA_DIR``."""
    url = settings.redis_url or embedded_redis.ensure_server(settings.data_dir)
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=15,
    )


def record_key(invoice_id: int) -> str:
    return f"{KEY_PREFIX}record:{invoice_id}"


def body_key(invoice_id: int) -> str:
    return f"{KEY_PREFIX}body:{invoice_id}"


def lock_key(invoice_id: int) -> str:
    return f"{KEY_PREFIX}lock:invoice:{invoice_id}"


def idempotency_key(scope: str, key: str) -> str:
    return f"{KEY_PREFIX}idempotency:{scope}:{key}"


def out_of_sync_key() -> str:
    """Invoices whose copy at Finan was last seen to differ (bridge/store/out_of_sync.py)."""
    return f"{KEY_PREFIX}out_of_sync"


def admin_session_key(session_digest: str) -> str:
    """An operator's page session, by a digest of its cookie (bridge/store/admin_sessions.py)."""
    return f"{KEY_PREFIX}admin_session:{session_digest}"


# The failed-authentication limits' counters (bridge/web/auth_limits.py, the ``limits``
# library's keys under this prefix), and the client addresses that authenticated lately.
AUTH_LIMIT_PREFIX = f"{KEY_PREFIX}auth_limit"
# The moving windows of calls to the CRM and Finan (bridge/integrations/moving_window.py).
RATE_LIMIT_PREFIX = f"{KEY_PREFIX}ratelimit"


def authenticated_client_key(address: str) -> str:
    return f"{AUTH_LIMIT_PREFIX}:authenticated:{address}"


def batch_index_key() -> str:
    """Every batch (bulk re-sync, reconciliation) by the time it started
    (bridge/store/batch_index.py)."""
    return f"{KEY_PREFIX}batches:by_time"


# --- records: their indexes and history (bridge/store/records.py) ---

INDEX_ALL_KEY = f"{KEY_PREFIX}index:all"
CODE_INDEX_KEY = f"{KEY_PREFIX}index:code"


def state_index_key(state: str) -> str:
    return f"{KEY_PREFIX}index:state:{state}"


def history_key(invoice_id: int) -> str:
    return f"{KEY_PREFIX}history:{invoice_id}"


# --- batches: bulk re-syncs and reconciliations (bridge/invoices/resync.py, reconcile.py) ---

OPEN_BATCHES_KEY = f"{KEY_PREFIX}batches:open"  # re-syncs run by the queue, not finished yet
OPEN_RECONCILIATIONS_KEY = f"{KEY_PREFIX}batches:open:reconcile"  # the same, reconciliations


def batch_key(batch_id: str) -> str:
    return f"{KEY_PREFIX}batch:{batch_id}"


def batch_ids_key(batch_id: str) -> str:
    return f"{KEY_PREFIX}batch:{batch_id}:ids"


def batch_problems_key(batch_id: str) -> str:
    return f"{KEY_PREFIX}batch:{batch_id}:problems"


def batch_items_key(batch_id: str) -> str:
    """Every invoice's result, in the batch's order (JSON ``[id, result, state, message]``)."""
    return f"{KEY_PREFIX}batch:{batch_id}:items"
