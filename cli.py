"""The `lianban` command: serve, demo, database and worker."""

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from api.requestlog import configure_logging

log = logging.getLogger("lianban")


@click.group()
@click.option("--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose):
    """Joint handling of property registration and utility transfer."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)


@main.command()
@click.option(
    "--port", default=5000, show_default=True, help="Port of the hub on 127.0.0.1."
)
@click.option(
    "--var-dir",
    default="var",
    show_default=True,
    help="Folder for the database, keys and logs.",
)
def serve(port, var_dir):
    """Run the hub with its partner peers on loopback until Ctrl-C."""
    from demo.stack import start_stack

    stack = start_stack(Path(var_dir), port=port)
    click.echo(f"Lianban is running at {stack.hub_url}/api/v1")
    click.echo(f"  OpenAPI document: {stack.hub_url}/api/v1/openapi.json")
    click.echo(f"  identity provider sandbox: {stack.peers.idp_url}")
    click.echo(f"  WeChat Pay sandbox: {stack.peers.wechatpay_url}")
    click.echo(f"  utility simulator: {stack.peers.utility_sim_url}")
    click.echo(f"  registry secret: {Path(var_dir) / 'hub-partners.json'}")
    click.echo("Press Ctrl-C to stop.")
    _wait_for_signal()
    stack.stop()


@main.command()
@click.option(
    "--var-dir",
    default=None,
    help="Keep the demo's files here instead of a temporary folder.",
)
@click.option(
    "--quiet", is_flag=True, help="Show the demo's steps only, not the service log."
)
def demo(var_dir, quiet):
    """Drive four demo cases end to end over HTTP and print each timeline."""
    import tempfile

    from demo.run import run_demo

    if quiet:
        logging.getLogger().setLevel(logging.WARNING)
    if var_dir is None:
        with tempfile.TemporaryDirectory(prefix="lianban-demo-") as tmp:
            ok = run_demo(Path(tmp))
    else:
        ok = run_demo(Path(var_dir))
    sys.exit(0 if ok else 1)


@main.group()
def db():
    """Database schema commands."""


@db.command()
def upgrade():
    """Apply the migrations not yet applied to DATABASE_URL."""
    from app import create_app
    from models import migrate
    from models.db import database

    with create_app().app_context(), database.connection_context():
        done = migrate.upgrade()
    click.echo(f"applied {len(done or [])} migrations")


@db.command()
@click.argument("name")
def revision(name):
    """Write a migration for the models' changes since the last one."""
    from app import create_app
    from models import migrate
    from models.db import database

    with create_app().app_context(), database.connection_context():
        migrate.upgrade()
        click.echo(migrate.create_revision(name))


@main.command()
def worker():
    """Send pushes and payment reports from the outbox until Ctrl-C."""
    from app import create_app
    from services.worker import OutboxWorker

    thread = OutboxWorker(create_app())
    thread.start()
    _wait_for_signal()
    thread.stop()


def _wait_for_signal():
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
