"""``train NAME...``: train configs in the foreground with a progress bar per model."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.context import (
    AppContext,
    emit_json,
    emit_table,
    info,
    json_option,
    pass_app,
    stderr,
)
from models.errors import ServiceError, ValidationError
from models.jobs.default import shutdown_default_runner
from models.jobs.store import FAILED, SUCCEEDED, get_job
from models.store.configs import ConfigStore
from models.training.service import submit_training
from models.training.train import train_config

POLL_S = 0.3


def register(cli: click.Group) -> None:
    cli.add_command(train)


def _selected(app: AppContext, names: tuple[str, ...], all_: bool, untrained: bool) -> list[str]:
    store = ConfigStore(app.db)
    if all_ or untrained:
        docs = store.list()
        chosen = [d["name"] for d in docs if all_ or not d.get("run_id")]
    else:
        chosen = [store.get(n)["name"] for n in names]  # unknown names fail before anything trains
    if not chosen and not (all_ or untrained):
        raise ValidationError("name at least one config, or use --all / --untrained", field="NAME")
    return list(dict.fromkeys(chosen))


def _in_process(app: AppContext, chosen: list[str], version: str | None, parallel: int, bars: Progress,
                tasks: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    def one(name: str) -> None:
        def progress(fraction: float, message: str) -> None:
            bars.update(tasks[name], completed=fraction, step=message)
        try:
            run = train_config(app.db, name, progress=progress, version=version, requested_by="cli")
            results[name] = {"name": name, "status": "trained", "run_id": run["run_id"],
                             "version": run["version"], "metrics": run["metrics"], "cv": run["cv"],
                             "seconds": run["durations"]["total_s"]}
        except ServiceError as exc:
            bars.update(tasks[name], step="[red]failed")
            results[name] = {"name": name, "status": "failed", "error": exc.to_dict()}

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, chosen))


def _on_cluster(app: AppContext, chosen: list[str], version: str | None, bars: Progress,
                tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each config as a training job on the Dask cluster (DASK_SCHEDULER_ADDRESS); the workers train with
    their own settings; progress comes from the job documents they write."""
    submitted = {name: submit_training(app.db, name, requested_by="cli", version=version)[0] for name in chosen}
    info(f"training {len(chosen)} config(s) on the Dask cluster at {app.settings.dask_scheduler_address}")
    results: dict[str, dict[str, Any]] = {}
    while len(results) < len(chosen):
        for name, job in submitted.items():
            if name in results:
                continue
            doc = get_job(app.db, job["_id"])
            bars.update(tasks[name], completed=doc.get("progress") or 0.0, step=doc.get("message") or doc["status"])
            if doc["status"] == SUCCEEDED:
                run = doc["result"]
                results[name] = {"name": name, "status": "trained", "run_id": run["run_id"],
                                 "version": run["version"], "metrics": run["metrics"], "cv": run["cv"],
                                 "seconds": run["durations"]["total_s"], "job_id": str(doc["_id"]),
                                 "worker": (doc.get("worker") or {}).get("address")}
            elif doc["status"] == FAILED:
                bars.update(tasks[name], step="[red]failed")
                results[name] = {"name": name, "status": "failed", "job_id": str(doc["_id"]),
                                 "error": doc.get("error") or {"code": "failed", "message": "the job failed"}}
        if len(results) < len(chosen):
            time.sleep(POLL_S)
    shutdown_default_runner()  # close the cluster client now, not from an exit hook after threads are gone
    return results


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Train every config.")
@click.option("--untrained", is_flag=True, help="Train the configs that have no artifacts yet.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 32),
              help="How many configs to train at once (in this process; with DASK_SCHEDULER_ADDRESS set "
                   "every config is a job on the cluster and the workers decide).")
@click.option("--version", help="Set the version by hand (one config only).")
@json_option
@pass_app
def train(app: AppContext, names: tuple[str, ...], all_: bool, untrained: bool, parallel: int,
          version: str | None, as_json: bool) -> None:
    """Train configs and save verified artifacts. Exits 1 if any training failed.

    With DASK_SCHEDULER_ADDRESS set, each config trains as a job on the Dask cluster."""
    chosen = _selected(app, names, all_, untrained)
    if version and len(chosen) != 1:
        raise ValidationError("--version applies to exactly one config", field="--version")
    results: dict[str, dict[str, Any]] = {}
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[step]}"), TimeElapsedColumn(), console=stderr,
                  disable=as_json or not chosen) as bars:
        tasks = {n: bars.add_task(n, total=1.0, step="queued") for n in chosen}
        if app.settings.dask_scheduler_address:
            results.update(_on_cluster(app, chosen, version, bars, tasks))
        else:
            _in_process(app, chosen, version, parallel, bars, tasks, results)
    ordered = [results[n] for n in chosen]
    if as_json:
        emit_json(ordered)
    else:
        emit_table(((r["name"], r["status"], r.get("version", ""), r.get("run_id", ""),
                     f"{r['cv']['metric']} {r['cv']['mean']:.4f}" if "cv" in r else r["error"]["message"],
                     f"{r['seconds']:.2f}s" if "seconds" in r else "") for r in ordered),
                   ["config", "status", "version", "run id", "cv score / error", "time"])
    failed = [r for r in ordered if r["status"] == "failed"]
    if failed:
        for r in failed:
            info(f"error: {r['name']}: {r['error']['message']}")
        raise SystemExit(1)
