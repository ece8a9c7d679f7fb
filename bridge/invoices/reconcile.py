"""Reconciliation: what Finan holds, checked for many invoices (``bridge reconcile``,
``POST /admin/reconcile``).

The same batch machinery as a bulk re-sync (``bridge.invoices.resync``): the ids in Redis,
a progress hash, slices run as RQ jobs (or in place by the CLI), recovered by the workers'
sweep. Each invoice is one check (``bridge.invoices.finan_check``): one signed
``GET detail`` at Finan, paced by ``PROVIDER_RATE_LIMIT_PER_MIN`` shared by every process
(``bridge.integrations.finan.pacing``); nothing is sent and the CRM is not called.

Results: ``in_sync``; ``out_of_sync`` (Finan's copy differs, or Finan does not know the
invoice: remembered, and listed on the status page); ``not_accepted`` (Finan never accepted
a body for it: nothing to compare); ``error`` (Finan refused the detail request, or stayed
unavailable). ``out_of_sync`` and ``error`` are the batch's problems.
"""

from __future__ import annotations

import logging

import redis

from bridge.errors import BridgeError, Conflict, NotFound, ProviderUnavailable
from bridge.integrations.finan.pacing import FinanPacer
from bridge.invoices.finan_check import FinanChecks
from bridge.invoices.resync import Batch, ItemResult, ResyncBatches
from bridge.store.connection import OPEN_RECONCILIATIONS_KEY
from bridge.store.records import RecordStore

log = logging.getLogger(__name__)

RECONCILE_BATCH_JOB = "bridge.worker.jobs.reconcile_batch"
RESULTS = ("in_sync", "out_of_sync", "not_accepted", "error")
PROBLEM_RESULTS = ("out_of_sync", "error")
UNKNOWN_IDS_NAMED = 20  # a refusal names at most this many unknown ids


class Reconciliations(ResyncBatches):
    KIND = "reconcile"
    JOB = RECONCILE_BATCH_JOB
    DESCRIPTION = "reconciliation"
    OPEN_KEY = OPEN_RECONCILIATIONS_KEY
    RESULTS = RESULTS
    PROBLEM_RESULTS = PROBLEM_RESULTS
    GIVEN_UP = "Finan stayed unavailable; check it again"

    def __init__(  # noqa: D107 - not ResyncBatches': no CRM, no operations
        self,
        connection: redis.Redis,
        records: RecordStore,
        checks: FinanChecks,
        provider_rate_per_min: int,
    ) -> None:
        self._redis = connection
        self._records = records
        self._checks = checks
        self._limiter = FinanPacer(connection, provider_rate_per_min)

    def start(  # type: ignore[override]
        self,
        *,
        ids: list[int] | None = None,
        state: str | None = None,
        runner: str = "queue",
        started_by: str = "",
    ) -> Batch:
        """A new reconciliation of ``ids``, or of every invoice now in ``state``.

        Every id must be known to the bridge (there is nothing to compare otherwise), else
        ``NotFound`` naming them and no batch.
        """
        if state is not None:
            return self.create(
                self._records.ids_in_state(state), f"state:{state}", False, runner, started_by
            )
        ids = list(dict.fromkeys(ids or []))
        unknown = [i for i, found in zip(ids, self._records.exists(ids), strict=True) if not found]
        if unknown:
            named = ", ".join(str(i) for i in unknown[:UNKNOWN_IDS_NAMED])
            more = len(unknown) - UNKNOWN_IDS_NAMED
            raise NotFound(
                f"{len(unknown)} of the invoice ids unknown to the bridge: {named}"
                + (f" and {more} more" if more > 0 else "")
                + "; nothing was checked",
                errors={"ids": [f"unknown: {i}" for i in unknown[:UNKNOWN_IDS_NAMED]]},
            )
        return self.create(ids, "ids", False, runner, started_by)

    def _one(self, invoice_id: int, force: bool) -> ItemResult | None:
        try:
            check = self._checks.check(invoice_id)
        except ProviderUnavailable:
            return None  # pause on this invoice, as a re-sync does for the CRM
        except Conflict as exc:  # Finan never accepted a body for it
            return ItemResult(invoice_id, "not_accepted", None, exc.message)
        except BridgeError as exc:  # gone from the bridge since, Finan refused, ...
            return ItemResult(invoice_id, "error", None, exc.message)
        except redis.RedisError:
            raise  # the whole batch can't go on; RQ retries the job
        except Exception:  # a bug on one invoice must not stop the others
            log.exception("the check of invoice %s failed unexpectedly", invoice_id)
            return ItemResult(invoice_id, "error", None, "internal error; see the worker's log")
        result = "in_sync" if check.in_sync else "out_of_sync"
        return ItemResult(invoice_id, result, check.record.state, check.message)
