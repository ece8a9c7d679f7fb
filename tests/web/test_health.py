"""The service endpoints: no auth, and readiness follows Redis."""

from __future__ import annotations


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ok_while_redis_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["redis"] == "ok"


def test_a_wrong_method_is_405_in_the_envelope(client):
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.json["success"] is False
    assert "GET" in response.headers["Allow"]
