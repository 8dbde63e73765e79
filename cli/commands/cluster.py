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

Strangers cannot use the cluster: both listen on 127.0.0.1 unless ``--host``
says otherwise; with ``DASK_TLS_DIR`` (made by ``cluster certs``) every
connection is TLS with mutual authentication, and a scheduler on another
interface without TLS is refused unless ``DASK_ALLOW_INSECURE=1``
(:mod:`models.jobs.tls`). A worker gets the artifact signing key as a file
(mode 0600), never in its environment, where any task could read it.
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
from models.errors import ValidationError
from models.settings import environment_with_project_path, get_settings

log = logging.getLogger(__name__)

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


def register(cli: click.Group) -> None:
    cli.add_command(cluster)


@click.group()
def cluster() -> None:
    """Run a Dask scheduler or worker for this project (see README, Scale out)."""


def _check_bind(host: str, role: str) -> None:
    from models.jobs.tls import is_loopback

    settings = get_settings()
    if settings.dask_tls_dir is None and not settings.dask_allow_insecure and not is_loopback(host):
        raise ValidationError(
            f"a {role} listening on {host} without TLS lets anyone who reaches it run code on the workers: "
            "make certificates (python -m cli cluster certs --out DIR), set DASK_TLS_DIR=DIR, or set "
            "DASK_ALLOW_INSECURE=1 if the network itself is trusted",
            field="--host",
        )


@cluster.command("certs")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for the files.")
@click.option("--host", "hosts", multiple=True, help="A host name or address of the cluster (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing CA (every machine then needs the new files).")
def certs(out: str, hosts: tuple[str, ...], overwrite: bool) -> None:
    """Make the deployment's CA and the scheduler, worker and client certificates in OUT (keys 0600).

    Copy OUT to every machine (ca.key need not leave this one) and set DASK_TLS_DIR=OUT there."""
    from pathlib import Path

    from models.jobs.tls import make_certificates

    written = make_certificates(Path(out), hosts=hosts, overwrite=overwrite)
    info(f"wrote {', '.join(sorted(written))} to {out}; set DASK_TLS_DIR={out} on every machine")


@cluster.command("scheduler", context_settings=PASS_THROUGH)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8786, show_default=True, type=int, help="Port to listen on.")
@click.argument("dask_args", nargs=-1, type=click.UNPROCESSED)
def scheduler(host: str, port: int, dask_args: tuple[str, ...]) -> None:
    """`dask scheduler` with this project importable, on --host (127.0.0.1) and --port; TLS with mutual
    authentication when DASK_TLS_DIR is set (its address is then tls://HOST:PORT)."""
    from models.jobs.tls import cli_tls_options

    _check_bind(host, "scheduler")
    tls = cli_tls_options(get_settings(), "scheduler")
    protocol = ["--protocol", "tls"] if tls else []
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--host",
        host,
        "--port",
        str(port),
        *protocol,
        *tls,
        *dask_args,
    ]
    os.execve(sys.executable, argv, _worker_environment())


def _worker_environment() -> dict[str, str]:
    """The environment of a Dask process: the project importable; the signing key as a 0600 file, not a
    variable (a task can read its worker's environment)."""
    env = environment_with_project_path()
    key = env.pop("ARTIFACT_SIGNING_KEY", None)
    if key:
        from models.artifacts.signing import write_key_file

        settings = get_settings()
        path = settings.var_dir / "dask-signing.key"
        write_key_file(path, key)
        env["ARTIFACT_SIGNING_KEY_FILE"] = str(path)
    return env


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
    from models.jobs.tls import check_address, cli_tls_options

    settings = get_settings()
    check_address(settings, address, what="ADDRESS")
    host = ["--host", "127.0.0.1"] if "--host" not in dask_args and "--listen-address" not in dask_args else []
    if not host:
        given = dask_args[dask_args.index("--host") + 1] if "--host" in dask_args else "0.0.0.0"
        _check_bind(given, "worker")
    tls = cli_tls_options(settings, "worker")
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, *host, *tls, *dask_args]
    env = _worker_environment()
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
