"""The bridge's record of each CRM invoice: what Finan last accepted, and the state.

One JSON value per invoice under ``bridge:record:<id>``. The record is the content layer of
idempotency: ``fingerprint`` is the SHA-256 of the exact bytes of the last body Finan
accepted, so an operation whose mapped body is unchanged sends nothing; ``source`` is the
SHA-256 of the CRM's issue request that started the operation of that body, so the same
request again is answered at once. ``pending`` is the
operation Finan has not accepted yet (queued, failed or dead), with the exact body to send.

That last accepted body (``last_body``, about 8 KB for 20 price rows) is kept under its own
key, ``bridge:body:<id>``, written in the same transaction as the record: a repeated
request and the operators' lists read the small record alone. Records kept before that
hold the body inside; they are read as they are, and split at their next save.

Beside each record: its history (a capped list of events, newest first) and two indexes,
sorted sets scored by the time of the last change, one of all records and one per state.
A save writes the record, its indexes, its event and whatever the caller adds (such as the
queue job that will send ``pending``) in one MULTI/EXEC, so they never disagree.

For operators' lists and searches (``page``, ``search``), one more index: the CRM's invoice
codes, a sorted set of ``<CODE>\0<id>`` members, all of score 0, so that a code or its start
is found with ZRANGEBYLEX. Codes are the CRM's invoice numbers (``HD017``), not customer
data, so they are kept in the clear even when records are encrypted. The customer's name is
customer data: it is kept in the record only (encrypted with it), and a search by name reads
the records themselves, newest first (``search``). Lists may be narrowed to a span of time
of the last change (``since``/``until``, epoch seconds), which is the indexes' score.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis

from bridge.store.connection import (
    CODE_INDEX_KEY,
    INDEX_ALL_KEY,
    body_key,
    history_key,
    record_key,
    state_index_key,
)
from bridge.store.encryption import Cipher, StoredDataUnreadable
from schemas.states import STATES

ISSUED, CANCELLED, QUEUED, FAILED, DEAD = STATES

log = logging.getLogger(__name__)

HISTORY_LENGTH = 200  # events kept per invoice, newest first

# A search returns at most this many records: an operator narrows a query, never pages
# through thousands of matches.
SEARCH_LIMIT = 1000
# A search by customer name reads the records in chunks of this many, newest change first.
SCAN_CHUNK = 500


def code_member(code: str, invoice_id: int) -> bytes:
    """The code index's member for an invoice: its code upper-cased, NUL, its id."""
    return f"{code.strip().upper()}\0{invoice_id}".encode()


_MONEY_FIELDS = ("total_amount", "tax_amount")


def provider_invoice_id(tourwell_base_url: str, invoice_id: int) -> str:
    """The Finan id of a CRM invoice: derived, never stored first
    (docs/contract/semantics.md#one-finan-invoice).

    A repeat after a crash, a lost Redis key or a worker death lands on the same Finan
    invoice, so nothing is ever issued twice.
    """
    name = f"{tourwell_base_url.rstrip('/')}/api/v1/invoices/{invoice_id}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def fingerprint(body: bytes | str) -> str:
    """The SHA-256 of a body's exact bytes: the content layer compares these."""
    return hashlib.sha256(body.encode() if isinstance(body, str) else body).hexdigest()


class StoredDataDamaged(StoredDataUnreadable):
    """One invoice's record or body in Redis can't be read as one (as opposed to a missing
    encryption key, which makes every record unreadable)."""

    reason = "stored_data_damaged"


def _damaged(invoice_id: int, what: str, problem: Exception | str) -> StoredDataDamaged:
    why = type(problem).__name__ if isinstance(problem, Exception) else problem
    return StoredDataDamaged(
        f"the bridge's {what} of invoice {invoice_id} in Redis is damaged ({why}); an operator "
        f"must restore it from a backup, or delete {record_key(invoice_id)} and "
        f"{body_key(invoice_id)} (the CRM's next issue writes them again, on the same Finan "
        "invoice)"
    )


