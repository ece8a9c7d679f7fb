"""How a record is kept in Redis: the record, and beside it the last body Finan accepted."""

from __future__ import annotations

import json

import pytest
from helpers import API, finan_puts, issue

from bridge.sandbox.samples import sample_invoices
from bridge.store.connection import body_key, record_key
from bridge.store.encryption import StoredDataUnreadable
from bridge.store.records import Record


def records_of(app):
    return app.extensions["bridge"].records


def test_the_last_body_is_kept_beside_the_record_and_a_repeat_reads_the_record_alone(
    app, client, crm_headers, finan, redis, round_trips
):
    body = json.dumps(sample_invoices()[17])
    assert issue(client, crm_headers, data=body, content_type="application/json").status_code == 201

    stored = json.loads(redis.get(record_key(17)))
    assert "last_body" not in stored
    assert json.loads(redis.get(body_key(17))) == finan_puts(finan)[0]["body"]

    round_trips.clear()
    repeat = issue(client, crm_headers, data=body, content_type="application/json")

    assert repeat.status_code == 201
    # Two round trips: the failed-authentication limit's check, then the GET of the record
    # alone (not its body).
    limit_check, record_read = (b"".join(command) for command in round_trips)
    assert b"bridge:auth_limit:" in limit_check
    assert record_read == b"*2\r\n$3\r\nGET\r\n$16\r\nbridge:record:17\r\n"
    assert len(finan_puts(finan)) == 1


def test_a_record_kept_with_its_body_inside_is_read_and_split_at_its_next_save(
    app, client, crm_headers, finan, redis
):
    assert issue(client, crm_headers).status_code == 201
    issued_body = redis.get(body_key(17)).decode()
    old_form = json.loads(redis.get(record_key(17)))
    old_form["last_body"] = issued_body  # as records were kept before the split
    redis.set(record_key(17), json.dumps(old_form))
    redis.delete(body_key(17))
    assert records_of(app).get(17).last_body == issued_body

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers, json={"cancel_note": "off"})

    assert cancel.status_code == 201
    sent = finan_puts(finan)[-1]["body"]
    assert sent["items"] == []  # built from the body kept inside the old record
    assert sent["reference_code"] == json.loads(issued_body)["reference_code"]
    assert "last_body" not in json.loads(redis.get(record_key(17)))
    assert json.loads(redis.get(body_key(17))) == sent


def test_a_body_left_behind_by_a_record_deleted_by_hand_is_not_read_as_a_new_records(app, redis):
    records = records_of(app)
    redis.set(body_key(17), b'{"value_at": "2020-01-01T00:00:00.000Z"}')  # an old record's
    records.save(records.new(17))  # a new record, Finan has accepted nothing for it yet

    assert records.get(17).last_body is None
    assert records.get(17, with_body=False).last_body is None


def test_a_record_read_without_its_body_and_saved_keeps_the_body(app, client, crm_headers, redis):
    assert issue(client, crm_headers).status_code == 201
    records = records_of(app)
    kept = redis.get(body_key(17))

    record = records.get(17, with_body=False)
    assert isinstance(record, Record) and record.last_body is None
    record.lookup_url = "https://example.test/lookup/17"
    records.save(record)

    assert redis.get(body_key(17)) == kept
    assert records.get(17).last_body == kept.decode()


def test_an_accepted_record_whose_body_is_missing_is_a_503_and_nothing_is_sent(
    app, client, crm_headers, finan, redis
):
    assert issue(client, crm_headers).status_code == 201
    redis.delete(body_key(17))  # e.g. a partial restore, or a key deleted by hand

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers, json={})
    update = client.put(f"{API}/17", headers=crm_headers, json={})

    for answer in (cancel, update):
        assert answer.status_code == 503
        assert "body of invoice 17 in Redis is damaged (missing)" in answer.json["message"]
    assert len(finan_puts(finan)) == 1  # the issue's only: nothing re-dated or emptied
    assert client.get(f"{API}/17", headers=crm_headers).status_code == 200  # no body needed


@pytest.mark.parametrize(
    ("stored", "problem"),
    [(b'{"value_at": "2020-01-01T00:00:00.000Z"}', "not the one Finan accepted"),
     (b"\xff\xfe", "UnicodeDecodeError")],
    ids=["another body", "not UTF-8"],
)  # fmt: skip
def test_an_accepted_record_whose_body_is_not_the_accepted_one_is_a_503(
    app, client, crm_headers, finan, redis, stored, problem
):
    assert issue(client, crm_headers).status_code == 201
    redis.set(body_key(17), stored)

    cancel = client.post(f"{API}/17/cancel", headers=crm_headers, json={})

    assert cancel.status_code == 503
    assert f"body of invoice 17 in Redis is damaged ({problem})" in cancel.json["message"]
    assert len(finan_puts(finan)) == 1


def test_a_list_leaves_out_a_damaged_record_and_shows_the_others(app, client, crm_headers):
    for invoice_id in (17, 18):
        assert issue(client, crm_headers, invoice_id).status_code == 201
    redis = app.extensions["bridge"].redis
    redis.set(record_key(18), b"{not json")

    total, shown = records_of(app).page(None, 0, 10)

    assert total == 2  # the index still counts it
    assert [record.invoice_id for record in shown] == [17]


def test_a_list_without_the_encryption_key_is_a_503_not_an_empty_list(make_app, crm_headers):
    from cryptography.fernet import Fernet

    with_key = make_app(BRIDGE_ENCRYPTION_KEY=Fernet.generate_key().decode())
    assert issue(with_key.test_client(), crm_headers).status_code == 201
    without = records_of(make_app())

    with pytest.raises(StoredDataUnreadable, match="BRIDGE_ENCRYPTION_KEY"):
        without.page(None, 0, 10)
