"""GET /openapi.json: a valid OpenAPI document covering every route, documented by the
views (flask-smorest); schemathesis against a live bridge (a real server thread on loopback,
talking to the stand-ins), and a client generated from the document (openapi-python-client)
that issues an invoice through it."""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys
from collections import Counter

import pytest
import requests
import schemathesis
from flask_smorest.spec.plugins import FlaskPlugin
from helpers import CRM_TOKEN, finan_puts, served_openapi_document
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode

from bridge.config import load_settings
from bridge.sandbox.loopback import LoopbackServer
from bridge.sandbox.samples import sample_invoices
from bridge.web.app import create_app
from bridge.web.openapi import (
    ERROR_DESCRIPTIONS,
    SERVICE_TAG,
    Blueprint,
    openapi_document,
)

openapi_path = FlaskPlugin.flaskpath2openapi
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(doc: dict) -> dict[str, dict]:
    """Every operation of ``doc``, by "METHOD path"."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


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


def test_every_operation_has_a_unique_operation_id_and_a_tag_of_the_document(client):
    doc = client.get("/openapi.json").json
    found = {name: op.get("operationId") for name, op in operations(doc).items()}

    assert None not in found.values(), [name for name, id_ in found.items() if id_ is None]
    assert [id_ for id_, n in Counter(found.values()).items() if n > 1] == []
    assert found["POST /api/v1/invoices/{invoice_id}/issue"] == "issueInvoice"
    tags = {tag["name"] for tag in doc["tags"]}
    for name, operation in operations(doc).items():
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, name


def test_envelopes_are_typed(client):
    schemas = client.get("/openapi.json").json["components"]["schemas"]

    envelopes = [name for name in schemas if name.endswith("Envelope")]
    assert len(envelopes) == 9  # + BatchListEnvelope (GET /admin/resync)
    for name in envelopes:
        success = schemas[name]["properties"]["success"]
        assert success["type"] == "boolean", name
        assert success["const"] is (name != "ErrorEnvelope"), name
        assert set(schemas[name]["required"]) >= {"success", "message"}
    assert schemas["Health"]["properties"]["status"]["type"] == "string"
    assert schemas["Health"]["properties"]["status"]["const"] == "ok"


def test_no_request_body_admits_json_null_which_the_bridge_refuses(client, crm_headers):
    doc = client.get("/openapi.json").json
    bodies = {
        name: op["requestBody"]["content"]
        for name, op in operations(doc).items()
        if "requestBody" in op
    }
    # three CRM operations, two admin re-syncs and a reconciliation, five page forms
    assert len(bodies) == 11
    assert "null" not in json.dumps(bodies)

    for path in ("/api/v1/invoices/17/issue", "/api/v1/invoices/17/cancel"):
        answer = client.post(
            path, data="null", headers=crm_headers, content_type="application/json"
        )
        assert answer.status_code == 422, path  # so the document must not offer null


def test_the_bridge_answers_errors_in_its_envelope_not_flask_smorest_s(client):
    for answer, status in (
        (client.get("/nowhere"), 404),
        (client.delete("/healthz"), 405),
        (client.get("/api/v1/invoices/17"), 401),
    ):
        assert answer.status_code == status
        assert answer.json["success"] is False
        assert set(answer.json) == {"success", "message", "errors"}, answer.json


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
        openapi_document(app)


def test_a_later_blueprint_documents_its_routes_where_they_are_defined(app):
    later = Blueprint("later", __name__, tag=SERVICE_TAG)

    @later.get("/later")
    @later.doc(operationId="getLater", summary="Later")
    @later.response(200, {"type": "object"}, description="ok")
    def view() -> dict:
        return {}

    app.extensions["bridge_api"].register_blueprint(later)

    operation = openapi_document(app)["paths"]["/later"]["get"]
    assert operation["operationId"] == "getLater"
    assert operation["tags"] == [SERVICE_TAG]


# --- schemathesis against a live bridge ---


AUTH = {"Authorization": f"Bearer {CRM_TOKEN}"}
DOCUMENT = served_openapi_document()
fuzzed = schemathesis.openapi.from_dict(DOCUMENT)
fuzzed.config.generation.update(max_examples=40, deterministic=True, database="none")
# A schema-valid invoice can still be refused by rules JSON Schema can't express (the body's
# id must match the path, the totals must agree, each VAT rate needs a tax id): that is 422.
fuzzed.config.checks.positive_data_acceptance.expected_statuses.append("422")


@pytest.fixture
def served_bridge(environ, redis):
    """The bridge served by a real HTTP server thread, against the stand-ins.

    The CRM's rate limit is raised so that the fuzzer's many pulls are not slowed to 60
    a minute (the limit itself is tested in test_clients.py), and so are the failed tokens it
    may send (test_brute_force.py).
    """
    raised = {
        "TOURWELL_RATE_LIMIT_PER_MIN": "100000",
        "BRIDGE_AUTH_FAILURES_PER_CLIENT_PER_MIN": "100000",
        "BRIDGE_AUTH_FAILURES_PER_MIN": "100000",
    }
    settings = load_settings({**environ, **raised})
    with LoopbackServer(create_app(settings, redis)) as server:
        served = requests.get(f"{server.url}/openapi.json", timeout=10).json()
        assert served == DOCUMENT  # what is fuzzed is what the live bridge serves
        yield server


@pytest.fixture
def live_bridge(served_bridge):
    """The served bridge, with invoices 17 and 18 issued."""
    for invoice_id in (17, 18):  # so that updates and cancels get past "issue it first"
        response = requests.post(
            f"{served_bridge.url}/api/v1/invoices/{invoice_id}/issue", headers=AUTH, timeout=30
        )
        assert response.status_code == 201, response.text
    return served_bridge


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


# --- a client generated from the live document ---


@pytest.fixture
def generated_client(served_bridge, tmp_path, monkeypatch):
    """The package ``bridge_client``, generated by openapi-python-client from the document
    the live bridge serves, imported from ``tmp_path``."""
    document = requests.get(f"{served_bridge.url}/openapi.json", timeout=10).json()
    (tmp_path / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        "project_name_override: bridge-client\n"
        "package_name_override: bridge_client\n"
        "post_hooks: []\n",  # no ruff run on the generated code: it is imported, not read
        encoding="utf-8",
    )
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--config",
            str(tmp_path / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "bridge_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # A schema or an operation it could not read is a warning, and that part is left out.
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("bridge_client")
    for name in [name for name in sys.modules if name.split(".")[0] == "bridge_client"]:
        del sys.modules[name]


def test_a_generated_client_issues_an_invoice_and_reads_its_record(
    generated_client, served_bridge, finan
):
    issue_invoice = importlib.import_module("bridge_client.api.crm.issue_invoice")
    get_invoice_record = importlib.import_module("bridge_client.api.crm.get_invoice_record")
    models = importlib.import_module("bridge_client.models")
    bridge = generated_client.AuthenticatedClient(base_url=served_bridge.url, token=CRM_TOKEN)

    with bridge as client:
        # The invoice in the body, in the shape of the CRM's GET (through the generated model).
        invoice = models.Invoice.from_dict(sample_invoices()[19])
        issued = issue_invoice.sync_detailed(19, client=client, body=invoice)
        found = get_invoice_record.sync(19, client=client)
        missing = get_invoice_record.sync(404404, client=client)

    assert issued.status_code == 201, issued.content
    assert isinstance(issued.parsed, models.SuccessEnvelope)
    assert issued.parsed.success is True
    assert issued.parsed.message == "Invoice issued successfully"
    assert isinstance(issued.parsed.data, models.Record)
    assert issued.parsed.data.invoice_id == 19
    assert issued.parsed.data.state == "issued"
    assert len(finan_puts(finan)) == 1

    assert isinstance(found, models.SuccessEnvelope)
    assert found.message == "Invoice record"
    record = found.data
    assert isinstance(record, models.Record)
    assert (record.invoice_id, record.code, record.state) == (19, "HD019", "issued")
    assert record.provider_invoice_id == issued.parsed.data.provider_invoice_id
    assert isinstance(record.total_amount, str) and record.total_amount == "40499030"
    assert isinstance(record.updated_at, str) and record.last_error is None
    # An error is typed too: the error envelope, not None.
    assert isinstance(missing, models.ErrorEnvelope)
    assert missing.success is False and "404404" in missing.message