def iso_utc(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` (aware, UTC) as ISO 8601 with a ``Z``: 2026-11-21T10:00:00.000Z."""
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(datetime.now(UTC))


@dataclass
class Pending:
    """An operation Finan has not accepted yet: the exact body, and where it stands."""

    operation: str  # issue, update or cancel
    body: str  # the exact JSON text to send
    state: str  # the record's state once Finan accepts it: issued or cancelled
    attempts: int = 0  # queued attempts made so far (the inline one not counted)
    job_id: str | None = None  # the queue job that will make the next attempt
    next_attempt_at: str | None = None
    # The SHA-256 of the CRM's issue request (with the invoice in its body) that started
    # this operation: kept while Finan has accepted nothing yet and an update or re-sync
    # replaces the body (the operation stays that issue), so a repeat of the request is
    # known and replaces nothing; kept as the record's ``source`` once Finan accepts it.
    source: str | None = None


@dataclass(frozen=True)
class Event:
    """One line of an invoice's history."""

    operation: str  # issue, update, cancel, resync, write_back
    actor: str  # crm, operator or worker: the role
    outcome: str  # e.g. issued, unchanged, queued, failed, dead, written_back
    message: str | None = None
    code: int | None = None  # Finan's envelope code, when it gave one
    at: str = dataclasses.field(default_factory=now_iso)
    # Which operator (the name of their BRIDGE_ADMIN_TOKENS entry) for an operator's
    # event; None for the CRM's and the worker's, the command line's, and events written
    # before operators had names.
    by: str | None = None

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """An event as stored, by any version: fields it does not know are left out."""
        value = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


@dataclass
class Record:
    invoice_id: int
    provider_invoice_id: str
    state: str | None = None
    code: str | None = None
    # The customer's name as sent to Finan (records kept before it have none).
    customer: str | None = None
    provider_order_code: str | None = None
    provider_system_code: str | None = None
    total_amount: Decimal | None = None
    tax_amount: Decimal | None = None
    fingerprint: str | None = None
    last_body: str | None = None  # the exact JSON text of the last accepted body
    # The SHA-256 of the CRM's issue request that started the operation of ``last_body``
    # (mapped from it, or from an update or re-sync that replaced its body before Finan
    # accepted anything), if one did: the same request again is recognised without loading
    # or mapping it.
    source: str | None = None
    last_error: dict[str, Any] | None = None
    cancel_note: str | None = None
    # The Finan link (PROVIDER_LOOKUP_URL_TEMPLATE filled in), set each time Finan accepts a
    # body; without the setting, the last lookup_url the CRM sent in an update.
    lookup_url: str | None = None
    pending: Pending | None = None
    created_at: str = dataclasses.field(default_factory=now_iso)
    updated_at: str = dataclasses.field(default_factory=now_iso)

    @property
    def accepted(self) -> bool:
        """Finan has accepted a body for this invoice at least once."""
        return self.fingerprint is not None

    def to_json(self) -> str:
        """The record without ``last_body``, which ``RecordStore`` keeps under its own key."""
        value = dataclasses.asdict(self)
        del value["last_body"]
        for name in _MONEY_FIELDS:
            if value[name] is not None:
                value[name] = str(value[name])
        return json.dumps(value, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Record:
        value = json.loads(raw)
        for name in _MONEY_FIELDS:
            if value.get(name) is not None:
                value[name] = Decimal(value[name])
        if value.get("pending") is not None:
            value["pending"] = Pending(**value["pending"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


class RecordStore:
    def __init__(
        self, connection: redis.Redis, tourwell_base_url: str, cipher: Cipher | None = None
    ) -> None:
        self._redis = connection
        self._base_url = tourwell_base_url
        self._cipher = cipher or Cipher(())

    @staticmethod
    def keys(invoice_id: int) -> tuple[str, str]:
        """The keys of an invoice's record and of its last accepted body, in that order."""
        return record_key(invoice_id), body_key(invoice_id)

    def get(self, invoice_id: int, with_body: bool = True) -> Record | None:
        """The invoice's record; ``with_body=False`` leaves ``last_body`` unread (None), for
        a reader that does not need it and will not save the record."""
        if not with_body:
            return self.decode(invoice_id, self._redis.get(record_key(invoice_id)))
        return self.decode_with_body(invoice_id, *self._redis.mget(self.keys(invoice_id)))

    def decode(self, invoice_id: int, raw: bytes | None) -> Record | None:
        """The record stored as ``raw`` (the value at its key, read by whoever read it),
        without its body: ``last_body`` is None unless the record holds it inside."""
        if raw is None:
            return None
        try:
            return Record.from_json(self._cipher.open(raw))
        except (ValueError, TypeError, AttributeError, ArithmeticError) as exc:
            raise _damaged(invoice_id, "record", exc) from None

    def decode_with_body(
        self, invoice_id: int, raw: bytes | None, raw_body: bytes | None
    ) -> Record | None:
        """The record stored as ``raw``, with its last accepted body stored as ``raw_body``
        (the values at ``keys``). A record Finan accepted a body for must have that body,
        byte for byte the one its ``fingerprint`` names; a body left behind by a record
        deleted by hand is not a new record's."""
        record = self.decode(invoice_id, raw)
        if record is None or not record.accepted:
            return record
        if record.last_body is None and raw_body is not None:  # else kept inside (older)
            try:
                record.last_body = self._cipher.open(raw_body)
            except ValueError as exc:
                raise _damaged(invoice_id, "body", exc) from None
        if record.last_body is None or fingerprint(record.last_body) != record.fingerprint:
            problem = "missing" if record.last_body is None else "not the one Finan accepted"
            raise _damaged(invoice_id, "body", problem)
        return record

    def new(self, invoice_id: int) -> Record:
        return Record(
            invoice_id=invoice_id,
            provider_invoice_id=provider_invoice_id(self._base_url, invoice_id),
        )

    def save(
        self,
        record: Record,
        event: Event | None = None,
        *also: Callable[[redis.client.Pipeline], None] | None,
    ) -> None:
        """Write the record, its indexes and ``event``, plus each step of ``also`` (given
        the pipeline; None is skipped), atomically."""
        record.updated_at = now_iso()
        score = time.time()
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.multi()  # explicit, so that ``also`` (e.g. RQ) adds to this same transaction
            pipe.set(record_key(record.invoice_id), self._cipher.seal(record.to_json()))
            if record.last_body is not None:  # None: not read, and so left as it is
                pipe.set(body_key(record.invoice_id), self._cipher.seal(record.last_body))
            pipe.zadd(INDEX_ALL_KEY, {record.invoice_id: score})
            for state in STATES:
                if state != record.state:
                    pipe.zrem(state_index_key(state), record.invoice_id)
            if record.state is not None:
                pipe.zadd(state_index_key(record.state), {record.invoice_id: score})
            if record.code:
                pipe.zadd(CODE_INDEX_KEY, {code_member(record.code, record.invoice_id): 0})
            if event is not None:
                self._push_event(pipe, record.invoice_id, event)
            for step in also:
                if step is not None:
                    step(pipe)
            pipe.execute()

    def add_event(self, invoice_id: int, event: Event) -> None:
        """Add to the history without changing the record (e.g. a write-back's outcome)."""
        with self._redis.pipeline(transaction=True) as pipe:
            self._push_event(pipe, invoice_id, event)
            pipe.execute()

    def _push_event(self, pipe: redis.client.Pipeline, invoice_id: int, event: Event) -> None:
        """Add (to ``pipe``) ``event`` at the head of the history, capped at its length."""
        entry = json.dumps(dataclasses.asdict(event), ensure_ascii=False)
        pipe.lpush(history_key(invoice_id), self._cipher.seal(entry))
        pipe.ltrim(history_key(invoice_id), 0, HISTORY_LENGTH - 1)

    def history(self, invoice_id: int, limit: int = HISTORY_LENGTH) -> list[Event]:
        """The invoice's events, newest first."""
        raw = self._redis.lrange(history_key(invoice_id), 0, limit - 1)
        return [Event.from_json(self._cipher.open(entry)) for entry in raw]

    def ids_in_state(self, state: str) -> list[int]:
        """Invoice ids whose record is in ``state``, oldest change first."""
        return [int(member) for member in self._redis.zrange(state_index_key(state), 0, -1)]

    def count_by_state(self) -> dict[str, int]:
        with self._redis.pipeline(transaction=False) as pipe:
            for state in STATES:
                pipe.zcard(state_index_key(state))
            counts = pipe.execute()
        return dict(zip(STATES, counts, strict=True))

    def get_many(self, invoice_ids: list[int]) -> list[Record]:
        """The records of ``invoice_ids`` that exist, in the same order, without their
        ``last_body`` (for lists)."""
        if not invoice_ids:
            return []
        raws = self._redis.mget([record_key(invoice_id) for invoice_id in invoice_ids])
        found = []
        for invoice_id, raw in zip(invoice_ids, raws, strict=True):
            try:
                record = self.decode(invoice_id, raw)
            except StoredDataDamaged as exc:  # one bad record must not hide the others
                log.error("invoice %s left out of a list: %s", invoice_id, exc.message)
                continue
            if record is not None:
                found.append(record)
        return found

    def exists(self, invoice_ids: list[int]) -> list[bool]:
        with self._redis.pipeline(transaction=False) as pipe:
            for invoice_id in invoice_ids:
                pipe.exists(record_key(invoice_id))
            return [bool(found) for found in pipe.execute()]

    def page(
        self,
        state: str | None,
        offset: int,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[int, list[Record]]:
        """(how many records there are, ``limit`` of them from ``offset``), newest change
        first; all records, or those in ``state``; changed last at ``since`` or later and
        before ``until`` (epoch seconds) when given."""
        key = state_index_key(state) if state else INDEX_ALL_KEY
        with self._redis.pipeline(transaction=False) as pipe:
            if since is None and until is None:
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1)
            else:
                low, high = _score_bounds(since, until)
                pipe.zcount(key, low, high)
                pipe.zrevrangebyscore(key, high, low, start=offset, num=limit)
            total, members = pipe.execute()
        return total, self.get_many([int(member) for member in members])

    def _ids_newest_first(
        self, key: str, since: float | None, until: float | None
    ) -> Iterator[list[int]]:
        """The ids in ``key`` (within ``since``/``until``), newest change first, in chunks."""
        low, high = _score_bounds(since, until)
        offset = 0
        while True:
            members = self._redis.zrevrangebyscore(key, high, low, start=offset, num=SCAN_CHUNK)
            if not members:
                return
            yield [int(member) for member in members]
            offset += len(members)

    def search(
        self,
        query: str,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Record]:
        """Records whose invoice id is ``query``, or whose code starts with it (any case), or
        whose customer's name holds it (any case, with or without Vietnamese accents: "nguyen
        van" finds "Nguyễn Văn An"), newest change first, at most ``SEARCH_LIMIT``; only those
        in ``state``, and changed within ``since``/``until``, if given."""
        query = query.strip()
        if not query:
            return []
        found = {record.invoice_id: record for record in self._search_id_or_code(query)}
        key = state_index_key(state) if state else INDEX_ALL_KEY
        wanted = fold(query)
        # A name has letters: an id alone is not looked for among them.
        chunks = () if query.isdigit() else self._ids_newest_first(key, since, until)
        for chunk in chunks:
            if len(found) >= SEARCH_LIMIT:
                break
            for record in self.get_many(chunk):
                if record.customer and wanted in fold(record.customer):
                    found.setdefault(record.invoice_id, record)
        low, high = _score_bounds(since, until)
        selected = [
            record
            for record in found.values()
            if (state is None or record.state == state)
            and (low == "-inf" or _epoch(record.updated_at) >= since)
            and (high == "+inf" or _epoch(record.updated_at) < until)
        ]
        selected.sort(key=lambda record: record.updated_at, reverse=True)
        return selected[:SEARCH_LIMIT]

    def _search_id_or_code(self, query: str) -> list[Record]:
        """Records whose invoice id is ``query`` or whose code starts with it (any case)."""
        prefix = query.upper().encode()
        members = self._redis.zrangebylex(
            CODE_INDEX_KEY, b"[" + prefix, b"[" + prefix + b"\xff", start=0, num=SEARCH_LIMIT
        )
        candidates = {int(member.rpartition(b"\0")[2]) for member in members}
        if query.isascii() and query.isdigit():  # "²" is a digit to isdigit, not to int
            candidates.add(int(query))
        found = [
            record
            for record in self.get_many(sorted(candidates))
            if str(record.invoice_id) == query
            # The index may still hold a code the invoice no longer has.
            or (record.code or "").strip().upper().startswith(query.upper())
        ]
        return found


def fold(text: str) -> str:
    """``text`` for a search: lower case, without accents (đ as d), spaces collapsed."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def _score_bounds(since: float | None, until: float | None) -> tuple[str, str]:
    """ZRANGEBYSCORE's bounds of [since, until): open ends are infinite."""
    low = "-inf" if since is None else repr(float(since))
    high = "+inf" if until is None else f"({float(until)!r}"
    return low, high


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()
