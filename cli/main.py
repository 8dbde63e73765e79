"""The ``python -m cli`` entry point: one click group; each module in ``cli/commands`` adds its commands.

Command modules import only click and ``cli.context`` at the top; anything heavier (scikit-learn,
pandas, pymongo, rich) is imported inside the command that uses it, so ``--help`` starts in a
fraction of a second (tests/test_cli_startup.py checks which modules ``--help`` loads).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from cli import commands as command_modules
from cli.context import AppContext, ServiceGroup, reader_gone


@click.group(cls=ServiceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Ensemble model cache: train models from MongoDB configs, keep verified artifacts,
    build stacking ensembles without retraining."""
    app = ctx.ensure_object(AppContext)
    app.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.call_on_close(app.close)


for _info in sorted(pkgutil.iter_modules(command_modules.__path__), key=lambda m: m.name):
    importlib.import_module(f"cli.commands.{_info.name}").register(cli)


def main() -> None:
    try:
        try:
            cli(prog_name="python -m cli")
        finally:
            sys.stdout.flush()  # output still buffered when the command ended meets a closed pipe here
    except BrokenPipeError:
        reader_gone()
