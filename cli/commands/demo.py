"""``demo``: write the demo games CSV and register the demo configs."""

from __future__ import annotations

import click

from cli.context import AppContext, emit_json, info, json_option, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option("--games", default=24_600, show_default=True, help="How many games to simulate.")
@click.option("--force", is_flag=True, help="Rewrite the CSV and replace demo configs that exist.")
@json_option
@pass_app
def demo(app: AppContext, games: int, force: bool, as_json: bool) -> None:
    """Create the demo data set (NBA-like games) and register the demo configs."""
    from models.demo import install_demo

    result = install_demo(app.db, games=games, force=force)
    if as_json:
        emit_json(result)
    else:
        info(f"demo data: {result['csv']} ({result['rows']} games)")
        info(
            f"configs added: {', '.join(result['added']) or 'none'}; "
            f"already present: {', '.join(result['kept']) or 'none'}"
        )
