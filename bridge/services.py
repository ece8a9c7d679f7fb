"""The one place the bridge's parts are built and wired: web processes, queue workers and
the CLI all get their ``Services`` from ``build_services``.

The layer between what the bridge does (``bridge.invoices``) and who asks for it
(``bridge.web``, ``bridge.worker``, ``bridge.cli``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bridge.config import Settings
from bridge.integrations.finan.client import FinanClient
from bridge.integrations.http import DEFAULT_SLEEP, Sleep
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.finan_check import FinanChecks
from bridge.invoices.mapping import MappingConfig
from bridge.invoices.operations import InvoiceOperations
from bridge.invoices.reconcile import Reconciliations
from bridge.invoices.resync import ResyncBatches
from bridge.observability import logs
from bridge.store.connection import connect
from bridge.store.encryption import Cipher
from bridge.store.idempotency import IdempotencyStore
from bridge.store.out_of_sync import OutOfSyncStore
from bridge.store.records import RecordStore

# A worker may wait longer than a web request for a slot of the CRM's rate limit.
WORKER_CRM_RATE_LIMIT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Services:
    """Everything a request handler or a job needs, built once per process."""

    settings: Settings
    redis: redis.Redis
    records: RecordStore
    idempotency: IdempotencyStore
    operations: InvoiceOperations
    batches: ResyncBatches
    # The CRM client for work nobody waits on (write-backs): it may wait a minute for a
    # slot of the shared rate limit, where a web request gives up sooner.
    background_crm: TourwellClient
    # What Finan holds: one invoice checked (admin API, status page), many (reconciliation).
    finan_checks: FinanChecks
    reconciliations: Reconciliations


def build_services(
    settings: Settings, connection: redis.Redis | None = None, retry_sleep: Sleep = DEFAULT_SLEEP
) -> Services:
    """``retry_sleep`` spends the waits between the clients' inline tries: ``time.sleep``,
    unless a test passes one that records the waits instead (tests/conftest.py)."""
    logs.register_secrets(  # for web processes, queue workers and the CLI alike
        *settings.crm_tokens,
        *settings.admin_tokens,
        settings.tourwell_api_token,
        settings.provider_secret_key,
        *settings.encryption_keys,
    )
    connection = connection or connect(settings)
    records = RecordStore(connection, settings.tourwell_base_url, Cipher(settings.encryption_keys))
    finan = FinanClient(settings, sleep=retry_sleep)
    operations = InvoiceOperations(
        connection,
        records,
        TourwellClient(settings, connection, sleep=retry_sleep),
        finan,
        MappingConfig.from_settings(settings),
        settings.retry_schedule,
        lookup_url_template=settings.provider_lookup_url_template,
    )
    finan_checks = FinanChecks(records, finan, OutOfSyncStore(connection))
    return Services(
        settings=settings,
        redis=connection,
        records=records,
        idempotency=IdempotencyStore(connection, settings.idempotency_ttl),
        operations=operations,
        batches=ResyncBatches(connection, operations, settings.tourwell_rate_limit_per_min),
        background_crm=TourwellClient(
            settings,
            connection,
            rate_limit_wait=WORKER_CRM_RATE_LIMIT_WAIT_SECONDS,
            sleep=retry_sleep,
        ),
        finan_checks=finan_checks,
        reconciliations=Reconciliations(
            connection, records, finan_checks, settings.provider_rate_limit_per_min
        ),
    )
