"""The CRM and Finan clients against the stand-ins misbehaving on cue, over real HTTP."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.errors import (
    CrmFailed,
    CrmUnavailable,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from bridge.integrations.finan.client import FinanClient
from bridge.integrations.http import MAX_INLINE_RETRY_AFTER_SECONDS, parse_retry_after
from bridge.integrations.tourwell.client import TourwellClient
from bridge.invoices.mapping import MappingConfig, map_invoice
from bridge.sandbox.samples import sample_invoices
from bridge.store.records import provider_invoice_id
from schemas.finan import encode_request
from schemas.tourwell import load_invoice


@pytest.fixture
def body(settings) -> bytes:
    invoice = load_invoice(sample_invoices()[17])
    return encode_request(map_invoice(invoice, MappingConfig.from_settings(settings)))


@pytest.fixture
def finan_id(settings) -> str:
    return provider_invoice_id(settings.tourwell_base_url, 17)


def puts(standin) -> list[dict]:
    return [r for r in standin.state.requests_snapshot() if r["method"] == "PUT"]


def gets(standin) -> list[dict]:
    with standin.state.lock:
        return [r for r in standin.state.requests if r["method"] == "GET"]


# --- Finan ---


def test_a_signed_update_is_accepted_with_finans_totals(settings, finan, body, finan_id):
    answer = FinanClient(settings).update_invoice(finan_id, body)

    assert answer.code == 102001
    assert str(answer.data["total_amount"]) == "6325000"
    assert [r["outcome"] for r in puts(finan)] == ["created"]


@pytest.mark.parametrize("mode", ["server_error", "server_error_200", "unavailable", "reset"])
def test_transient_failures_are_retried_onto_the_same_invoice(
    settings, finan, body, finan_id, mode, retry_sleeps
):
    finan.state.fail_next(mode, count=2)

    answer = FinanClient(settings, sleep=retry_sleeps).update_invoice(finan_id, body)

    assert answer.code == 102001
    sent = puts(finan)
    assert len(sent) == 3
    assert {r["path"] for r in sent} == {f"/api/v1/invoice/update-invoice/{finan_id}"}


def test_a_hang_past_the_read_timeout_is_retried(settings, finan, body, finan_id, retry_sleeps):
    finan.state.fail_next("hang", delay=3.0)  # ten times the read timeout

    client = FinanClient(settings, timeout=(1.0, 0.3), sleep=retry_sleeps)
    answer = client.update_invoice(finan_id, body)

    assert answer.code in (102000, 102001)
    assert len(finan.state.invoices) == 1


def test_a_client_class_code_is_never_retried(settings, finan, body, finan_id):
    finan.state.fail_next("client_error", count=3)

    with pytest.raises(ProviderRejected) as caught:
        FinanClient(settings).update_invoice(finan_id, body)

    assert caught.value.code == 104001
    assert len(puts(finan)) == 1


def test_a_wrong_secret_is_a_rejection_naming_the_settings(settings, finan, body, finan_id):
    wrong = dataclasses.replace(settings, provider_secret_key="not-the-secret")

    with pytest.raises(ProviderRejected) as caught:
        FinanClient(wrong).update_invoice(finan_id, body)

    assert "PROVIDER_SECRET_KEY" in caught.value.message
    assert "not-the-secret" not in caught.value.message


def test_finan_down_after_every_try_is_unavailable_with_retry_after(
    settings, finan, body, finan_id, retry_sleeps
):
    finan.state.fail_next("server_error", count=3)

    with pytest.raises(ProviderUnavailable) as caught:
        FinanClient(settings, sleep=retry_sleeps).update_invoice(finan_id, body)

    assert caught.value.retry_after >= 1
    assert len(puts(finan)) == 3
    assert finan.state.invoices == {}


def test_finans_retry_after_is_waited_for(settings, finan, body, finan_id, retry_sleeps):
    finan.state.fail_next("unavailable", count=1)  # answers Retry-After: 1

    FinanClient(settings, sleep=retry_sleeps).update_invoice(finan_id, body)

    assert retry_sleeps == [1.0]  # Finan's Retry-After, not the backoff
    assert len(puts(finan)) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_forms(header, expected):
    assert parse_retry_after(header) == expected


def test_a_long_retry_after_is_not_waited_for_inline(retry_sleeps):
    from bridge.integrations.http import RetryableAnswer, call_with_retries

    tries = []

    def busy_for_a_while():
        tries.append(1)
        raise RetryableAnswer("busy", retry_after=MAX_INLINE_RETRY_AFTER_SECONDS + 30)

    with pytest.raises(RetryableAnswer):
        call_with_retries(busy_for_a_while, attempts=3, sleep=retry_sleeps)

    assert len(tries) == 1  # gave up at once: the caller answers 503 with Retry-After
    assert retry_sleeps == []  # nothing waited


def test_a_short_retry_after_is_retried_up_to_the_attempts(retry_sleeps):
    from bridge.integrations.http import RetryableAnswer, call_with_retries

    tries = []

    def blip():
        tries.append(1)
        raise RetryableAnswer("blip")

    with pytest.raises(RetryableAnswer):
        call_with_retries(blip, attempts=3, sleep=retry_sleeps)

    assert len(tries) == 3
    assert len(retry_sleeps) == 2  # a backoff between tries


# --- Tourwell ---


def test_the_crm_pull_returns_the_invoice(settings, redis, tourwell):
    payload = TourwellClient(settings, redis).get_invoice(17)

    assert payload["data"]["code"] == sample_invoices()[17]["code"]


def test_an_unknown_invoice_is_not_found(settings, redis, tourwell):
    with pytest.raises(NotFound):
        TourwellClient(settings, redis).get_invoice(404404)


def test_the_crms_429_and_retry_after_are_honoured(settings, redis, tourwell, retry_sleeps):
    tourwell.state.fail_next("rate_limited")

    payload = TourwellClient(settings, redis, sleep=retry_sleeps).get_invoice(17)

    assert payload["data"]["id"] == 17
    assert len(gets(tourwell)) == 2
    assert retry_sleeps == [1.0]  # the CRM's Retry-After


def test_the_rate_limit_is_shared_by_every_client_through_redis(settings, redis, tourwell):
    limited = dataclasses.replace(settings, tourwell_rate_limit_per_min=3)
    web, worker = TourwellClient(limited, redis), TourwellClient(limited, redis)

    for client in (web, worker, web):
        client.get_invoice(17)
    with pytest.raises(CrmUnavailable) as caught:
        worker.get_invoice(17)

    assert caught.value.retry_after >= 1
    assert len(gets(tourwell)) == 3  # the fourth call never reached the CRM


def test_a_crm_that_stays_down_is_unavailable(settings, redis, tourwell, retry_sleeps):
    tourwell.state.fail_next("unavailable", count=3)

    with pytest.raises(CrmUnavailable):
        TourwellClient(settings, redis, sleep=retry_sleeps).get_invoice(17)

    assert len(gets(tourwell)) == 3


# --- how Finan's answers are classified (a canned server answers exactly as told) ---


@pytest.fixture
def canned(settings):
    """A loopback server that answers every request with one fixed response, and counts;
    the settings give it as both Finan and the CRM."""
    from flask import Flask, Response

    from bridge.sandbox.loopback import LoopbackServer

    app = Flask("canned")
    app.config.update(status=200, body="{}", hits=0)

    @app.route("/<path:anything>", methods=["GET", "PUT"])
    def answer(anything: str) -> Response:
        app.config["hits"] += 1
        return Response(
            app.config["body"], status=app.config["status"], mimetype="application/json"
        )

    with LoopbackServer(app) as server:
        yield (
            app.config,
            dataclasses.replace(
                settings, provider_base_url=server.url, tourwell_base_url=server.url
            ),
        )


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (401, '{"message": "Unauthorized"}'),  # no code: the HTTP status decides
        (500, '{"code": 104001, "message": {"content": "bad tax"}}'),  # the code decides
        (400, "<html>Bad Request</html>"),
    ],
)
def test_client_class_answers_are_rejections_sent_once(canned, body, status, answer):
    config, settings = canned
    config.update(status=status, body=answer)

    with pytest.raises(ProviderRejected) as caught:
        FinanClient(settings).update_invoice("a" * 8, body)

    assert config["hits"] == 1
    assert ("PROVIDER_SECRET_KEY" in caught.value.message) == (status == 401)


@pytest.mark.parametrize(
    ("status", "answer"),
    [(502, "<html>Bad Gateway</html>"), (200, "not json"), (200, '{"code": 105000}')],
)
def test_server_class_and_unreadable_answers_are_retried(
    canned, body, status, answer, retry_sleeps
):
    config, settings = canned
    config.update(status=status, body=answer)

    with pytest.raises(ProviderUnavailable):
        FinanClient(settings, sleep=retry_sleeps).update_invoice("a" * 8, body)

    assert config["hits"] == 3


def test_a_success_with_odd_fields_the_bridge_does_not_use_is_a_success(canned, body):
    config, settings = canned
    config.update(
        body='{"code": 102000, "data": {"order_code": "HD9", "total_amount": 100, '
        '"created_at": "", "contact_info": {"contact_number": 912345678}}}'
    )

    answer = FinanClient(settings).update_invoice("a" * 8, body)

    assert answer.data["order_code"] == "HD9"
    assert config["hits"] == 1


@pytest.mark.parametrize(
    ("answer", "problem"),
    [(rb'{"data": {"id": 17, "code": "HD\ud800"}}', "surrogate"), (b"{'data': 1}", "JSON")],
)
def test_an_invoice_the_bridge_could_not_store_or_send_is_a_crm_failure(
    canned, redis, answer, problem
):
    config, settings = canned
    config.update(body=answer)

    with pytest.raises(CrmFailed) as caught:
        TourwellClient(settings, redis).get_invoice(17)

    assert caught.value.status == 502
    assert "invoice 17" in caught.value.message and problem in caught.value.message
