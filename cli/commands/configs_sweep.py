"""``configs sweep BASE --grid k=v1,v2 ... [--train]``: one config per combination of hyperparameter values."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.context import AppContext, emit_json, emit_table, info, json_option, pass_app


def register(cli: click.Group) -> None:
    cli.commands["configs"].add_command(sweep)  # type: ignore[attr-defined]


def _wait_all(app: AppContext, queued: list[dict[str, Any]], quiet: bool) -> list[dict[str, Any]]:
    from models import jobs

    """Follow the training jobs until each has finished; one line per finished job on stderr."""
    pending = {str(j["_id"]): j for j in queued}
    done: dict[str, dict[str, Any]] = {}
    while pending:
        for job_id in list(pending):
            job = jobs.get_job(app.db, job_id)
            if jobs.is_finished(job):
                done[job_id] = job
                del pending[job_id]
                if not quiet:
                    name = (job.get("params") or {}).get("config")
                    info(
                        f"{name}: {job['status']}" + (f" ({job['error']['message']})" if job.get("error") else "")
                    )
        if pending:
            time.sleep(0.3)
    return [done[str(j["_id"])] for j in queued]


@click.command("sweep")
@click.argument("base")
@click.option(
    "--grid",
    "grid",
    multiple=True,
    required=True,
    help="name=value1,value2 (repeat for each hyperparameter); one config per combination.",
)
@click.option(
    "--train",
    "train_",
    is_flag=True,
    help="Also train the new configs as jobs (in parallel through the job runner) and wait for them.",
)
@json_option
@pass_app
def sweep(app: AppContext, base: str, grid: tuple[str, ...], train_: bool, as_json: bool) -> None:
    """Create one config per combination of --grid values from config BASE (same data, target and folds).

    A combination that fails hyperparameter validation refuses the whole sweep (nothing is created).
    """
    from models.training.sweep import create_sweep, parse_grid, submit_sweep_training

    created = create_sweep(app.db, base, parse_grid(grid))
    out: list[dict[str, Any]] = [{"name": c["name"], "hyperparameters": c["hyperparameters"]} for c in created]
    if not as_json:
        info(f"created {len(created)} configs from {base}")
    if train_:
        if not as_json:
            info(f"training {len(created)} configs through the job runner…")
        finished = _wait_all(app, submit_sweep_training(app.db, created, requested_by="cli"), as_json)
        for row, job in zip(out, finished):
            row["status"] = job["status"]
            row["job_id"] = str(job["_id"])
            result = job.get("result") or {}
            if result.get("cv"):
                row["cv"] = result["cv"]
            if job.get("error"):
                row["error"] = job["error"]
    if as_json:
        emit_json(out)
    else:
        emit_table(
            (
                (
                    r["name"],
                    ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items()),
                    r.get("status", "new"),
                    f"{r['cv']['metric']} {r['cv']['mean']:.4f}"
                    if r.get("cv")
                    else (r["error"]["message"] if r.get("error") else ""),
                )
                for r in out
            ),
            ["config", "hyperparameters", "status", "cv score / error"],
        )
    if any(r.get("status") == "failed" for r in out):
        raise SystemExit(1)
