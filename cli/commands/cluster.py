"""``cluster scheduler|worker``: Dask's own scheduler and worker, started so that they can import this project.

distributed unpickles task graphs on the scheduler, so a scheduler that cannot
import ``models`` fails every job ("No module named 'models'"). These commands
run the real ``dask scheduler`` / ``dask worker`` (``python -m
distributed.cli.dask_scheduler|dask_worker``, every extra option passed
through) with this checkout first on ``PYTHONPATH``, from any folder.

``cluster worker`` also keeps the worker connected: when the scheduler goes
away (restart, network loss) a Dask worker closes itself; this command then
starts it again every ``--retry-delay`` seconds until the scheduler answers,
so workers survive a scheduler restart. Stop it with Ctrl-C or SIGTERM (the
worker gets the signal and ends its tasks' connection cleanly).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import click

from cli.context import info
from models.settings import environment_with_project_path

log = logging.getLogger(__name__)

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


def register(cli: click.Group) -> None:
    cli.add_command(cluster)


@click.group()
def cluster() -> None:
    """Run a Dask scheduler or worker for this project (see README, Scale out)."""


@cluster.command("scheduler", context_settings=PASS_THROUGH)
@click.argument("dask_args", nargs=-1, type=click.UNPROCESSED)
def scheduler(dask_args: tuple[str, ...]) -> None:
    """`dask scheduler DASK_ARGS...` with this project importable (e.g. --port 8786)."""
    argv = [sys.executable, "-m", "distributed.cli.dask_scheduler", *dask_args]
    os.execve(sys.executable, argv, environment_with_project_path())


@cluster.command("worker", context_settings=PASS_THROUGH)
@click.argument("address")
@click.argument("dask_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--retry-delay",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between restarts of a worker that lost its scheduler.",
)
def worker(address: str, dask_args: tuple[str, ...], retry_delay: float) -> None:
    """`dask worker ADDRESS DASK_ARGS...` with this project importable, restarted whenever it exits
    (e.g. because the scheduler restarted) until this command is stopped."""
    if "://" not in address:
        raise click.BadParameter(
            f"the scheduler address must look like tcp://host:8786, got {address!r}", param_hint="ADDRESS"
        )
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, *dask_args]
    env = environment_with_project_path()
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        child = subprocess.Popen(argv, env=env)
        code = child.wait()
        while code is None or child.poll() is None:  # a signal interrupted wait()
            code = child.wait()
        if stopping:
            sys.exit(0)
        info(
            f"dask worker exited with code {code} (scheduler {address} gone?); starting it again in "
            f"{retry_delay:g} s"
        )
        deadline = time.monotonic() + retry_delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            sys.exit(0)
