"""``web reset-password``: a new admin password for the web app (the generated one is shown only once)."""

from __future__ import annotations

import click

from cli.context import AppContext, emit_json, info, json_option, pass_app, stdout


def register(cli: click.Group) -> None:
    cli.add_command(web)


@click.group("web")
def web() -> None:
    """The web app's admin credentials (serve it with: python -m cli serve)."""


@web.command("reset-password")
@click.option(
    "--password", "ask", is_flag=True, help="Type the new password (asked twice) instead of generating one."
)
@json_option
@pass_app
def reset_password(app: AppContext, ask: bool, as_json: bool) -> None:
    """Set a new admin password and print it once. A running server accepts it at the next login."""
    from web.credentials import reset_admin_password  # imported here: the other commands do not need Flask

    typed = (
        click.prompt("New admin password", hide_input=True, confirmation_prompt=True, err=True) if ask else None
    )
    plain = reset_admin_password(app.db, app.settings, typed)
    if as_json:
        emit_json({"admin_password": None if ask else plain, "reset": True})
        return
    if ask:
        info("The admin password was changed.")
    else:
        info("New admin password (shown only this once):")
        stdout.print(plain)
