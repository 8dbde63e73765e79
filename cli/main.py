"""The ``python -m cli`` entry point: one click group, subcommands per area."""
from __future__ import annotations

import logging

import click

from cli.context import AppContext, ServiceGroup
from cli.commands import configs, db, demo


@click.group(cls=ServiceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Ensemble model cache: train models from MongoDB configs, keep verified artifacts,
    build stacking ensembles without retraining."""
    app = ctx.ensure_object(AppContext)
    app.debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.call_on_close(app.close)


for module in (db, configs, demo):
    module.register(cli)


def main() -> None:
    cli(prog_name="python -m cli")
