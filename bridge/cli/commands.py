"""The ``bridge`` command: serve, worker, sandbox, resync, reconcile, check
(docs/contract/settings.md#command-line), with its settings from the environment and an
optional dotenv file (``--env-file``, else ``./.env``)."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the commands import what they use when they run, to start quickly
    from bridge.cli.checks import CheckResult
    from bridge.invoices.resync import Batch, ItemResult, ResyncBatches
    from bridge.store.records import RecordStore

# deploy/gunicorn.conf.py: in a source checkout (or an image built from one) it sits beside
# the package; a regular `pip install` puts a copy under <prefix>/share (setup.cfg).
GUNICORN_CONFIG_PLACES = (
    Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py",
    Path(sys.prefix) / "share" / "tourwell-finan-bridge" / "gunicorn.conf.py",
)


# Read when no --env-file is given, if the working directory has one.
DEFAULT_ENV_FILE = Path(".env")


def default_gunicorn_config() -> str:
    found = next((place for place in GUNICORN_CONFIG_PLACES if place.is_file()), None)
    return str(found or GUNICORN_CONFIG_PLACES[0])


def load_env_file(path: Path | None, environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Put the variables of ``path`` (or of ``./.env`` when no path is given and it exists)
    into ``environ``, except those ``environ`` already has: the environment wins over the
    file. Returns the file read, or ``None``.

    They go into the process environment, not only into this process's settings, so that
    what this command starts (gunicorn's app factory, RQ's jobs) reads them too. Values are
    taken literally (no ``${VAR}`` expansion): a secret may contain ``$``.
    """
    if path is None:
        if not DEFAULT_ENV_FILE.is_file():
            return None
        path = DEFAULT_ENV_FILE
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.FileError(str(path), hint=str(exc)) from None
    for name, value in values.items():
        if value is not None and name not in environ:
            environ[name] = value
    return path


def settings_or_exit() -> Settings:
    """Validated settings from the environment (and the env file, which ``main`` loaded
    into it), or a message naming each bad one, exit 2."""
    try:
        return load_settings(os.environ)
    except ConfigError as exc:
        click.echo(f"bridge: refusing to start: {exc}", err=True)
        click.echo("See the settings table in README.md.", err=True)
        sys.exit(2)


class InvoiceIdType(click.ParamType):
    """An invoice id: ASCII digits, from 1 (``int()`` would take other scripts' digits)."""

    name = "ID"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and value >= 1:
            return value
        if re.fullmatch(r"[0-9]+", str(value)) and int(str(value)) >= 1:
            return int(str(value))
        self.fail(f"invoice ids are whole numbers ≥ 1: {str(value)!r}", param, ctx)


INVOICE_ID = InvoiceIdType()


