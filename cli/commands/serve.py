"""``serve``: run the admin web app and JSON API under waitress (a production WSGI server)."""

from __future__ import annotations

import click

from cli.context import AppContext, info, pass_app
from models.errors import DatabaseUnavailableError


def register(cli: click.Group) -> None:
    cli.add_command(serve)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: WEB_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: WEB_PORT, 5000).")
@click.option(
    "--workers",
    "--threads",
    "threads",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Worker threads handling requests (waitress serves from one process with a thread pool).",
)
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, threads: int) -> None:
    """Serve the admin web app and the JSON API until interrupted (Ctrl+C)."""
    from pymongo.errors import PyMongoError

    from models.store.db import Database, safe_uri
    from web import (
        create_app,  # imported here: the other commands do not need Flask
        server,
    )
    from web.services import get_state

    settings = app.settings
    host = host or settings.web_host
    port = settings.web_port if port is None else port
    if app._db is None:  # a service outlives MongoDB outages: start even if it is down now, answer 503 meanwhile
        app._db = Database.connect(settings, require_server=False)
    try:
        flask_app = create_app(settings, app.db)
    except PyMongoError as exc:
        raise DatabaseUnavailableError(
            f"MongoDB at {safe_uri(settings.effective_mongo_uri)} is not reachable ({exc.__class__.__name__}); "
            "start it and serve again"
        ) from None
    generated = get_state(flask_app).credentials.pop_generated()
    shown_host = f"[{host}]" if ":" in host else host
    info(f"Serving on http://{shown_host}:{port}/ (waitress, {threads} threads). Press Ctrl+C to stop.")
    if host not in server.LOOPBACK:
        info(f"warning: listening on {host}; the app is reachable from other machines.")
    if "admin_password" in generated:
        info(f"Generated admin password (shown only this once): {generated['admin_password']}")
        info("Lost it? python -m cli web reset-password sets a new one.")
    else:
        info(
            "Log in with the admin password (ADMIN_PASSWORD, or the one printed on the first start; a new one: "
            "python -m cli web reset-password)."
        )
    if "api_token" in generated:
        info(f"Generated API token (shown only this once): {generated['api_token']}")
        info("Use it as: Authorization: Bearer <token>")
    server.run(
        flask_app,
        host,
        port,
        threads,
        connection_limit=settings.web_connection_limit,
        channel_timeout=settings.web_channel_timeout,
    )
