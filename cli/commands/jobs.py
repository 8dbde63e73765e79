"""``jobs list|show|cancel``: the background jobs (training, ensemble creation) recorded in MongoDB."""

from __future__ import annotations

import click

from cli.context import AppContext, LazyChoice, emit_json, emit_table, info, json_option, pass_app


def _statuses() -> tuple[str, ...]:
    from models.store.jobs import STATUSES

    return tuple(STATUSES)


def register(cli: click.Group) -> None:
    cli.add_command(jobs_group)


@click.group("jobs")
def jobs_group() -> None:
    """List, inspect or cancel background jobs (the same ones the web app shows)."""


def _row(job: dict) -> tuple:
    error = job.get("error") or {}
    return (
        str(job["_id"]),
        job.get("kind"),
        job.get("key"),
        job.get("status"),
        f"{round(100 * float(job.get('progress') or 0))}%",
        job.get("duration_s") if job.get("duration_s") is not None else "",
        f"{error.get('code')}: {error.get('message')}" if error else job.get("message", ""),
    )


COLUMNS = ["id", "kind", "key", "status", "progress", "seconds", "message / error"]


@jobs_group.command("list")
@click.option("--status", type=LazyChoice(_statuses), help="Only jobs in this state.")
@click.option("--kind", help="Only jobs of this kind (train, ensemble).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@json_option
@pass_app
def list_cmd(app: AppContext, status: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs first."""
    from models import jobs

    found = jobs.list_jobs(app.db, status=status, kind=kind, limit=limit)
    if as_json:
        emit_json([jobs.job_to_json(j) for j in found])
    else:
        emit_table((_row(j) for j in found), COLUMNS)


@jobs_group.command("show")
@click.argument("job_id")
@json_option
@pass_app
def show(app: AppContext, job_id: str, as_json: bool) -> None:
    """One job: state, progress, error or result."""
    from models import jobs

    job = jobs.get_job(app.db, job_id)
    if as_json:
        emit_json(jobs.job_to_json(job))
    else:
        emit_table([_row(job)], COLUMNS)


@jobs_group.command("cancel")
@click.argument("job_id")
@json_option
@pass_app
def cancel(app: AppContext, job_id: str, as_json: bool) -> None:
    """Cancel a queued or running job: it ends failed (cancelled), nothing of it is kept.

    Exits 2 when the job has already ended or does not exist.
    """
    from models import jobs

    job = jobs.cancel(app.db, job_id, requested_by="cli")
    if as_json:
        emit_json(jobs.job_to_json(job))
    else:
        info(f"job {job['_id']} cancelled ({job['kind']} {job['key']})")
