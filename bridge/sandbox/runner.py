"""``bridge sandbox``: the whole bridge on one machine, with no outside accounts.

It starts the embedded Redis (under ``--data-dir``, emptied first so every run starts
fresh), stand-ins for the CRM and Finan on loopback (they check tokens, signatures and
Finan's 30 s window like the real ones), then ``bridge serve`` and ``bridge worker`` as
child processes configured to use them, and prints commands to try. Ctrl-C stops it all.

The settings it runs the bridge with are written to ``<data-dir>/bridge.env`` (dotenv, mode
0600), so that any other ``bridge`` command can be pointed at the sandbox:
``bridge --env-file var/sandbox/bridge.env resync 17``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests

from bridge.sandbox.finan_standin import create_finan_app
from bridge.sandbox.loopback import LoopbackServer
from bridge.sandbox.samples import sample_invoices, sandbox_provider_settings
from bridge.sandbox.tourwell_standin import create_tourwell_app
from bridge.store import embedded_redis
from bridge.store.records import provider_invoice_id

CRM_TOKEN = "sandbox-crm-token"
ADMIN_TOKEN = "sandbox-admin-token"
TOURWELL_TOKEN = "sandbox-tourwell-token"
FINAN_CLIENT_ID = "sandbox-client"
FINAN_SECRET = "sandbox-secret"
FINAN_PREFIX = "/open"  # like Finan's real base URL: the prefix is not part of the signed path
READY_TIMEOUT_SECONDS = 30.0
ENV_FILE_NAME = "bridge.env"  # in the data directory

# Values made of these characters are written unquoted; any other is single-quoted.
_PLAIN_VALUE = re.compile(r"[\w./:,=@+{}-]*")


def sandbox_environment(crm_url: str, finan_url: str, data_dir: Path) -> dict[str, str]:
    """The settings a bridge needs to talk to the stand-ins (and nothing else)."""
    return {
        "BRIDGE_DATA_DIR": str(data_dir),
        "BRIDGE_CRM_TOKENS": CRM_TOKEN,
        "BRIDGE_ADMIN_TOKENS": ADMIN_TOKEN,
        "TOURWELL_BASE_URL": crm_url,
        "TOURWELL_API_TOKEN": TOURWELL_TOKEN,
        "PROVIDER_BASE_URL": finan_url + FINAN_PREFIX,
        "PROVIDER_CLIENT_ID": FINAN_CLIENT_ID,
        "PROVIDER_SECRET_KEY": FINAN_SECRET,
        **sandbox_provider_settings(),
        "PROVIDER_LOOKUP_URL_TEMPLATE": finan_url + "/invoice/{provider_invoice_id}",
        "GUNICORN_WORKERS": "2",
        # Quicker than production's (10 s first), so a queued invoice is seen to go through.
        "BRIDGE_RETRY_SCHEDULE": "5,15,60,300",
    }


def dotenv_text(settings: dict[str, str]) -> str:
    """``settings`` as dotenv lines that python-dotenv's ``dotenv_values`` reads back as
    they are (quoted where needed; a sh-compatible file while no value holds ``\\`` or
    ``'``)."""
    lines = []
    for name, value in settings.items():
        if not _PLAIN_VALUE.fullmatch(value):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, settings: dict[str, str]) -> None:
    """Write ``settings`` to ``path`` (dotenv) readable by its owner alone (0600): it holds
    the sandbox's tokens and secret. Replaced whole, never seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(
            "# The settings `bridge sandbox` runs the bridge with, rewritten at each start.\n"
            "# Use: bridge --env-file <this file> check (the environment wins over it).\n"
        )
        file.write(dotenv_text(settings))
    os.chmod(partial, 0o600)  # whatever the umask
    os.replace(partial, path)


def examples(bridge_url: str, finan_url: str) -> list[tuple[str, str]]:
    """(what it shows, a one-line shell command) pairs, in the order to try them."""
    auth = f"-H {shlex.quote('Authorization: Bearer ' + CRM_TOKEN)}"
    json_type = "-H 'Content-Type: application/json'"
    api = f"{bridge_url}/api/v1/invoices"
    update = shlex.quote('{"company_address": "12 Tràng Tiền, Hoàn Kiếm, Hà Nội"}')
    cancel = shlex.quote('{"cancel_note": "Khách đổi lịch khởi hành"}')
    faults = shlex.quote('{"mode": "unavailable", "count": 3}')
    return [
        (
            "Issue invoice 17 (the bridge pulls it from the CRM): 201",
            f"curl -sS -i -X POST {auth} {api}/17/issue",
        ),
        (
            "Issue it again with an Idempotency-Key, twice: the second answer is a replay",
            f"curl -sS -i -X POST {auth} -H 'Idempotency-Key: demo-17' {api}/17/issue",
        ),
        (
            "The same request again: note the header Idempotent-Replayed: true",
            f"curl -sS -i -X POST {auth} -H 'Idempotency-Key: demo-17' {api}/17/issue",
        ),
        (
            "Update invoice 17 (the bridge pulls it and lays the fields over it): 200",
            f"curl -sS -i -X PUT {auth} {json_type} -d {update} {api}/17",
        ),
        (
            "Cancel invoice 17: 201, 'Invoice Canceled successfully'",
            f"curl -sS -i -X POST {auth} {json_type} -d {cancel} {api}/17/cancel",
        ),
        (
            "Issue invoice 19, billed in USD and converted to VND",
            f"curl -sS -X POST {auth} {api}/19/issue",
        ),
        ("The bridge's record of invoice 19", f"curl -sS {auth} {api}/19"),
        (
            "What the stand-in Finan received (signed requests and their outcome)",
            f"curl -sS {finan_url}/_standin/requests",
        ),
        (
            "Make Finan answer 503 three times, then issue invoice 18: 202, state queued",
            f"curl -sS -o /dev/null {json_type} -d {faults} {finan_url}/_standin/faults"
            f" && curl -sS -i -X POST {auth} {api}/18/issue",
        ),
        (
            "About 10 s later (again if still queued) the worker has sent it: state issued",
            f"curl -sS {auth} {api}/18",
        ),
    ]


def _wait_ready(url: str, children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("bridge sandbox: a bridge process exited during start-up (see above)")
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or slow on its first request
            pass
        time.sleep(0.2)
    raise SystemExit(
        f"bridge sandbox: the bridge was not ready within {READY_TIMEOUT_SECONDS:.0f} s"
    )


def _stop(children: list[subprocess.Popen]) -> None:
    """Stop each child (a session of its own), then anything left in its process group: a
    gunicorn worker its master did not take down with it."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail with the option to change, before anything is started, if a port is taken."""
    for option, port in ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise SystemExit(
                    f"bridge sandbox: port {port} on {host} is in use; choose another with "
                    f"{option} PORT"
                ) from None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a supervisor's or a test's SIGTERM stops it like Ctrl-C


