"""The files of deploy/ parse and are valid for their tools, and agree with each other.

Each tool runs offline: gunicorn's own --check-config, the compose-spec schema bundled with
check-jsonschema, the Kubernetes schemas bundled with kubernetes-validate, dockerfile-parse,
docker-py's .dockerignore rules, and systemd-analyze. Every check is also shown to reject a
deliberately broken copy, so a green run means the real file passed, not a blind checker.
"""

from __future__ import annotations

import configparser
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from kubernetes_validate.utils import all_versions

from bridge.config import SETTINGS_TABLE, ConfigError, load_settings
from bridge.store.queue import JOB_TIMEOUT_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GUNICORN_CONFIG = DEPLOY / "gunicorn.conf.py"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "bridge.env.example"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"

PORT = 8000  # the web service's port in the image, compose, Kubernetes
SERVE = ["bridge", "serve", "--host", "0.0.0.0", "--port", str(PORT)]
WORKER = ["bridge", "worker"]
REQUIRED = {variable for variable, (_, _, required) in SETTINGS_TABLE.items() if required}
# Settings that must live in a Secret, never in a ConfigMap (REDIS_URL may carry a password).
SECRET_SETTINGS = {
    "REDIS_URL",
    "BRIDGE_CRM_TOKENS",
    "BRIDGE_ADMIN_TOKENS",
    "TOURWELL_API_TOKEN",
    "PROVIDER_CLIENT_ID",
    "PROVIDER_SECRET_KEY",
    "BRIDGE_ENCRYPTION_KEY",
}


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def graceful_timeout(monkeypatch: pytest.MonkeyPatch) -> int:
    """gunicorn's graceful_timeout as deploy/gunicorn.conf.py sets it, without overrides."""
    for variable in [name for name in os.environ if name.startswith("GUNICORN_")]:
        monkeypatch.delenv(variable)
    return int(runpy.run_path(str(GUNICORN_CONFIG))["graceful_timeout"])


def kubernetes_documents() -> list[tuple[str, dict]]:
    """(file name, document) for every manifest, the Secret example included."""
    files = sorted(KUBERNETES.glob("*.yaml")) + sorted(KUBERNETES.glob("*.example"))
    return [
        (path.name, document)
        for path in files
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def kubernetes_object(kind: str, name: str) -> dict:
    found = [
        d for _, d in kubernetes_documents() if (d["kind"], d["metadata"]["name"]) == (kind, name)
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


# --- gunicorn ---------------------------------------------------------------------------


def gunicorn_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """gunicorn's own check: load the config file and import the app, then print the config."""
    return run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "--print-config",
            "--config",
            str(config),
            "bridge.web.wsgi:app",
        ],
        env=env,
    )


def test_gunicorn_config_is_valid_and_loads_the_app(environ):
    gunicorn_env = kubernetes_object("ConfigMap", "tourwell-finan-bridge")["data"]
    gunicorn_env = {k: v for k, v in gunicorn_env.items() if k.startswith("GUNICORN_")}
    result = gunicorn_check(GUNICORN_CONFIG, {**os.environ, **environ, **gunicorn_env})
    assert result.returncode == 0, result.stderr
    printed = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    assert printed["worker_class"] == "gthread"  # gunicorn's own threaded worker
    assert printed["accesslog"] == "None"  # the app writes each request's line itself
    # The ConfigMap's knobs are ones the config file really reads.
    assert printed["workers"] == gunicorn_env["GUNICORN_WORKERS"]
    assert printed["threads"] == gunicorn_env["GUNICORN_THREADS"]


def test_gunicorn_check_rejects_a_broken_config(environ, tmp_path):
    broken = tmp_path / "gunicorn.conf.py"
    broken.write_text(GUNICORN_CONFIG.read_text() + '\ntimeout = "soon"\n')
    result = gunicorn_check(broken, {**os.environ, **environ})
    assert result.returncode != 0
    assert "timeout" in result.stderr


def test_gunicorn_check_imports_the_app_which_refuses_missing_settings():
    result = gunicorn_check(GUNICORN_CONFIG, dict(os.environ))  # no bridge settings at all
    assert result.returncode != 0
    assert "BRIDGE_CRM_TOKENS" in result.stderr


