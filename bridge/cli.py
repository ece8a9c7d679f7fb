"""The ``bridge`` command: serve, worker, sandbox (DESIGN.md section 4, "Command line")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bridge.config import ConfigError, Settings, load_settings

# deploy/gunicorn.conf.py: in a source checkout (or an image built from one) it sits beside
# the package; a regular `pip install` puts a copy under <prefix>/share (setup.cfg).
GUNICORN_CONFIG_PLACES = (
    Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py",
    Path(sys.prefix) / "share" / "tourwell-finan-bridge" / "gunicorn.conf.py",
)


def default_gunicorn_config() -> str:
    found = next((place for place in GUNICORN_CONFIG_PLACES if place.is_file()), None)
    return str(found or GUNICORN_CONFIG_PLACES[0])


def settings_or_exit() -> Settings:
    """Validated settings from the environment, or a message naming each bad one, exit 2."""
    try:
        return load_settings(os.environ)
    except ConfigError as exc:
        click.echo(f"bridge: refusing to start: {exc}", err=True)
        click.echo("See the settings table in README.md.", err=True)
        sys.exit(2)


@click.group()
def main() -> None:
    """The Tourwell -> Finan invoice bridge."""


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
        from bridge import embedded_redis

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
            "bridge.wsgi:app",
        ],
    )


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (for tests).")
def worker(burst: bool) -> None:
    """Run a queue worker (with RQ's scheduler) on the bridge's Redis."""
    settings = settings_or_exit()
    from bridge import jobs, logs
    from bridge.app import build_services
    from bridge.queue import bridge_queue

    logs.configure_logging()  # JSON lines, like the web processes; RQ's lines included
    services = build_services(settings)
    jobs.use(services)
    worker = jobs.BridgeWorker([bridge_queue(services.redis)], connection=services.redis)
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