def run_sandbox(*, host: str, port: int, crm_port: int, finan_port: int, data_dir: Path) -> None:
    _check_ports_free(host, {"--port": port, "--crm-port": crm_port, "--finan-port": finan_port})
    # Ctrl-C must work even when the sandbox was started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    data_dir = Path(data_dir).resolve()
    crm = LoopbackServer(
        create_tourwell_app(
            token=TOURWELL_TOKEN, invoices=sample_invoices(), rate_limit_per_min=60
        ),
        host=host,
        port=crm_port,
    )
    finan = LoopbackServer(
        create_finan_app(client_id=FINAN_CLIENT_ID, secret=FINAN_SECRET, prefix=FINAN_PREFIX),
        host=host,
        port=finan_port,
    )
    children: list[subprocess.Popen] = []
    try:
        redis.Redis.from_url(embedded_redis.ensure_server(data_dir)).flushdb()
        crm.start()
        finan.start()
        bridge_url = f"http://{host}:{port}"
        settings = sandbox_environment(crm.url, finan.url, data_dir)
        env_file = data_dir / ENV_FILE_NAME
        write_env_file(env_file, settings)
        env = {**os.environ, **settings}
        env.pop("REDIS_URL", None)  # the sandbox always uses its own embedded Redis
        command = [sys.executable, "-m", "bridge"]
        # Each in a session of its own, so that a terminal's Ctrl-C reaches the sandbox
        # alone and the sandbox stops them once, in order: a gunicorn worker that gets the
        # terminal's SIGINT and its master's signal at once can hang in its shutdown.
        children += [
            subprocess.Popen(
                [*command, "serve", "--host", host, "--port", str(port)],
                env=env,
                start_new_session=True,
            ),
            subprocess.Popen([*command, "worker"], env=env, start_new_session=True),
        ]
        _wait_ready(bridge_url, children)
        _print_banner(bridge_url, crm.url, finan.url, data_dir, env_file)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        raise SystemExit("bridge sandbox: a bridge process exited; stopping")
    except KeyboardInterrupt:
        print("\nbridge sandbox: stopping", flush=True)
    finally:
        _stop(children)
        crm.stop()
        finan.stop()
        embedded_redis.stop_server(data_dir)


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, quoted for a shell."""
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def _print_banner(
    bridge_url: str, crm_url: str, finan_url: str, data_dir: Path, env_file: Path
) -> None:
    lines = [
        "",
        "The bridge sandbox is running.",
        f"  bridge           {bridge_url}   (CRM token: {CRM_TOKEN})",
        f"  status page      {bridge_url}/admin/   (admin token: {ADMIN_TOKEN})",
        f"  CRM stand-in     {crm_url}   (invoices {', '.join(map(str, sample_invoices()))})",
        f"  Finan stand-in   {finan_url}{FINAN_PREFIX}",
        f"  embedded Redis   {embedded_redis.socket_url(data_dir)}",
        "",
        f"Its settings are in {_shown_path(env_file)}; any bridge command can use them:",
        f"  bridge --env-file {_shown_path(env_file)} check --crm-invoice 17",
        f"  bridge --env-file {_shown_path(env_file)} resync 17",
    ]
    if "REDIS_URL" in os.environ:
        lines.append(
            "  (REDIS_URL is set in this environment and would win over the file: run them"
            " with `env -u REDIS_URL bridge ...`)"
        )
    finan_17 = provider_invoice_id(crm_url, 17)
    change = shlex.quote('{"set": {"total_amount": 1000, "customer.name": "Edited at Finan"}}')
    lines += [
        "",
        "What Finan holds, against what the bridge sent (once invoice 17 is issued):",
        f"  bridge --env-file {_shown_path(env_file)} reconcile --state issued",
        f"  curl -sS -H {shlex.quote('Authorization: Bearer ' + ADMIN_TOKEN)} "
        f"{bridge_url}/admin/invoices/17/finan",
        "  change it at the stand-in Finan, as an edit in Finan's own screens would:",
        f"  curl -sS -H 'Content-Type: application/json' -d {change} "
        f"{finan_url}/_standin/invoices/{finan_17}/change",
        "  or make the stand-in Finan forget it, as a restored backup would:",
        f"  curl -sS -X POST {finan_url}/_standin/invoices/{finan_17}/forget",
    ]
    lines += [
        "",
        "Try, in another terminal:",
    ]
    for what, command in examples(bridge_url, finan_url):
        lines += ["", f"# {what}", command]
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)