# --- Dockerfile and .dockerignore -----------------------------------------------------------


def parse_dockerfile(text: str) -> DockerfileParser:
    # From memory: given a path, the parser would write to it if asked to change anything.
    return DockerfileParser(fileobj=io.BytesIO(text.encode()))


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile for the bridge: an empty list when all is well."""
    parser = parse_dockerfile(text)
    problems = []
    if not parser.is_multistage:
        problems.append("not multi-stage")
    if not re.fullmatch(r"python:3\.11-slim(-\w+)?", parser.baseimage):
        problems.append(f"final stage is not a slim Python 3.11 image: {parser.baseimage}")
    stages: list[list[dict]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    final = stages[-1] if stages else []

    def values(stage: list[dict], name: str) -> list[str]:
        return [i["value"] for i in stage if i["instruction"] == name]

    users = values(final, "USER")
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root USER")
    if values(final, "EXPOSE") != [str(PORT)]:
        problems.append(f"EXPOSE is not {PORT}: {values(final, 'EXPOSE')}")
    healthchecks = values(final, "HEALTHCHECK")
    if not healthchecks or f"127.0.0.1:{PORT}/healthz" not in healthchecks[-1]:
        problems.append(f"no HEALTHCHECK on 127.0.0.1:{PORT}/healthz")
    if parser.cmd is None or yaml.safe_load(parser.cmd) != SERVE:
        problems.append(f"CMD is not {SERVE}: {parser.cmd}")
    # Dependencies installed before the source is copied (a layer that survives code edits).
    build = [(i["instruction"], i["value"]) for i in stages[0]] if stages else []
    copies = [n for n, (kind, _) in enumerate(build) if kind == "COPY"]
    installs = [
        n for n, (kind, value) in enumerate(build) if kind == "RUN" and "pip install" in value
    ]
    source = [n for n, (kind, value) in enumerate(build) if kind == "COPY" and "bridge" in value]
    if not (copies and installs and source and copies[0] < installs[0] < source[0]):
        problems.append("dependencies are not installed before the source is copied")
    return problems


def test_dockerfile_is_multi_stage_slim_non_root_with_a_health_check():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "non-root USER"),
        (lambda t: t.replace("EXPOSE 8000", "EXPOSE 8080"), "EXPOSE"),
        (lambda t: re.sub(r"HEALTHCHECK .*?\]\n", "", t, flags=re.S), "HEALTHCHECK"),
        (lambda t: t.replace('"serve"', '"worker"'), "CMD"),
        (lambda t: t.replace("FROM ${PYTHON_IMAGE} AS runtime\n", ""), "multi-stage"),
        (lambda t: re.sub(r"COPY (setup.cfg|requirements/).*\n", "", t), "dependencies"),
    ],
)
def test_dockerfile_check_catches_a_broken_copy(spoil, problem):
    problems = dockerfile_problems(spoil(DOCKERFILE.read_text()))
    assert any(problem in p for p in problems), problems


def build_context(root: Path, ignore_file: Path) -> set[str]:
    """The paths of ``root`` that a build would send, by docker-py's .dockerignore rules."""
    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return exclude_paths(str(root), patterns, dockerfile="deploy/Dockerfile")


