"""The status page asks before a force re-sync and before a bulk re-sync (the list, and for
dead invoices the warning to check the CRM); a batch page lists every invoice's result, and
past batches are listed (page and GET /admin/resync) newest first, without expired ones.
Flask's test client with the page's login and CSRF token, real Redis, the stand-ins, RQ in
burst mode."""

from __future__ import annotations

import re
import time

import pytest
from helpers import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_TOKENS,
    csrf_token,
    finan_puts,
    issue,
    make_failed,
    run_worker,
)

from bridge.store.connection import batch_index_key


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKENS, BRIDGE_RETRY_SCHEDULE="0,0,0")


@pytest.fixture
def operator(client):
    form = client.get("/admin/login").get_data(as_text=True)
    logged = client.post(
        "/admin/login", data={"csrf_token": csrf_token(form), "token": ADMIN_TOKEN}
    )
    assert logged.status_code == 303
    return client


def page(client, path) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def make_dead(app, invoice_id):
    records = app.extensions["bridge"].records
    record = records.get(invoice_id)
    record.state = "dead"
    records.save(record)


def test_force_resync_explains_itself_and_asks_first(operator, crm_headers, finan):
    assert issue(operator, crm_headers, 17).status_code == 201
    html = page(operator, "/admin/invoice/17")
    assert "even when Finan already holds the same content" in html
    sent = len(finan_puts(finan))

    asked = operator.post(
        "/admin/invoice/17/resync", data={"csrf_token": csrf_token(html), "force": "1"}
    )

    assert asked.status_code == 200
    question = asked.get_data(as_text=True)
    assert "change in Finan" in question and 'name="confirm" value="1"' in question
    assert len(finan_puts(finan)) == sent  # nothing sent before the confirmation
    done = operator.post(
        "/admin/invoice/17/resync",
        data={"csrf_token": csrf_token(question), "force": "1", "confirm": "1"},
    )
    assert done.status_code == 303
    assert finan_puts(finan)[-1]["outcome"] == "updated"


def test_bulk_resync_of_dead_lists_them_warns_and_asks(operator, crm_headers, finan):
    for invoice_id in (18, 20):
        make_failed(operator, crm_headers, finan, invoice_id)
        make_dead(operator.application, invoice_id)
    index = page(operator, "/admin/")
    sent = len(finan_puts(finan))

    asked = operator.post(
        "/admin/bulk-resync", data={"csrf_token": csrf_token(index), "state": "dead"}
    )

    assert asked.status_code == 200
    html = asked.get_data(as_text=True)
    assert "HD018" in html and "HD020" in html
    assert "cancelled in the CRM" in html  # the dead-specific warning
    ids = re.search(r'name="ids" value="([^"]*)"', html).group(1)
    assert sorted(ids.split()) == ["18", "20"]
    assert len(finan_puts(finan)) == sent
    # Invoice 18 leaves dead before the confirmation (say the CRM's cancel came): left out.
    assert operator.post("/api/v1/invoices/18/cancel", headers=crm_headers).status_code in (
        201,
        202,
    )
    confirmed = operator.post(
        "/admin/bulk-resync",
        data={"csrf_token": csrf_token(html), "state": "dead", "confirm": "1", "ids": ids},
    )
    assert confirmed.status_code == 303
    run_worker(operator.application)
    batch_page = page(operator, confirmed.headers["Location"])
    assert "<strong>1 / 1</strong>" in batch_page
    assert 'href="/admin/invoice/20"' in batch_page and 'data-result="sent"' in batch_page


def test_bulk_resync_of_failed_has_no_dead_warning(operator, crm_headers, finan):
    make_failed(operator, crm_headers, finan, 20)
    index = page(operator, "/admin/")

    asked = operator.post(
        "/admin/bulk-resync", data={"csrf_token": csrf_token(index), "state": "failed"}
    )

    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "HD020" in html
    assert "cancelled in the CRM" not in html
    bad = operator.post(
        "/admin/bulk-resync",
        data={"csrf_token": csrf_token(html), "state": "failed", "confirm": "1", "ids": "2x"},
    )
    assert bad.status_code == 422


def test_a_batch_page_lists_every_invoice_a_page_at_a_time(operator, crm_headers, finan, redis):
    make_failed(operator, crm_headers, finan, 20)
    assert issue(operator, crm_headers, 17).status_code == 201
    batches = operator.application.extensions["bridge"].batches
    batch = batches.start(ids=[20, 17, 999], runner="queue")
    run_worker(operator.application)

    html = page(operator, f"/admin/batch/{batch.batch_id}")

    rows = re.findall(r'<tr data-result="(\w+)"><td><a href="/admin/invoice/(\d+)"', html)
    assert rows == [("sent", "20"), ("unchanged", "17"), ("failed", "999")]  # not only problems
    assert [i.invoice_id for i in batches.items(batch.batch_id, 1, 1)] == [17]  # paged


def test_past_batches_are_listed_newest_first_without_expired_ones(
    operator, client, crm_headers, finan, redis
):
    services = operator.application.extensions["bridge"]
    first = services.batches.start(ids=[17], runner="queue", started_by="Lan (status page)")
    second = services.reconciliations.start(ids=[], runner="queue")
    gone = services.batches.start(ids=[18], runner="queue")
    redis.delete(f"bridge:batch:{gone.batch_id}")  # expired
    redis.zadd(batch_index_key(), {"0" * 32: time.time() - 8 * 86400})  # older than a week

    answer = client.get("/admin/resync", headers=ADMIN)

    assert answer.status_code == 200, answer.json
    listed = answer.json["data"]["batches"]
    assert [(b["batch_id"], b["kind"]) for b in listed] == [
        (second.batch_id, "reconcile"),
        (first.batch_id, "resync"),
    ]
    assert listed[1]["started_by"] == "Lan (status page)" and listed[1]["counts"]["sent"] == 0
    assert listed[0]["finished"] is True and "problems" not in listed[0]
    assert answer.json["data"]["total"] == 2
    assert redis.zcard(batch_index_key()) == 2  # trimmed
    html = page(operator, "/admin/batches")
    assert first.batch_id in html and second.batch_id in html and "Lan (status page)" in html
    assert client.get("/admin/resync?per_page=0", headers=ADMIN).status_code == 422
