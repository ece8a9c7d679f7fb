"""Bulk re-sync: many invoices re-synced one after another, paced by the CRM's rate limit.

A batch is kept in Redis: its ids (a list), a hash of where it stands (position, counts per
result, who started it), every invoice's result in order, and the problems (failed or error)
in order; every batch is also in an index by time (``bridge.store.batch_index``), so the
batches of the last ``BATCH_TTL_SECONDS`` can be listed newest first. Nothing runs at once:
the first slice of the work is an RQ job, and each slice re-syncs invoices for as long as
the pacing allows, then hands the rest to a new job, scheduled for when the next slot is
free. So a batch of 10 000 ids is accepted in one request, holds one worker at most for a
slice at a time, and leaves room in the queue for everything else.

Pacing: each re-sync makes up to two CRM calls (the pull, and the write-back when it sent
something), and every CRM call takes a slot of the shared 60-per-minute window
(``bridge.integrations.tourwell.ratelimit``). On top of that, batches together take a slot
of their own window of ``TOURWELL_RATE_LIMIT_PER_MIN / BULK_SHARE_DIVISOR`` invoices a
minute (20 at 60), so a bulk re-sync uses at most two thirds of the CRM's window and live
traffic keeps the rest.

``bridge resync`` (the CLI) runs a batch in its own process instead (``runner: cli``): same
pacing, waiting in place, with a progress bar.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis

from bridge.errors import (
    BridgeError,
    CrmUnavailable,
    InFlight,
    NoSuchInvoice,
    ProviderRejected,
    Unavailable,
)
from bridge.integrations.tourwell.ratelimit import CrmRateLimiter
from bridge.invoices.operations import InvoiceOperations
from bridge.store import batch_index, queue
from bridge.store.connection import (
    OPEN_BATCHES_KEY,
    batch_ids_key,
    batch_items_key,
    batch_key,
    batch_problems_key,
)
from bridge.store.records import iso_utc, now_iso

log = logging.getLogger(__name__)

RESYNC_BATCH_JOB = "bridge.worker.jobs.resync_batch"

BATCH_TTL_SECONDS = 7 * 86400  # a batch's progress stays readable for a week
# Batches together take at most 1/3 of the CRM's window in invoices a minute; each invoice
# makes at most two CRM calls, so bulk work never takes more than 2/3 of the window.
BULK_SHARE_DIVISOR = 3
BULK_LIMIT_KEY = "bulk-resync"
# A slice (one job) stops after this long and hands the rest to a new job, well inside RQ's
# job timeout even when its last invoice takes a minute (a slow CRM and Finan).
SLICE_SECONDS = 120
# A CRM that is unavailable (or whose window is full) pauses the batch on the same invoice
# this many times before that invoice is given up as an error and the batch moves on.
MAX_CRM_PAUSES = 5
PROBLEMS_SHOWN = 100
ITEMS_PAGE = 100  # a batch's results are read a page at a time

RESULTS = ("sent", "unchanged", "queued", "failed", "error")
PROBLEM_RESULTS = ("failed", "error")
# Each kind of batch's results, in the order they are shown (filled in by each kind's class).
_RESULTS_BY_KIND: dict[str, tuple[str, ...]] = {"resync": RESULTS}


def new_batch_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ItemResult:
    invoice_id: int
    result: str  # one of RESULTS
    state: str | None  # the record's state afterwards
    message: str


@dataclass
class Batch:
    batch_id: str
    source: str  # "ids", or "state:failed" / "state:dead"
    runner: str  # "queue" (workers) or "cli"
    force: bool
    total: int
    position: int
    counts: dict[str, int]
    created_at: str
    finished_at: str | None = None
    next_slice_at: str | None = None
    problems: list[ItemResult] = field(default_factory=list)
    kind: str = "resync"  # resync, or reconcile
    started_by: str = ""  # who started it: "status page", "admin API", "bridge resync", ...

    @property
    def done(self) -> int:
        return self.position

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class SliceEnd:
    finished: bool
    resume_in: float = 0.0  # seconds until the next slice may start


class ResyncBatches:
    """Bulk re-syncs; also the batch machinery other kinds of batch reuse
    (``bridge.invoices.reconcile``): a subclass names its kind, job, results and open-batch
    set below, and does one invoice in ``_one``."""

    KIND = "resync"  # stored in the batch's hash: a batch is read only by its own kind
    JOB = RESYNC_BATCH_JOB
    DESCRIPTION = "bulk re-sync"
    OPEN_KEY = OPEN_BATCHES_KEY
    RESULTS = RESULTS
    PROBLEM_RESULTS = PROBLEM_RESULTS
    GIVEN_UP = "the CRM stayed unavailable; re-sync it again"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _RESULTS_BY_KIND[cls.KIND] = cls.RESULTS

    def __init__(
        self, connection: redis.Redis, operations: InvoiceOperations, crm_rate_per_min: int
    ) -> None:
        self._redis = connection
        self._operations = operations
        self._limiter = CrmRateLimiter(
            connection, max(1, crm_rate_per_min // BULK_SHARE_DIVISOR), BULK_LIMIT_KEY
        )

    def start(
        self,
        *,
        ids: list[int] | None = None,
        state: str | None = None,
        force: bool = False,
        runner: str = "queue",
        started_by: str = "",
    ) -> Batch:
        """A new batch of ``ids``, or of every invoice now in ``state``, as stored.

        An id the bridge has no record of is re-synced from the CRM's copy like any other;
        one the CRM has no copy of either is a failed item of the batch.
        """
        if state is not None:
            records = self._operations.records
            return self.create(
                records.ids_in_state(state), f"state:{state}", force, runner, started_by
            )
        return self.create(ids or [], "ids", force, runner, started_by)

    def start_confirmed(
        self,
        ids: list[int],
        state: str,
        *,
        force: bool = False,
        runner: str = "queue",
        started_by: str = "",
    ) -> Batch:
        """A batch of the ``ids`` an operator was shown as being in ``state`` and confirmed:
        those still in ``state`` now (one that left it meanwhile, e.g. cancelled by the CRM,
        is left out; one that entered it since was not shown, so it is not included)."""
        records = self._operations.records
        kept: list[int] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            now_in = {r.invoice_id for r in records.get_many(chunk) if r.state == state}
            kept += [invoice_id for invoice_id in chunk if invoice_id in now_in]
        return self.create(kept, f"state:{state}", force, runner, started_by)

    def create(
        self,
        ids: Iterable[int],
        source: str,
        force: bool,
        runner: str = "queue",
        started_by: str = "",
    ) -> Batch:
        """Store a new batch (duplicate ids once, in order), indexed by time. With the queue
        runner, its first job is scheduled in the same transaction."""
        ids = list(dict.fromkeys(ids))
        batch_id = new_batch_id()
        job_id = _job_id(batch_id, self.KIND) if runner == "queue" else ""
        created_at = now_iso()
        finished_at = None if ids else created_at
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.multi()
            pipe.hset(
                batch_key(batch_id),
                mapping={
                    "kind": self.KIND,
                    "source": source,
                    "runner": runner,
                    "force": int(force),
                    "total": len(ids),
                    "position": 0,
                    "crm_pauses": 0,
                    "created_at": created_at,
                    "started_by": started_by,
                    "job_id": job_id,
                    **{f"count:{result}": 0 for result in self.RESULTS},
                },
            )
            for start in range(0, len(ids), 1000):
                pipe.rpush(batch_ids_key(batch_id), *ids[start : start + 1000])
            if finished_at is not None:
                pipe.hset(batch_key(batch_id), "finished_at", finished_at)
            elif runner == "queue":
                pipe.sadd(self.OPEN_KEY, batch_id)
                self._schedule(batch_id, job_id, None, pipe)
            for key in _keys(batch_id):
                pipe.expire(key, BATCH_TTL_SECONDS)
            batch_index.add_step(pipe, batch_id, BATCH_TTL_SECONDS)
            pipe.execute()
        return Batch(
            batch_id=batch_id,
            source=source,
            runner=runner,
            force=force,
            total=len(ids),
            position=0,
            counts=dict.fromkeys(self.RESULTS, 0),
            created_at=created_at,
            finished_at=finished_at,
            kind=self.KIND,
            started_by=started_by,
        )

    def get(self, batch_id: str) -> Batch | None:
        """The batch, or None when there is none by that id (a batch id is letters and
        digits: anything else, from a URL say, names no key)."""
        if not batch_id.isalnum():
            return None
        raw = {k.decode(): v.decode() for k, v in self._redis.hgetall(batch_key(batch_id)).items()}
        if not raw or raw.get("kind", ResyncBatches.KIND) != self.KIND:
            return None
        problems = [
            _item_from_json(entry)
            for entry in self._redis.lrange(batch_problems_key(batch_id), 0, PROBLEMS_SHOWN - 1)
        ]
        return _batch_from_hash(batch_id, raw, self.RESULTS, problems)

    def items(self, batch_id: str, offset: int = 0, limit: int = ITEMS_PAGE) -> list[ItemResult]:
        """The results of the batch's invoices from ``offset``, in the batch's order, at most
        ``limit`` (a page: a batch may hold 50 000). A batch started before results were
        kept for every invoice has none (its problems are still listed)."""
        if not batch_id.isalnum():
            return []
        raw = self._redis.lrange(batch_items_key(batch_id), offset, offset + limit - 1)
        return [_item_from_row(entry) for entry in raw]

    def listed(self, offset: int = 0, limit: int = 50) -> tuple[int, list[Batch]]:
        """Batches of every kind started in the last ``BATCH_TTL_SECONDS``, newest first:
        (how many there are, ``limit`` of them from ``offset``), without their problems."""
        index = batch_index.BatchIndex(self._redis, BATCH_TTL_SECONDS)
        total, batch_ids = index.page(offset, limit)
        with self._redis.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hgetall(batch_key(batch_id))
            hashes = pipe.execute()
        found, gone = [], []
        for batch_id, raw_hash in zip(batch_ids, hashes, strict=True):
            raw = {k.decode(): v.decode() for k, v in raw_hash.items()}
            if "source" not in raw:  # expired (or deleted) since it was indexed
                gone.append(batch_id)
                continue
            results = _RESULTS_BY_KIND.get(raw.get("kind", ResyncBatches.KIND)) or _results_of(raw)
            found.append(_batch_from_hash(batch_id, raw, results, []))
        index.forget(gone)
        return total - len(gone), found

    def run(
        self,
        batch_id: str,
        *,
        wait: bool,
        seconds: float = SLICE_SECONDS,
        on_item: Callable[[ItemResult], None] | None = None,
    ) -> SliceEnd:
        """Re-sync the batch's next invoices for up to ``seconds``.

        ``wait``: wait in place for pacing slots (the CLI); else stop at the first full
        window and say when to resume (a queue job must not hold a worker to sleep).
        """
        deadline = time.monotonic() + seconds
        batch = self.get(batch_id)
        if batch is None or batch.finished:
            return SliceEnd(finished=True)
        while time.monotonic() < deadline:
            position = int(self._redis.hget(batch_key(batch_id), "position") or 0)
            raw_id = self._redis.lindex(batch_ids_key(batch_id), position)
            if raw_id is None:
                self._finish(batch_id)
                return SliceEnd(finished=True)
            try:
                self._limiter.acquire(max_wait=SLICE_SECONDS if wait else 0)
            except Unavailable as exc:  # the pacing's window is full
                return SliceEnd(finished=False, resume_in=float(exc.retry_after or 1))
            item = self._one(int(raw_id), batch.force)
            if item is None:  # the CRM is unavailable: pause on this invoice
                pauses = self._redis.hincrby(batch_key(batch_id), "crm_pauses", 1)
                if pauses <= MAX_CRM_PAUSES:
                    if wait:
                        time.sleep(min(30, 2**pauses))
                        continue
                    return SliceEnd(finished=False, resume_in=min(300, 10 * 2**pauses))
                item = ItemResult(int(raw_id), "error", None, self.GIVEN_UP)
            self._record(batch_id, position, item)
            if on_item is not None:
                on_item(item)
        return SliceEnd(finished=False)

    def run_slice_from_queue(self, batch_id: str, job_id: str) -> str:
        """The RQ job: one slice, then the next job scheduled (or the batch finished)."""
        current = self._redis.hget(batch_key(batch_id), "job_id")
        if current is None or current.decode() != job_id:
            return "nothing to do: the batch is gone, or another job carries it on"
        end = self.run(batch_id, wait=False)
        if end.finished:
            return "batch finished"
        next_job = _job_id(batch_id, self.KIND)
        run_at = datetime.now(UTC) + timedelta(seconds=end.resume_in)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.multi()
            pipe.hset(
                batch_key(batch_id),
                mapping={"job_id": next_job, "next_slice_at": iso_utc(run_at, "seconds")},
            )
            self._schedule(batch_id, next_job, run_at if end.resume_in > 0 else None, pipe)
            pipe.execute()
        return f"paused; the next slice starts in {end.resume_in:.0f} s"

    def recover_stranded(self) -> list[str]:
        """Give each open queue batch whose job is gone a new job; the batch ids."""
        recovered = []
        for raw in self._redis.smembers(self.OPEN_KEY):
            batch_id = raw.decode()
            job_id = self._redis.hget(batch_key(batch_id), "job_id")
            if job_id is None:  # expired
                self._redis.srem(self.OPEN_KEY, batch_id)
                continue
            if queue.job_is_live(self._redis, job_id.decode()):
                continue
            next_job = _job_id(batch_id, self.KIND)
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.multi()
                pipe.hset(batch_key(batch_id), "job_id", next_job)
                self._schedule(batch_id, next_job, None, pipe)
                pipe.execute()
            recovered.append(batch_id)
        return recovered

    # --- helpers ---

    def _one(self, invoice_id: int, force: bool) -> ItemResult | None:
        """Re-sync one invoice of the batch and say how it went; None: pause on it (the CRM
        is unavailable). Reconciliations check one instead."""
        try:
            outcome = self._operations.resync(invoice_id, force=force)
        except ProviderRejected as exc:
            return ItemResult(invoice_id, "failed", "failed", f"{exc.code}: {exc.provider_message}")
        except NoSuchInvoice as exc:  # neither the bridge nor the CRM knows it
            return ItemResult(invoice_id, "failed", None, exc.message)
        except InFlight:
            return ItemResult(
                invoice_id, "error", None, "another operation was in flight; re-sync it again"
            )
        except CrmUnavailable:
            return None
        except BridgeError as exc:  # unknown to the CRM, can't be mapped, ...
            return ItemResult(invoice_id, "error", None, exc.message)
        except redis.RedisError:
            raise  # the whole batch can't go on; RQ retries the job
        except Exception:  # a bug on one invoice must not stop the others
            log.exception("re-sync of invoice %s failed unexpectedly", invoice_id)
            return ItemResult(invoice_id, "error", None, "internal error; see the worker's log")
        return ItemResult(invoice_id, outcome.result, outcome.record.state, outcome.message)

    def _record(self, batch_id: str, position: int, item: ItemResult) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.multi()
            pipe.hincrby(batch_key(batch_id), f"count:{item.result}", 1)
            pipe.hset(batch_key(batch_id), mapping={"position": position + 1, "crm_pauses": 0})
            if item.result in self.PROBLEM_RESULTS:
                entry = json.dumps(item.__dict__, ensure_ascii=False)
                pipe.rpush(batch_problems_key(batch_id), entry)
            row = [item.invoice_id, item.result, item.state, item.message]
            pipe.rpush(batch_items_key(batch_id), json.dumps(row, ensure_ascii=False))
            for key in _keys(batch_id):
                pipe.expire(key, BATCH_TTL_SECONDS)
            pipe.execute()

    def _finish(self, batch_id: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.multi()
            pipe.hset(batch_key(batch_id), "finished_at", now_iso())
            pipe.hdel(batch_key(batch_id), "next_slice_at")
            pipe.srem(self.OPEN_KEY, batch_id)
            pipe.execute()

    def _schedule(
        self,
        batch_id: str,
        job_id: str,
        run_at: datetime | None,
        pipe: redis.client.Pipeline,
    ) -> None:
        queue.add_job(
            self._redis, pipe, self.JOB, (batch_id, job_id), f"{self.DESCRIPTION} {batch_id}",
            job_id=job_id, run_at=run_at,
        )  # fmt: skip


def _job_id(batch_id: str, kind: str = ResyncBatches.KIND) -> str:
    return f"{kind}-{batch_id}-{uuid.uuid4().hex[:8]}"


def _keys(batch_id: str) -> tuple[str, ...]:
    return (
        batch_key(batch_id),
        batch_ids_key(batch_id),
        batch_problems_key(batch_id),
        batch_items_key(batch_id),
    )


def _item_from_json(raw: bytes | str) -> ItemResult:
    return ItemResult(**json.loads(raw))


def _item_from_row(raw: bytes | str) -> ItemResult:
    invoice_id, result, state, message = json.loads(raw)
    return ItemResult(int(invoice_id), result, state, message)


def _results_of(raw: dict[str, str]) -> tuple[str, ...]:
    """The results a stored batch of an unknown kind counts, read from its hash."""
    return tuple(sorted(name.removeprefix("count:") for name in raw if name.startswith("count:")))


def _batch_from_hash(
    batch_id: str, raw: dict[str, str], results: Iterable[str], problems: list[ItemResult]
) -> Batch:
    return Batch(
        batch_id=batch_id,
        source=raw["source"],
        runner=raw["runner"],
        force=raw["force"] == "1",
        total=int(raw["total"]),
        position=int(raw["position"]),
        counts={result: int(raw.get(f"count:{result}", 0)) for result in results},
        created_at=raw["created_at"],
        finished_at=raw.get("finished_at"),
        next_slice_at=raw.get("next_slice_at"),
        problems=problems,
        kind=raw.get("kind", ResyncBatches.KIND),
        started_by=raw.get("started_by", ""),
    )
