"""``train NAME...``: train configs in the foreground with a progress bar per model."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from cli.context import AppContext, emit_json, emit_table, info, json_option, pass_app, stderr
from cli.progress_lines import ProgressLines
from models.errors import ServiceError, ValidationError


def _outcome(r: dict[str, Any]) -> str:
    if r["status"] == "failed":
        return "failed"
    return ("joined the running training, " if r.get("joined") else "") + f"trained in {r['seconds']:.1f} s"


def register(cli: click.Group) -> None:
    cli.add_command(train)


def _selected(app: AppContext, names: tuple[str, ...], all_: bool, untrained: bool) -> list[str]:
    from models.store.configs import ConfigStore

    store = ConfigStore(app.db)
    if all_ or untrained:
        docs = store.list()
        chosen = [d["name"] for d in docs if all_ or not d.get("run_id")]
    else:
        chosen = [store.get(n)["name"] for n in names]  # unknown names fail before anything trains
    if not chosen and not (all_ or untrained):
        raise ValidationError("name at least one config, or use --all / --untrained", field="NAME")
    return list(dict.fromkeys(chosen))


def warn_slow(app: AppContext, names: list[str]) -> None:
    """Before training: a warning for each config whose model type is known to be slow for its data size."""
    from models.store.configs import ConfigStore
    from models.training.estimate import count_rows, slow_warning

    for name in names:
        config = ConfigStore(app.db).get(name)
        warning = slow_warning(config, count_rows(config.get("training_csv") or ""))
        if warning:
            info(f"warning: {warning}")


def _train_all(
    app: AppContext,
    chosen: list[str],
    version: str | None,
    parallel: int,
    reporter: Callable[[str], Any],
    results: dict[str, dict[str, Any]],
) -> None:
    """Each config as its training job (the one per config every entry point shares), ``parallel`` at a
    time in this process, or on the Dask cluster when DASK_SCHEDULER_ADDRESS is set (the workers train
    with their own settings). A training of the same config already running elsewhere is joined."""
    from models.jobs import InProcessRunner, get_default_runner, shutdown_default_runner
    from models.training.service import train_bounded

    on_cluster = bool(app.settings.dask_scheduler_address)
    runner = get_default_runner(app.settings) if on_cluster else InProcessRunner(parallel)
    if on_cluster:
        info(f"training {len(chosen)} config(s) on the Dask cluster at {app.settings.dask_scheduler_address}")

    def one(name: str) -> None:
        try:
            run = train_bounded(
                app.db, name, progress=reporter(name), version=version, requested_by="cli", runner=runner
            )
            results[name] = {
                "name": name,
                "status": "trained",
                "run_id": run["run_id"],
                "version": run["version"],
                "metrics": run["metrics"],
                "cv": run["cv"],
                "seconds": run["durations"]["total_s"],
                "warnings": run.get("warnings") or [],
                "job_id": run["job_id"],
                "joined": run["joined"],
            }
            if run.get("worker"):
                results[name]["worker"] = run["worker"]
        except ServiceError as exc:
            results[name] = {"name": name, "status": "failed", "error": exc.to_dict()}

    try:
        with ThreadPoolExecutor(max_workers=len(chosen) if on_cluster else parallel) as pool:
            list(pool.map(one, chosen))
    finally:
        if on_cluster:
            shutdown_default_runner()  # close the cluster client now, not from an exit hook after threads are gone
        else:
            runner.shutdown(wait=False, cancel_pending=True)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Train every config.")
@click.option("--untrained", is_flag=True, help="Train the configs that have no artifacts yet.")
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(1, 32),
    help="How many configs to train at once (in this process; with DASK_SCHEDULER_ADDRESS set "
    "every config is a job on the cluster and the workers decide).",
)
@click.option("--version", help="Set the version by hand (one config only).")
@json_option
@pass_app
def train(
    app: AppContext,
    names: tuple[str, ...],
    all_: bool,
    untrained: bool,
    parallel: int,
    version: str | None,
    as_json: bool,
) -> None:
    """Train configs and save verified artifacts. Exits 2 if a training failed on bad input (its data), 1 if
    one failed otherwise.

    Each training is a job (listed by `jobs list` and on the Jobs page) running in its own worker
    process, stopped after TRAIN_TIMEOUT_SECONDS (error 'timeout'; the config keeps its previous run).
    A training of the same config already running (the web's Train button, another terminal, an
    ensemble's retrain) is joined and waited for, not started twice. With DASK_SCHEDULER_ADDRESS set,
    each config trains as a job on the Dask cluster, with the workers' own settings."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    chosen = _selected(app, names, all_, untrained)
    if version and len(chosen) != 1:
        raise ValidationError("--version applies to exactly one config", field="--version")
    warn_slow(app, chosen)
    results: dict[str, dict[str, Any]] = {}

    def run_all(app_: AppContext, chosen_: list[str], version_: str | None, reporter: Any, results_: dict) -> None:
        _train_all(app_, chosen_, version_, parallel, reporter, results_)

    if stderr.is_terminal and not as_json and chosen:
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[step]}"),
            TimeElapsedColumn(),
            console=stderr.console,
        ) as bars:
            tasks = {n: bars.add_task(n, total=1.0, step="queued") for n in chosen}

            def bar(name: str) -> Any:
                return lambda fraction, message: bars.update(tasks[name], completed=fraction, step=message)

            run_all(app, chosen, version, bar, results)
            for name, r in results.items():
                if r["status"] == "failed":
                    bars.update(tasks[name], step="[red]failed")
    else:  # CI, 2>file, --json: plain lines, and a heartbeat while a step runs
        with ProgressLines(app.settings.progress_interval_seconds) as lines:
            run_all(app, chosen, version, lines.reporter, results)
            for name in chosen:
                r = results[name]
                lines.finish(name, _outcome(r))
    ordered = [results[n] for n in chosen]
    if as_json:
        emit_json(ordered)
    else:
        emit_table(
            (
                (
                    r["name"],
                    r["status"],
                    r.get("version", ""),
                    r.get("run_id", ""),
                    f"{r['cv']['metric']} {r['cv']['mean']:.4f}" if "cv" in r else r["error"]["message"],
                    f"{r['seconds']:.2f}s" if "seconds" in r else "",
                )
                for r in ordered
            ),
            ["config", "status", "version", "run id", "cv score / error", "time"],
        )
    for r in ordered:
        if r.get("joined"):
            info(f"{r['name']}: joined the training already running (job {r['job_id']}); not trained twice")
        for warning in r.get("warnings") or []:
            info(f"warning: {r['name']}: {warning}")
    failed = [r for r in ordered if r["status"] == "failed"]
    if failed:
        for r in failed:
            info(f"error: {r['name']}: {r['error']['message']}")
        bad_input = {"data_error", "validation_error", "not_found"}
        raise SystemExit(2 if all(r["error"]["code"] in bad_input for r in failed) else 1)