def copy_sources() -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions read."""
    parser = parse_dockerfile(DOCKERFILE.read_text())
    sources = []
    for instruction in parser.structure:
        if instruction["instruction"] == "COPY" and "--from=" not in instruction["value"]:
            sources += instruction["value"].split()[:-1]
    return sources


def test_dockerignore_sends_what_the_image_needs_and_no_secrets(tmp_path):
    # A stand-in tree: what the Dockerfile copies, plus things that must never be sent.
    secrets = ["deploy/bridge.env", ".env", ".git/config", ".venv/pyvenv.cfg", "var/redis.aof"]
    for relative in [*copy_sources(), *secrets, "deploy/Dockerfile"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    context = build_context(tmp_path, ROOT / ".dockerignore")
    assert set(copy_sources()) <= context
    assert not context & set(secrets)

    (tmp_path / "empty-ignore").write_text("")  # the check notices when nothing is ignored
    assert "deploy/bridge.env" in build_context(tmp_path, tmp_path / "empty-ignore")


# --- the settings file example --------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            # Both Docker Compose and systemd read plain KEY=value with no quotes or spaces.
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s'\"]*", line), line
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_env_example_names_only_real_settings_and_refuses_until_filled_in(environ):
    example = read_env_file(ENV_EXAMPLE)
    assert set(example) <= set(SETTINGS_TABLE)
    assert all(variable in ENV_EXAMPLE.read_text() for variable in SETTINGS_TABLE)
    # The required settings are blank: the bridge names each one and refuses to start.
    with pytest.raises(ConfigError) as refused:
        load_settings(example)
    assert set(refused.value.problems) == REQUIRED
    # Filled in, the same file is a working configuration.
    assert load_settings({**example, **{k: environ[k] for k in REQUIRED}})


# --- Docker Compose -------------------------------------------------------------------------


def compose_problems(path: Path) -> subprocess.CompletedProcess:
    """Validate against the compose-spec JSON schema that check-jsonschema ships."""
    return run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(path)]
    )


def test_compose_file_is_valid_for_the_compose_spec():
    result = compose_problems(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_a_broken_copy(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_priod:", 1))
    result = compose_problems(broken)
    assert result.returncode != 0
    assert "stop_grace_priod" in result.stdout


def test_compose_runs_web_worker_and_a_persistent_redis(graceful_timeout):
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis"}
    web, worker, redis = services["web"], services["worker"], services["redis"]

    assert web["command"] == SERVE
    assert web["ports"] == [f"127.0.0.1:{PORT}:{PORT}"]
    assert worker["command"] == WORKER
    # Each worker replica serves its metrics on its own address (deploy/prometheus).
    assert worker["environment"]["BRIDGE_WORKER_METRICS_PORT"] == "9100"
    assert worker["expose"] == ["9100"]
    for bridge in (web, worker):
        assert bridge["image"] == web["image"]
        assert (COMPOSE.parent / bridge["build"]["context"]).resolve() == ROOT
        assert (ROOT / bridge["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert (COMPOSE.parent / (bridge["env_file"] + ".example")).resolve() == ENV_EXAMPLE
        assert bridge["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert bridge["depends_on"]["redis"]["condition"] == "service_healthy"
        assert bridge["healthcheck"]["test"][0] == "CMD"
    assert f"127.0.0.1:{PORT}/healthz" in " ".join(web["healthcheck"]["test"])

    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    volume, _, mount = redis["volumes"][0].partition(":")
    assert mount == "/data" and volume in compose["volumes"]
    assert "PONG" in " ".join(redis["healthcheck"]["test"])

    # Time for requests in flight, and for a worker's job in hand, before the kill.
    assert int(web["stop_grace_period"].rstrip("s")) > graceful_timeout
    assert int(worker["stop_grace_period"].rstrip("s")) > JOB_TIMEOUT_SECONDS


# --- Kubernetes -----------------------------------------------------------------------------

# The oldest and newest Kubernetes versions whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = (all_versions()[0], all_versions()[-1])


# The Prometheus Operator's kinds (podmonitor.yaml, prometheusrule.yaml): custom resources
# whose schemas kubernetes-validate does not ship; checked by the tests below and by
# tests/system/test_alert_rules.py instead.
MONITORING_API = "monitoring.coreos.com/v1"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_are_valid_for_their_schemas(version):
    documents = [(n, d) for n, d in kubernetes_documents() if d["apiVersion"] != MONITORING_API]
    for name, document in documents:
        # strict: an unknown or misspelt field is an error, not silently ignored.
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
    kinds = sorted(d["kind"] for _, d in documents)
    assert kinds == sorted(
        ["ConfigMap", "Secret", "Service"]
        + ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"] * 2
    )
    monitoring = sorted(
        d["kind"] for _, d in kubernetes_documents() if d["apiVersion"] == MONITORING_API
    )
    assert monitoring == ["PodMonitor", "PodMonitor", "PrometheusRule"]


def test_kubernetes_schema_check_rejects_a_broken_copy():
    deployment = kubernetes_object("Deployment", "tourwell-finan-bridge-web")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def pod_spec(deployment: str) -> dict:
    return kubernetes_object("Deployment", deployment)["spec"]["template"]["spec"]


def test_kubernetes_web_pods_probe_health_and_readiness(graceful_timeout):
    pod = pod_spec("tourwell-finan-bridge-web")
    (web,) = pod["containers"]
    assert web["command"] == SERVE
    assert web["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] > graceful_timeout

    service = kubernetes_object("Service", "tourwell-finan-bridge")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = kubernetes_object("Deployment", "tourwell-finan-bridge-web")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod_labels["metadata"]["labels"].items()


def test_kubernetes_pods_are_non_root_with_resources_and_settings():
    structure = parse_dockerfile(DOCKERFILE.read_text()).structure
    uid = [i["value"] for i in structure if i["instruction"] == "USER"][-1].split(":")[0]
    config = kubernetes_object("ConfigMap", "tourwell-finan-bridge")
    secret = kubernetes_object("Secret", "tourwell-finan-bridge")
    for deployment, command in (
        ("tourwell-finan-bridge-web", SERVE),
        ("tourwell-finan-bridge-worker", WORKER),
    ):
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        assert container["command"] == command
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == uid
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert "livenessProbe" in container
        assert container["envFrom"] == [
            {"configMapRef": {"name": config["metadata"]["name"]}},
            {"secretRef": {"name": secret["metadata"]["name"]}},
        ]
    worker_grace = pod_spec("tourwell-finan-bridge-worker")["terminationGracePeriodSeconds"]
    assert worker_grace > JOB_TIMEOUT_SECONDS

    settings = {k for k in config["data"] if not k.startswith("GUNICORN_")}
    assert settings | set(secret["stringData"]) <= set(SETTINGS_TABLE)
    assert REQUIRED <= settings | set(secret["stringData"])
    assert not settings & SECRET_SETTINGS  # secrets stay in the Secret
    assert set(secret["stringData"]) == SECRET_SETTINGS
    # The example's blanks are placeholders that stop the bridge, never usable values.
    assert {v for k, v in secret["stringData"].items() if k != "REDIS_URL"} == {""}
    assert secret["stringData"]["REDIS_URL"].startswith("redis://redis.invalid")


WORKER_METRICS_PORT = 9100  # the workers' metrics port in compose and Kubernetes


def test_kubernetes_pods_are_scraped_by_annotation_and_by_pod_monitors():
    for component, port_name, port, job in (
        ("web", "http", PORT, "bridge-web"),
        ("worker", "metrics", WORKER_METRICS_PORT, "bridge-worker"),
    ):
        template = kubernetes_object("Deployment", f"tourwell-finan-bridge-{component}")["spec"][
            "template"
        ]
        (container,) = template["spec"]["containers"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert {"name": port_name, "containerPort": port, "protocol": "TCP"} in container["ports"]

        monitor = kubernetes_object("PodMonitor", f"tourwell-finan-bridge-{component}")
        assert monitor["apiVersion"] == MONITORING_API
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == (port_name, "/metrics")
        assert {"targetLabel": "job", "replacement": job} in endpoint["relabelings"]
    (worker,) = pod_spec("tourwell-finan-bridge-worker")["containers"]
    assert {"name": "BRIDGE_WORKER_METRICS_PORT", "value": str(WORKER_METRICS_PORT)} in worker[
        "env"
    ]


def test_kubernetes_autoscalers_and_disruption_budgets_target_the_deployments():
    for component in ("web", "worker"):
        deployment = kubernetes_object("Deployment", f"tourwell-finan-bridge-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count

        autoscaler = kubernetes_object(
            "HorizontalPodAutoscaler", f"tourwell-finan-bridge-{component}"
        )
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert autoscaler["spec"]["minReplicas"] >= 2

        budget = kubernetes_object("PodDisruptionBudget", f"tourwell-finan-bridge-{component}")
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- systemd ----------------------------------------------------------------------------------


def read_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string(text)
    return unit


def unit_problems(text: str, command: list[str]) -> list[str]:
    """What is wrong with a bridge unit that should run ``command``: empty when all is well."""
    unit = read_unit(text)
    service = unit["Service"]
    problems = []
    argv = shlex.split(service.get("ExecStart", ""))
    if not (argv and argv[0].startswith("/") and Path(argv[0]).name == command[0]):
        problems.append(f"ExecStart does not run an absolute path to bridge: {argv}")
    if argv[1 : len(command)] != command[1:]:
        problems.append(f"ExecStart does not run {' '.join(command)}: {argv}")
    expected = {
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "KillMode": "mixed",
        "RestartPreventExitStatus": "2",
    }
    for key, value in expected.items():
        if service.get(key) != value:
            problems.append(f"{key} is not {value}: {service.get(key)}")
    if service.get("User", "root") in ("root", "0"):
        problems.append("runs as root")
    if not service.get("EnvironmentFile", "").startswith("/"):
        problems.append("no EnvironmentFile with an absolute path")
    if "WantedBy" not in unit["Install"]:
        problems.append("no WantedBy in [Install]")
    return problems


def test_web_unit_runs_bridge_serve_hardened(graceful_timeout):
    text = (SYSTEMD / "bridge-web.service").read_text()
    assert unit_problems(text, ["bridge", "serve"]) == []
    service = read_unit(text)["Service"]
    assert shlex.split(service["ExecStart"])[2:] == ["--host", "127.0.0.1", "--port", str(PORT)]
    assert int(service["TimeoutStopSec"]) > graceful_timeout


def test_worker_unit_is_a_template_running_bridge_worker():
    text = (SYSTEMD / "bridge-worker@.service").read_text()
    assert unit_problems(text, WORKER) == []
    unit = read_unit(text)
    assert "%i" in unit["Unit"]["Description"]
    assert shlex.split(unit["Service"]["ExecStart"])[1:] == ["worker"]
    # Worker N serves its metrics on port 910N (deploy/prometheus/prometheus.yml scrapes them).
    assert "BRIDGE_WORKER_METRICS_PORT=910%i" in shlex.split(unit["Service"]["Environment"])
    assert int(unit["Service"]["TimeoutStopSec"]) > JOB_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda t: t.replace("bridge serve", "bridge sandbox"), "ExecStart"),
        (lambda t: t.replace("Restart=on-failure", "Restart=always"), "Restart"),
        (lambda t: t.replace("NoNewPrivileges=yes\n", ""), "NoNewPrivileges"),
        (lambda t: t.replace("User=bridge\n", ""), "root"),
    ],
)
def test_unit_check_catches_a_broken_copy(spoil, problem):
    problems = unit_problems(
        spoil((SYSTEMD / "bridge-web.service").read_text()), ["bridge", "serve"]
    )
    assert any(problem in p for p in problems), problems


def systemd_verify(directory: Path, units: list[Path]) -> subprocess.CompletedProcess:
    """systemd-analyze verify on copies whose ExecStart points at this checkout's bridge
    (verify insists the program exists). Unknown keys and bad values only print warnings,
    so the caller checks stderr as well as the exit status."""
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is missing: apt-get install systemd"
    bridge = Path(sys.executable).with_name("bridge")
    copies = []
    for unit in units:
        copy = directory / unit.name
        copy.write_text(
            unit.read_text().replace("/opt/tourwell-finan-bridge/bin/bridge", str(bridge))
        )
        copies.append(copy)
    return run([systemd_analyze, "verify", "--man=no", *map(str, copies)])


def test_systemd_analyze_verifies_the_units(tmp_path):
    result = systemd_verify(tmp_path, sorted(SYSTEMD.glob("*.service")))
    assert (result.returncode, result.stderr) == (0, "")


def test_systemd_analyze_flags_a_broken_unit(tmp_path):
    broken = tmp_path / "broken" / "bridge-web.service"
    broken.parent.mkdir()
    broken.write_text(
        (SYSTEMD / "bridge-web.service").read_text().replace("ProtectSystem=", "ProtectSystm=")
    )
    result = systemd_verify(tmp_path, [broken])
    assert "ProtectSystm" in result.stderr


# --- the documentation ------------------------------------------------------------------------


def test_deploy_doc_covers_every_deploy_file_and_the_readme_points_to_it():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert str(path.relative_to(ROOT)) in doc, path
    for setting in ("appendfsync everysec", "noeviction", "appendonly yes"):
        assert setting in doc
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
