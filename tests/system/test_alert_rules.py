"""The alerting rules, their Kubernetes copy, the Prometheus example and the Grafana
dashboard of deploy/: valid for their tools, tested, and naming only what the bridge exports.

- ``promtool check rules`` and ``promtool test rules`` (deploy/prometheus/bridge-rules.test.yaml)
  on deploy/prometheus/bridge-rules.yaml; ``promtool check config`` on the example
  prometheus.yml. promtool comes from Debian's ``prometheus`` package, installed with
  apt-get when missing (as root; otherwise the test fails, it never skips).
- deploy/kubernetes/prometheusrule.yaml is generated from the rules file
  (``python tests/system/test_alert_rules.py`` writes it); a test keeps them equal.
- Every metric a rule or a dashboard panel names is one the bridge serves (or Prometheus'
  own ``up``), read from a scrape of the web's /metrics; every one it serves has a panel.

Each check is also shown to reject a broken copy, so a green run means the files passed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "bridge-rules.yaml"
RULE_TESTS = PROMETHEUS / "bridge-rules.test.yaml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "bridge.json"
OPERATORS_DOC = ROOT / "docs" / "operators.md"

PROMTOOL = "/usr/bin/promtool"
APT_TIMEOUT_SECONDS = 900

# Metrics that are not the bridge's: Prometheus' own per-target series.
PROMETHEUS_OWN = {"up"}
# Being added beside this work (Finan view and reconciliation); the rule is written anyway.
PENDING_METRICS = {"bridge_out_of_sync_invoices"}

PROMETHEUS_RULE_HEADER = """\
# Generated from deploy/prometheus/bridge-rules.yaml: do not edit; change that file, then
# run `python tests/system/test_alert_rules.py` (tests/system/test_alert_rules.py checks the
# two are equal). The same alerting rules for the Prometheus Operator; its Prometheus must
# select rules with these labels (ruleSelector), and scrape the pods as podmonitor.yaml does.
"""


def prometheus_rule() -> dict:
    """The PrometheusRule that carries the rules file's groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "tourwell-finan-bridge",
            "labels": {"app.kubernetes.io/name": "tourwell-finan-bridge"},
        },
        "spec": {"groups": yaml.safe_load(RULES.read_text())["groups"]},
    }


def write_prometheus_rule() -> None:
    text = yaml.safe_dump(prometheus_rule(), sort_keys=False, width=100, allow_unicode=True)
    PROMETHEUS_RULE.write_text(PROMETHEUS_RULE_HEADER + text)


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's promtool, installed with apt-get if missing; fail (never skip) if it can't."""
    if Path(PROMTOOL).exists():
        return PROMTOOL
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"{PROMTOOL} is missing and this user can't install it: run "
            "'apt-get install -y --no-install-recommends prometheus' as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    for command in (["apt-get", "update", "-q"], install):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
        )
        if done.returncode != 0:
            pytest.fail(f"'{' '.join(command)}' failed:\n{done.stdout[-2000:]}{done.stderr}")
    if not Path(PROMTOOL).exists():
        pytest.fail(f"apt-get installed prometheus but {PROMTOOL} is not there")
    return PROMTOOL


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


# --- promtool ----------------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rejects_a_broken_rule(promtool, tmp_path):
    broken = tmp_path / "bridge-rules.yaml"
    broken.write_text(RULES.read_text().replace("> 0\n", "> > 0\n", 1))
    result = run([promtool, "check", "rules", str(broken)])
    assert result.returncode != 0


def test_the_rules_unit_tests_pass(promtool):
    result = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_unit_tests_catch_a_changed_rule(promtool, tmp_path):
    # The same tests against rules whose dead-invoice alert waits too long: they fail.
    (tmp_path / "bridge-rules.yaml").write_text(RULES.read_text().replace("for: 1m", "for: 30m", 1))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run([promtool, "test", "rules", str(tmp_path / RULE_TESTS.name)])
    assert result.returncode != 0
    assert "BridgeInvoicesDead" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section():
    alerts = [rule["alert"] for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]]
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert set(alerts) == tested == fired  # each alert is shown firing, and silent
    doc = OPERATORS_DOC.read_text()
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor == rule["alert"].lower()
        assert f"#### {rule['alert']}" in doc, rule["alert"]


def test_promtool_checks_the_example_prometheus_config(promtool):
    result = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"bridge-web", "bridge-worker"}  # the names the rules use
    assert set(re.findall(r'job="([^"]+)"', RULES.read_text())) == jobs


# --- the Kubernetes copy -------------------------------------------------------------------


def test_the_prometheus_rule_carries_the_same_rules():
    documents = list(yaml.safe_load_all(PROMETHEUS_RULE.read_text()))
    assert documents == [prometheus_rule()], (
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/bridge-rules.yaml:"
        " run `python tests/system/test_alert_rules.py`"
    )


def test_the_equality_check_notices_a_drift():
    drifted = prometheus_rule()
    drifted["spec"]["groups"][0]["rules"][0]["for"] = "2m"
    assert drifted != prometheus_rule()


# --- the metrics named are the bridge's ----------------------------------------------------


def served_names(client) -> set[str]:
    """Every sample name the web's /metrics serves (its Redis gauges too). The worker's
    /metrics serves the counters of the same module (bridge.observability.metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


# A metric-looking word: PromQL functions and keywords are followed by "(" or are known.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "delta", "absent",
    "histogram_quantile", "by", "without", "on", "ignoring", "and", "or", "unless", "bool",
    "le", "offset", "clamp_min", "topk", "time", "vector", "scalar", "label_replace",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (words not inside braces, quotes or
    brackets that are not functions or keywords)."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", stripped))
    return {
        word
        for word in words
        if word not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?|e\d+|Inf|NaN", word)
    }


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]]


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in inner.get("targets", []) if "expr" in target]
    return exprs


def test_metric_names_are_found_in_an_expression():
    expr = 'sum by (le) (rate(bridge_x_bucket{job="a"}[5m])) / max(up{job="b"}) > 0.5'
    assert metric_names(expr) == {"bridge_x_bucket", "up"}


def test_the_rules_name_only_metrics_the_bridge_exports(client):
    served = served_names(client) | PROMETHEUS_OWN | PENDING_METRICS
    named = set().union(*map(metric_names, rule_exprs()))
    assert named, "no metric found in the rules"
    assert named <= served, named - served


def test_the_dashboard_is_valid_json_naming_only_metrics_the_bridge_exports(client):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["panels"]
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    served = served_names(client) | PROMETHEUS_OWN | PENDING_METRICS
    named = set().union(*map(metric_names, exprs))
    assert named <= served, named - served
    # Every metric the bridge serves has a panel.
    families = {re.sub(r"_(bucket|sum|count|created|total)$", "", n) for n in served}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in named}
    missing = {f for f in families if f.startswith("bridge_")} - shown
    assert not missing, f"no panel shows {sorted(missing)}"


def test_the_metric_check_rejects_an_unknown_metric(client):
    served = served_names(client) | PROMETHEUS_OWN
    assert not metric_names("rate(bridge_finan_calls_totl[5m])") <= served


if __name__ == "__main__":
    write_prometheus_rule()
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
