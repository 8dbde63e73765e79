"""``db start|stop|status``: the embedded database server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.context import AppContext, emit_json, info, json_option, pass_app

if TYPE_CHECKING:
    from models.store.embedded import EmbeddedServer


def register(cli: click.Group) -> None:
    cli.add_command(db_group)


@click.group("db")
def db_group() -> None:
    """Start, stop or inspect the embedded database (used when MONGO_URI is not set)."""


def _server(app: AppContext) -> EmbeddedServer:
    from models.store.embedded import EmbeddedServer

    if not app.settings.uses_embedded:
        raise click.UsageError("MONGO_URI is set: the embedded database is not used")
    return EmbeddedServer.from_settings(app.settings)


@db_group.command("start")
@json_option
@pass_app
def start(app: AppContext, as_json: bool) -> None:
    """Start the embedded server and wait until it answers."""
    status = _server(app).start()
    if as_json:
        emit_json(status)
    elif status["already_running"]:
        info(f"already running at {status['uri']} (pid {status['pid']})")
    else:
        info(f"started at {status['uri']} (pid {status['pid']}), data in {status['storage_path']}")


@db_group.command("stop")
@json_option
@pass_app
def stop(app: AppContext, as_json: bool) -> None:
    """Stop the embedded server."""
    stopped = _server(app).stop()
    if as_json:
        emit_json({"stopped": stopped})
    else:
        info("stopped" if stopped else "not running")


@db_group.command("status")
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Say whether the embedded server runs (exit 1 when it does not)."""
    st = _server(app).status()
    if as_json:
        emit_json(st)
    else:
        click.echo(f"running at {st['uri']} (pid {st['pid']})" if st["running"] else "not running")
    if not st["running"]:
        raise SystemExit(1)