class HeldLogLines(logging.Handler):
    """Keeps the log lines of a run whose progress bar is drawing (a line written then
    would land inside the bar, between it and the table)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def logs_after_the_table() -> Iterator[None]:
    """Hold the warnings logged inside the block (the progress bar and the table that
    follows it), then write them on stderr after it, under a heading."""
    held = HeldLogLines()
    root = logging.getLogger()
    root.addHandler(held)
    try:
        yield
    finally:
        root.removeHandler(held)
        if held.lines:
            click.echo("Log lines of the run:", err=True)
            for line in held.lines:
                click.echo(f"  {line}", err=True)


@click.group()
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read settings from this dotenv file (instead of ./.env). Give it before the command.",
)
@click.pass_context
def main(context: click.Context, env_file: Path | None) -> None:
    """The Tourwell -> Finan invoice bridge.

    \b
    Settings come from environment variables and from a dotenv file (KEY=value lines):
    the one given with --env-file, else ./.env when the working directory has one.
    A variable set in the environment (even empty) wins over the file. The file's
    variables are passed on to what a command starts (gunicorn, RQ's workers).
    Example: bridge --env-file var/sandbox/bridge.env check
    """
    context.obj = {"env_file": load_env_file(env_file)}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config",
    "config_path",
    default=default_gunicorn_config,
    show_default="deploy/gunicorn.conf.py",
    type=click.Path(exists=True, dir_okay=False),
    help="gunicorn configuration file.",
)
def serve(host: str, port: int, config_path: str) -> None:
    """Run the web service under gunicorn with the production configuration."""
    settings = settings_or_exit()
    if not settings.redis_url:
        from bridge.store import embedded_redis

        # Start it here, once, rather than racing from every gunicorn worker.
        embedded_redis.ensure_server(settings.data_dir)
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            config_path,
            "--bind",
            f"{host}:{port}",
            "bridge.web.wsgi:app",
        ],
    )


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (for tests).")
def worker(burst: bool) -> None:
    """Run a queue worker (with RQ's scheduler) on the bridge's Redis."""
    settings = settings_or_exit()
    from bridge.observability import worker_metrics

    metrics = None
    if settings.worker_metrics_port:
        # Before prometheus_client is imported (by what follows): the work horses' counts
        # reach the worker's /metrics through files (bridge/observability/worker_metrics.py).
        metrics = worker_metrics.WorkerMetrics(worker_metrics.use_private_directory())
    from bridge.observability import logs
    from bridge.services import build_services
    from bridge.store.queue import bridge_queue
    from bridge.worker.jobs import BridgeWorker

    logs.configure_logging()  # JSON lines, like the web processes; RQ's lines included
    services = build_services(settings)
    if metrics is not None:
        metrics.serve(settings.worker_metrics_port)
    worker = BridgeWorker(
        [bridge_queue(services.redis)],
        connection=services.redis,
        services=services,
        after_each_job=metrics.fold_finished_horses if metrics is not None else None,
    )
    worker.work(with_scheduler=True, burst=burst)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="The bridge's port.")
@click.option("--crm-port", default=8001, show_default=True, type=int)
@click.option("--finan-port", default=8002, show_default=True, type=int)
@click.option(
    "--data-dir",
    default="var/sandbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the sandbox keeps its embedded Redis.",
)
def sandbox(host: str, port: int, crm_port: int, finan_port: int, data_dir: Path) -> None:
    """Run everything locally: embedded Redis, stand-ins for the CRM and Finan, the bridge."""
    from bridge.sandbox.runner import run_sandbox

    run_sandbox(host=host, port=port, crm_port=crm_port, finan_port=finan_port, data_dir=data_dir)


@main.command()
@click.argument("ids", nargs=-1, type=INVOICE_ID)
@click.option(
    "--state",
    type=click.Choice(["failed", "dead"]),
    help="Re-sync every invoice now in this state, instead of IDS.",
)
@click.option("--force", is_flag=True, help="Send even when Finan already holds the same body.")
@click.option(
    "--yes", "-y", is_flag=True, help="With --state: re-sync the invoices listed without asking."
)
def resync(ids: tuple[int, ...], state: str | None, force: bool, yes: bool) -> None:
    """Re-sync invoices IDS (or --state failed|dead): pull, map, send, write back.

    Runs here, paced by the CRM's rate limit like the admin API's bulk re-sync, with a
    progress bar and a summary. The write-backs to the CRM are queued for the workers.
    An id the bridge has no record of is pulled from the CRM and sent as its first issue;
    one the CRM does not know either is reported as failed.
    With --state, the invoices are listed first (for dead ones, with the warning to check
    the CRM for cancels) and you are asked to confirm; --yes skips the question, and
    without a terminal to ask on, --yes is required.
    Exits 1 when any invoice failed or could not be re-synced, or nothing was confirmed.
    """
    if bool(ids) == bool(state):
        raise click.UsageError("give invoice ids, or --state failed|dead (not both)")
    settings = settings_or_exit()
    from bridge.services import build_services

    services = build_services(settings)
    batches = services.batches
    if state is None:
        batch = batches.start(ids=list(ids), force=force, runner="cli", started_by=CLI_STARTER)
    else:
        listed = services.records.ids_in_state(state)
        if not listed:
            click.echo(f"No invoices are {state}; nothing to re-sync.")
            return
        confirm_bulk(services.records, listed, state, yes)
        batch = batches.start_confirmed(
            listed, state, force=force, runner="cli", started_by=CLI_STARTER
        )
    if batch.total == 0:
        click.echo(f"No invoices are {state} any more; nothing to re-sync.")
        return
    label = f"Re-syncing {batch.total} invoice{'' if batch.total == 1 else 's'}"
    counts = run_here(batches, batch, label)
    click.echo(finan_calls_line())
    if counts["sent"]:
        click.echo("The outcomes are queued to be written back to the CRM by the workers.")
    if any(counts[result] for result in batches.PROBLEM_RESULTS):
        sys.exit(1)


CLI_STARTER = "bridge resync"
LISTED_BEFORE_CONFIRM = 50  # invoices named before the question; the rest are counted
DEAD_WARNING = (
    "Check the CRM first: a dead invoice may have been cancelled in the CRM meanwhile (its "
    "cancel never reached the bridge). A re-sync pulls it from the CRM and sends it whole, "
    "leaving Finan with a payable invoice. For each one the CRM cancelled, send its cancel "
    "instead (docs/operators.md, 'A dead invoice the CRM cancelled')."
)


def confirm_bulk(records: RecordStore, listed: list[int], state: str, yes: bool) -> None:
    """Show the invoices a --state re-sync would re-sync (ids, codes, states) and, for dead
    ones, the warning; then ask, unless ``yes``. Exits 1 unless confirmed."""
    count = len(listed)
    noun = "invoice" if count == 1 else "invoices"
    click.echo(f"{count} {noun} {'is' if count == 1 else 'are'} {state}:")
    shown = records.get_many(listed[:LISTED_BEFORE_CONFIRM])
    width = max(len(str(record.invoice_id)) for record in shown) if shown else 1
    for record in shown:
        click.echo(f"  {record.invoice_id:>{width}}  {record.code or '-':<12}  {record.state}")
    if count > len(shown):
        click.echo(f"  ... and {count - len(shown)} more")
    if state == "dead":
        click.echo(DEAD_WARNING)
    if yes:
        return
    if not sys.stdin.isatty():
        click.echo(
            f"bridge resync: not re-syncing {count} {noun} without a confirmation, and there "
            "is no terminal to ask on; check the list above, then run again with --yes",
            err=True,
        )
        sys.exit(1)
    if not click.confirm(f"Re-sync {count} {noun}?", default=False):
        click.echo("Nothing re-synced.")
        sys.exit(1)


def finan_calls_line() -> str:
    """This process's Finan calls by outcome, and its inline retries: a CLI run has no
    /metrics a Prometheus could scrape, so it says them (and logs them) when it ends."""

    from prometheus_client import REGISTRY

    from bridge.observability.metrics import FINAN_OUTCOMES, RETRY_SYSTEMS

    def count(name: str, labels: dict[str, str]) -> int:
        return int(REGISTRY.get_sample_value(name, labels) or 0)

    calls = {o: count("bridge_finan_calls_total", {"outcome": o}) for o in FINAN_OUTCOMES}
    retries = {s: count("bridge_inline_retries_total", {"system": s}) for s in RETRY_SYSTEMS}
    line = "Finan calls: " + ", ".join(f"{o} {n}" for o, n in calls.items())
    line += "; inline retries: " + ", ".join(f"{s} {n}" for s, n in retries.items())
    logging.getLogger("bridge.cli").info(
        line, extra={"finan_calls": calls, "inline_retries": retries}
    )
    return line


@main.command()
@click.argument("ids", nargs=-1, type=INVOICE_ID)
@click.option(
    "--state",
    type=click.Choice(["issued", "cancelled", "queued", "failed", "dead"]),
    help="Check every invoice now in this state, instead of IDS.",
)
def reconcile(ids: tuple[int, ...], state: str | None) -> None:
    """Check what Finan holds for invoices IDS (or --state issued): one signed GET detail
    each, compared with the last body Finan accepted. Sends nothing.

    Runs here, paced by PROVIDER_RATE_LIMIT_PER_MIN like POST /admin/reconcile, with a
    progress bar and a summary. An invoice found out of sync is remembered (status page,
    bridge_out_of_sync_invoices) until a check finds it in sync or a re-sync sends it again.
    Exits 1 when any invoice is out of sync or could not be checked.
    """
    if bool(ids) == bool(state):
        raise click.UsageError("give invoice ids, or --state issued|cancelled|... (not both)")
    settings = settings_or_exit()
    from bridge.errors import NotFound
    from bridge.services import build_services

    reconciliations = build_services(settings).reconciliations
    try:
        batch = reconciliations.start(ids=list(ids), state=state, runner="cli")
    except NotFound as exc:
        click.echo(f"bridge reconcile: {exc.message}", err=True)
        sys.exit(1)
    if batch.total == 0:
        click.echo(f"No invoices are {state}; nothing to check.")
        return
    label = f"Checking {batch.total} invoice{'' if batch.total == 1 else 's'} at Finan"
    counts = run_here(reconciliations, batch, label)
    if counts["out_of_sync"]:
        click.echo(
            "Out of sync: see each on the status page (Check Finan), and re-sync it with "
            "--force to send the bridge's body again."
        )
    if any(counts[result] for result in reconciliations.PROBLEM_RESULTS):
        sys.exit(1)


def run_here(batches: ResyncBatches, batch: Batch, label: str) -> dict[str, int]:
    """Run ``batch`` in this process with a progress bar, then print its table and its
    count of each result (returned); the log lines of the run come after the table, so
    they never break the bar."""
    items: list[ItemResult] = []

    def progressed(item: ItemResult) -> None:
        items.append(item)
        bar.update(1)

    with logs_after_the_table():
        with click.progressbar(length=batch.total, label=label, show_pos=True) as bar:
            batches.run(batch.batch_id, wait=True, seconds=float("inf"), on_item=progressed)
        click.echo(summary_table(items))
    counts = {result: sum(1 for i in items if i.result == result) for result in batches.RESULTS}
    click.echo("  ".join(f"{result}: {count}" for result, count in counts.items()))
    return counts


def summary_table(items: list[ItemResult]) -> str:
    """One line per invoice: id, what happened, the state now, and why."""
    rows = [("invoice", "result", "state", "message")]
    rows += [(str(i.invoice_id), i.result, i.state or "-", i.message) for i in items]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in [*widths, len(row[3])]))
    return "\n".join(lines)


@main.command()
@click.option(
    "--crm-invoice",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="The CRM invoice id to GET (found or not, the answer shows the token works).",
)
def check(crm_invoice: int) -> None:
    """Validate the settings and reach Redis, the CRM and Finan; say what is wrong.

    Exits 1 when anything is wrong (2 when the settings themselves are).
    """
    from bridge.cli.checks import run_checks

    settings = settings_or_exit()
    env_file = (click.get_current_context().find_root().obj or {}).get("env_file")
    source = f"the environment, then {env_file}" if env_file else "the environment"
    click.echo(f"settings  ok    every setting is present and well-formed (from {source})")

    def show(result: CheckResult) -> None:
        mark = "ok" if result.ok else "WRONG"
        click.echo(f"{result.name:<8}  {mark:<5} {result.detail}")

    results = run_checks(settings, crm_invoice, show)
    if not all(result.ok for result in results):
        sys.exit(1)
