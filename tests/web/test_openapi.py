"""GET /openapi.json: a valid OpenAPI document covering every route, and schemathesis
against a live bridge (a real server thread on loopback, talking to the stand-ins)."""

from __future__ import annotations

import itertools

import pytest
import requests
import schemathesis
from helpers import CRM_TOKEN, served_openapi_document
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode

from bridge.config import load_settings
from bridge.sandbox.loopback import LoopbackServer
from bridge.web.app import create_app
from bridge.web.openapi import ERROR_DESCRIPTIONS, OPERATIONS, build_spec, document, openapi_path


def test_the_document_is_valid_openapi(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.content_type == "application/json"
    validate(response.json)  # raises on any error
    assert response.json["openapi"].startswith("3.1")


def test_every_route_of_the_app_is_in_the_document(app, client):
    paths = client.get("/openapi.json").json["paths"]

    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert len(rules) >= 8
    for rule in rules:
        path = openapi_path(rule.rule)
        assert path in paths, rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule}"


def test_crm_operations_need_the_bearer_token_and_list_every_error(client):
    doc = client.get("/openapi.json").json
    issue = doc["paths"]["/api/v1/invoices/{invoice_id}/issue"]["post"]

    assert doc["components"]["securitySchemes"]["crmToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of BRIDGE_CRM_TOKENS.",
    }
    assert issue["security"] == [{"crmToken": []}]
    assert set(issue["responses"]) == {"201", "202"} | {str(s) for s in ERROR_DESCRIPTIONS}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    body = issue["responses"]["502"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ErrorEnvelope"}


def test_request_bodies_come_from_the_crm_schemas_and_accept_unknown_fields(client):
    schemas = client.get("/openapi.json").json["components"]["schemas"]

    assert "total_amount" in schemas["Invoice"]["properties"]
    assert schemas["Invoice"]["required"] == ["id"]
    assert "forward_email" in schemas["Update"]["properties"]
    for name in ("Invoice", "Update", "Cancel", "Customer", "Price"):
        assert schemas[name].get("additionalProperties", True) is not False, name
    assert schemas["Record"]["additionalProperties"] is False  # the bridge's own output


def test_a_route_without_an_operation_stops_the_build(app):
    app.add_url_rule("/admin/nothing", "admin.nothing", lambda: "")

    with pytest.raises(LookupError, match="admin.nothing"):
        build_spec(app)


def test_a_later_blueprint_documents_its_routes_with_document(app, monkeypatch):
    monkeypatch.setattr("bridge.web.openapi.OPERATIONS", dict(OPERATIONS))
    app.add_url_rule("/admin/invoices", "admin.invoices", lambda: "")

    document(
        "admin.invoices", "GET", {"summary": "Records", "responses": {"200": {"description": "ok"}}}
    )

    assert "/admin/invoices" in build_spec(app).to_dict()["paths"]


# --- schemathesis against a live bridge ---


AUTH = {"Authorization": f"Bearer {CRM_TOKEN}"}
DOCUMENT = served_openapi_document()
fuzzed = schemathesis.openapi.from_dict(DOCUMENT)
fuzzed.config.generation.update(max_examples=40, deterministic=True, database="none")
# A schema-valid invoice can still be refused by rules JSON Schema can't express (the body's
# id must match the path, the totals must agree, each VAT rate needs a tax id): that is 422.
fuzzed.config.checks.positive_data_acceptance.expected_statuses.append("422")


@pytest.fixture
def live_bridge(environ, redis):
    """The bridge served by a real HTTP server thread, against the stand-ins.

    The CRM's rate limit is raised so that the fuzzer's many pulls are not slowed to 60
    a minute (the limit itself is tested in test_clients.py).
    """
    settings = load_settings({**environ, "TOURWELL_RATE_LIMIT_PER_MIN": "100000"})
    with LoopbackServer(create_app(settings, redis)) as server:
        served = requests.get(f"{server.url}/openapi.json", timeout=10).json()
        assert served == DOCUMENT  # what is fuzzed is what the live bridge serves
        for invoice_id in (17, 18):  # so that updates and cancels get past "issue it first"
            response = requests.post(
                f"{server.url}/api/v1/invoices/{invoice_id}/issue", headers=AUTH, timeout=30
            )
            assert response.status_code == 201, response.text
        yield server


_keys = itertools.count()


def steer(case: schemathesis.Case) -> None:
    """Keep valid requests from stopping at the first gate, so they reach the operation.

    The fuzzer reuses Idempotency-Key values with other bodies (a correct 422 that would
    turn most requests away before their body is read), and an invoice in the body must
    carry the id of the path. Only valid (positive) cases are changed, and they stay valid.
    """
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"fuzz-{next(_keys)}"
    body = case.body
    invoice = body.get("data") if isinstance(body, dict) and "id" not in body else body
    if "invoice_id" in case.path_parameters and isinstance(invoice, dict):
        given = str(invoice.get("id", "")).strip()
        if given.isascii() and given.isdigit() and int(given) > 0:
            case.path_parameters["invoice_id"] = int(given)


@fuzzed.parametrize()
@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_finds_no_server_error_and_every_answer_conforms(case, live_bridge):
    steer(case)
    case.call_and_validate(base_url=live_bridge.url, headers=AUTH)
