"""The clients' wall-clock deadline: an answer trickled a byte at a time (each read well
within the read timeout) is cut off at the deadline and treated like a timeout, so no call
to Finan or the CRM can outlive the invoice's lock.

Over real HTTP: the Finan stand-in's ``trickle`` fault, and for the CRM a bare socket
server that does the same. The shortened deadlines are the clients' public ``deadline``
parameter; the production figure is checked against the lock by the first test.
"""

from __future__ import annotations

import inspect
import socket
import threading
import time

import pytest

from bridge.config import load_settings
from bridge.errors import CrmUnavailable, ProviderUnavailable
from bridge.integrations import http
from bridge.integrations.finan.client import FinanClient
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.mapping import MappingConfig, map_invoice
from bridge.sandbox.samples import sample_invoices
from bridge.store.lock import LOCK_TIMEOUT_SECONDS
from bridge.store.records import provider_invoice_id
from schemas.finan import encode_request
from schemas.tourwell import load_invoice

# A deadline short enough to wait for in a test.
SHORT_DEADLINE_SECONDS = 2.0
# How often the trickle sends a byte: far within any read timeout, and slow enough that a
# whole answer (hundreds of bytes) would take minutes.
TRICKLE_EVERY_SECONDS = 0.25
# Only bounds a failure: an uncut trickle takes minutes.
GENEROUS_SECONDS = 30.0


@pytest.fixture
def body(settings) -> bytes:
    invoice = load_invoice(sample_invoices()[17])
    return encode_request(map_invoice(invoice, MappingConfig.from_settings(settings)))


@pytest.fixture
def finan_id(settings) -> str:
    return provider_invoice_id(settings.tourwell_base_url, 17)


def puts(standin) -> list[dict]:
    return [r for r in standin.state.requests_snapshot() if r["method"] == "PUT"]


def test_no_call_can_outlive_half_the_invoice_lock():
    # The lock is renewed to its whole expiry before the call to Finan when less than half
    # is left: a call ending by its deadline ends while the lock is surely held.
    assert http.CALL_DEADLINE_SECONDS < LOCK_TIMEOUT_SECONDS / 2
    assert http.TRY_DEADLINE_SECONDS <= http.CALL_DEADLINE_SECONDS
    for client in (FinanClient, TourwellClient):
        default = inspect.signature(client).parameters["deadline"].default
        assert default == http.CALL_DEADLINE_SECONDS


def test_a_trickling_finan_is_cut_at_the_deadline_like_a_timeout(
    settings, finan, body, finan_id, retry_sleeps
):
    finan.state.fail_next("trickle", count=3, delay=TRICKLE_EVERY_SECONDS)
    client = FinanClient(settings, sleep=retry_sleeps, deadline=SHORT_DEADLINE_SECONDS)

    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        client.update_invoice(finan_id, body)
    took = time.monotonic() - started

    assert "no answer within the timeout" in caught.value.message  # a timeout's words
    assert SHORT_DEADLINE_SECONDS <= took < GENEROUS_SECONDS  # cut, not read to the end
    # The one try used the whole deadline: no second try was started without time for it.
    assert len(puts(finan)) == 1 and retry_sleeps == []
    # Finan stored it before it trickled its answer: "may have reached Finan", as a timeout.
    assert list(finan.state.invoices) == [finan_id]


def test_an_answer_trickled_within_the_deadline_is_read_whole(
    settings, finan, body, finan_id, retry_sleeps
):
    finan.state.fail_next("trickle", delay=0.002)

    answer = FinanClient(settings, sleep=retry_sleeps).update_invoice(finan_id, body)

    assert answer.data["id"] == finan_id
    assert answer.data["order_code"] == "HD1"


class TricklingServer:
    """A bare HTTP server: each connection gets a 200's headers (with a Content-Length) at
    once, then its body one byte every ``every`` seconds, until the client goes away."""

    BODY = b'{"data": {"id": 17, "note": "' + b"x" * 400 + b'"}}'

    def __init__(self, every: float) -> None:
        self.every = every
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(self.BODY)
                )
                for index in range(len(self.BODY)):
                    connection.sendall(self.BODY[index : index + 1])
                    time.sleep(self.every)
            except OSError:
                pass  # the client cut it off

    def close(self) -> None:
        self._listener.close()


def test_a_trickling_crm_is_cut_at_the_deadline_like_a_timeout(environ, redis, retry_sleeps):
    server = TricklingServer(every=TRICKLE_EVERY_SECONDS)
    try:
        settings = load_settings({**environ, "TOURWELL_BASE_URL": server.url})
        client = TourwellClient(
            settings, redis, sleep=retry_sleeps, deadline=SHORT_DEADLINE_SECONDS
        )

        started = time.monotonic()
        with pytest.raises(CrmUnavailable) as caught:
            client.get_invoice(17)
        took = time.monotonic() - started
    finally:
        server.close()

    assert "the CRM did not answer in time" in caught.value.message
    assert SHORT_DEADLINE_SECONDS <= took < GENEROUS_SECONDS
    assert server.connections == 1
