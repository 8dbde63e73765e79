"""``models ...``: the model registry (search, show, best, compare, lifecycle, delete, export/import, deploy and
MLflow exports).

Every command is a thin layer over :mod:`models.registry`; ``--json`` prints
only JSON on stdout. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from cli.context import AppContext, LazyChoice, emit_json, emit_table, info, json_option, pass_app, stdout
from models.errors import ValidationError

SUMMARY_METRICS = {
    "classification": ("roc_auc", "f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def _statuses() -> list[str]:
    from models import registry

    return list(registry.STATUSES)


def register(cli: click.Group) -> None:
    cli.add_command(models_group)


@click.group("models")
def models_group() -> None:
    """The model registry: find, compare, promote, move and delete trained runs.

    A run is named by its id (20261123_101509_1a2b3c4d), or NAME (latest version), NAME@VERSION,
    NAME@latest, NAME@production, or latest (the newest run); every command here takes either.
    """


def _fmt(value: Any) -> str:
    from models.jsonable import to_json

    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        text = str(to_json(value) if isinstance(value, dict) else value)
        return text if len(text) <= 40 else text[:37] + "..."
    return str(value)


def _created(run: dict[str, Any]) -> str:
    from models.jsonable import to_json

    value = to_json({"t": run.get("created_at")})["t"]
    return value or ""


def _metric_summary(run: dict[str, Any], first: str | None = None) -> str:
    metrics = run.get("metrics") or {}
    names = ([first] if first else []) + [m for m in SUMMARY_METRICS.get(run.get("task"), ()) if m != first]
    parts = [f"{m} {_fmt(metrics[m])}" for m in names if isinstance(metrics.get(m), (int, float))][:3]
    return "  ".join(parts)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for text in values:
        metric, sep, raw = text.partition("=")
        if not sep or not metric.strip():
            raise ValidationError(
                f"{option} needs METRIC=VALUE (e.g. {option} f1=0.8), got {text!r}", field=option
            )
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValidationError(f"{option} {text}: the value must be a number", field=option)
        out[metric.strip()] = number
    return out


def _run_rows(runs: list[dict[str, Any]], metric: str | None = None) -> list[tuple]:
    return [
        (
            r["run_id"],
            r.get("name"),
            r.get("version"),
            r.get("status"),
            r.get("task"),
            r.get("model_type"),
            _created(r),
            _metric_summary(r, metric),
        )
        for r in runs
    ]


RUN_COLUMNS = ["run id", "name", "version", "status", "task", "model type", "created", "metrics"]


@models_group.command("list")
@click.option("--name", help="Only runs of this config name.")
@click.option("--contains", "q", help="Only runs whose name contains this (any case).")
@click.option("--target", help="Only runs predicting this target column.")
@click.option("--data", help="Only runs trained on a file whose name contains this (e.g. penguins.csv).")
@click.option("--type", "model_type", help="Only this model type (e.g. random_forest).")
@click.option("--task", type=click.Choice(["classification", "regression"]))
@click.option("--status", type=LazyChoice(_statuses))
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeat: all of them).")
@click.option("--since", help="Created at or after (ISO date or date-time).")
@click.option("--until", help="Created at or before (ISO date or date-time).")
@click.option("--min", "mins", multiple=True, metavar="METRIC=VALUE", help="Metric at least VALUE (repeatable).")
@click.option("--max", "maxs", multiple=True, metavar="METRIC=VALUE", help="Metric at most VALUE (repeatable).")
@click.option("--sort", default="created_at", show_default=True, help="A metric or a field (created_at, name...).")
@click.option(
    "--desc/--asc",
    "descending",
    default=None,
    help="Direction (default: best first for a metric, newest first for created_at).",
)
@click.option("--page", default=1, show_default=True, type=int)
@click.option("--per-page", default=20, show_default=True, type=int)
@json_option
@pass_app
def list_(
    app: AppContext,
    name: str | None,
    q: str | None,
    target: str | None,
    data: str | None,
    model_type: str | None,
    task: str | None,
    status: str | None,
    tags: tuple[str, ...],
    since: str | None,
    until: str | None,
    mins: tuple[str, ...],
    maxs: tuple[str, ...],
    sort: str,
    descending: bool | None,
    page: int,
    per_page: int,
    as_json: bool,
) -> None:
    """Search runs by name, type, task, status, tags, dates and metric thresholds."""
    from models import registry

    result = registry.search(
        app.db,
        name=name,
        q=q,
        target=target,
        data=data,
        model_type=model_type,
        task=task,
        status=status,
        tags=list(tags),
        since=since,
        until=until,
        min_metrics=_pairs(mins, "--min"),
        max_metrics=_pairs(maxs, "--max"),
        sort=sort,
        descending=descending,
        page=page,
        per_page=per_page,
    )
    if as_json:
        emit_json(result)
        return
    metric = None if sort in registry.SORT_FIELDS else sort
    emit_table(
        _run_rows(result["items"], metric),
        RUN_COLUMNS,
        title=f"{result['total']} runs (page {result['page']} of {result['pages']})",
    )


def _rows_line(data: dict) -> str:
    """Rows read, used and dropped (a missing target), as ``models show`` prints them."""
    if "rows_read" not in data:
        return ""
    line = f"{data['rows_read']} read, {data.get('rows_used', data['rows_read'])} used"
    dropped = data.get("rows_dropped") or 0
    return line + (f", {dropped} dropped (missing target)" if dropped else ", none dropped")


def _held_out_line(metrics: dict) -> str:
    """The held-out (test rows) scores, so they are never confused with the CV score."""
    return ", ".join(
        f"{k} {_fmt(v)}" for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    )


@models_group.command("show")
@click.argument("ref")
@json_option
@pass_app
def show(app: AppContext, ref: str, as_json: bool) -> None:
    """Show one run: RUN_ID, NAME, NAME@VERSION, NAME@latest or NAME@production."""
    from models import registry

    run = registry.resolve(app.db, ref)
    if as_json:
        emit_json(run)
        return
    definition = run.get("definition") or {}
    fields = [
        ("run id", run["run_id"]),
        ("name", run.get("name")),
        ("version", run.get("version")),
        ("version change", run.get("version_change")),
        ("status", run.get("status")),
        ("task", run.get("task")),
        ("model type", run.get("model_type")),
        ("created", _created(run)),
        ("requested by", run.get("requested_by")),
        ("tags", ", ".join(run.get("tags") or [])),
        ("features", ", ".join(definition.get("features") or [])),
        ("hyperparameters", definition.get("hyperparameters")),
        ("scaler", definition.get("scaler")),
        ("data set", (run.get("data") or {}).get("training_csv")),
        ("rows", _rows_line(run.get("data") or {})),
        ("data fingerprint", (run.get("data") or {}).get("fingerprint")),
        (
            "cv score (training rows)",
            f"{(run.get('cv') or {}).get('metric')} {_fmt((run.get('cv') or {}).get('mean'))}",
        ),
        ("held-out scores", _held_out_line(run.get("metrics") or {})),
        ("total time", f"{(run.get('durations') or {}).get('total_s', '')}s"),
    ]
    emit_table(
        ((k, _fmt(v) if not isinstance(v, str) else v) for k, v in fields),
        ["field", "value"],
        title=f"{run.get('name')} {run.get('version')}",
    )
    metrics = [(k, _fmt(v)) for k, v in (run.get("metrics") or {}).items() if isinstance(v, (int, float))]
    emit_table(metrics, ["metric", "value"], title="held-out metrics")


@models_group.command("best")
@click.option("--metric", required=True, help="The metric to optimise (direction aware).")
@click.option("--name")
@click.option("--contains", "q", help="Only runs whose name contains this (any case).")
@click.option("--target", help="Only runs predicting this target column.")
@click.option("--data", help="Only runs trained on a file whose name contains this (e.g. penguins.csv).")
@click.option("--type", "model_type")
@click.option("--task", type=click.Choice(["classification", "regression"]))
@click.option("--status", type=LazyChoice(_statuses))
@json_option
@pass_app
def best(
    app: AppContext,
    metric: str,
    name: str | None,
    q: str | None,
    target: str | None,
    data: str | None,
    model_type: str | None,
    task: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """The best run by a metric; prints nothing found (JSON null) when no run has it."""
    from models import registry

    run = registry.best(
        app.db, metric, name=name, model_type=model_type, task=task, status=status, q=q, target=target, data=data
    )
    if as_json:
        emit_json(run)
        return
    if run is None:
        info(f"no run has the metric {metric!r} (with these filters)")
        return
    emit_table(_run_rows([run], metric), RUN_COLUMNS, title=f"best by {metric}")


@models_group.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@json_option
@pass_app
def compare(app: AppContext, run_ids: tuple[str, ...], as_json: bool) -> None:
    """Compare runs side by side; the best value of each metric row is marked with *."""
    from rich.table import Table

    from models import registry

    table = registry.compare(app.db, list(run_ids))
    if as_json:
        emit_json(table)
        return
    heads = [f"{r['name']} {r['version']}\n{r['run_id']}" for r in table["runs"]]
    for section in table["sections"]:
        if not section["rows"]:
            continue
        out = Table(title=section["title"], header_style="bold")
        out.add_column("")
        for head in heads:
            out.add_column(head)
        for row in section["rows"]:
            best_cols = set(row.get("best") or [])
            cells = [
                (f"[bold green]*{_fmt(v)}[/]" if i in best_cols else _fmt(v)) for i, v in enumerate(row["values"])
            ]
            out.add_row(row["key"], *cells)
        stdout.print(out)


@models_group.command("promote")
@click.argument("run_id")
@click.option("--to", "to", required=True, type=LazyChoice(_statuses), help="The new status.")
@click.option(
    "--demote-to",
    default="staging",
    show_default=True,
    type=click.Choice(["staging", "archived"]),
    help="Where the current production run goes when another is promoted.",
)
@click.option("--by", default="cli", show_default=True, help="Who made the change (recorded in the history).")
@click.option("--reason", help="Why (recorded in the history).")
@json_option
@pass_app
def promote(
    app: AppContext, run_id: str, to: str, demote_to: str, by: str, reason: str | None, as_json: bool
) -> None:
    """Move a run to another lifecycle status (trained, staging, production, archived)."""
    from models import registry

    result = registry.set_status(app.db, run_id, to, by=by, reason=reason, demote_to=demote_to)
    if as_json:
        emit_json({k: v for k, v in result.items() if k != "run"})
        return
    info(f"run {result['run_id']}: {result['from']} -> {result['to']}")
    if result["demoted"]:
        d = result["demoted"]
        info(f"run {d['run_id']} ({d.get('version')}): production -> {d['to']}")


@models_group.command("history")
@click.argument("run_id")
@json_option
@pass_app
def history(app: AppContext, run_id: str, as_json: bool) -> None:
    """The status transitions of a run, oldest first."""
    from models import registry
    from models.jsonable import to_json

    entries = registry.history(app.db, run_id)
    if as_json:
        emit_json(entries)
        return
    emit_table(
        ((to_json({"t": e["at"]})["t"], e["from"], e["to"], e["by"], e["reason"]) for e in entries),
        ["at", "from", "to", "by", "reason"],
        title=f"history of {run_id}",
    )


@models_group.command("delete")
@click.argument("run_id")
@click.option("--force", is_flag=True, help="Also delete the ensembles that use the run.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def delete(app: AppContext, run_id: str, force: bool, yes: bool, as_json: bool) -> None:
    """Delete a run and its files (refused while ensembles use it, unless --force)."""
    from models import registry

    run = registry.resolve(app.db, run_id)
    users = registry.ensembles_using(app.db, run["run_id"])
    if users and force:
        info(
            f"these ensembles use run {run['run_id']} and will be deleted too: "
            f"{', '.join(u['name'] for u in users)}"
        )
    if not yes and (force or not users):
        click.confirm(
            f"Delete run {run['run_id']} ({run.get('name')} {run.get('version')}) and its files?",
            abort=True,
            err=True,
        )
    result = registry.delete_run(app.db, run["run_id"], force=force)
    if as_json:
        emit_json(result)
        return
    info(
        f"deleted run {result['run_id']} ({result['name']} {result['version']}), "
        f"{len(result['deleted_files'])} files"
    )
    if result["deleted_ensembles"]:
        info(f"deleted ensembles: {', '.join(result['deleted_ensembles'])}")
    if result["config"]:
        c = result["config"]
        info(
            f"config {c['name']} now points at run {c['run_id']} ({c['version']})"
            if c["action"] == "repointed"
            else f"config {c['name']} has no run any more"
        )


@models_group.command("export")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The archive to write (.tar.gz).")
@json_option
@pass_app
def export(app: AppContext, ref: str, out: Path, as_json: bool) -> None:
    """Export a run (artifacts, config, run document, manifest) to one signed .tar.gz archive.

    REF is a model reference (NAME, NAME@production, NAME@1.2.0, a run id), or an ensemble reference (NAME,
    NAME@3, NAME@production, a version's run id): then the ensemble version with all its base runs, in one
    archive under one signature (`models import` takes both)."""
    from models import registry

    result = registry.export_archive(app.db, ref, out)
    if as_json:
        emit_json(result)
        return
    what = (
        f"ensemble {result['name']} version {result['version']} with {len(result['base_runs'])} base run(s)"
        if result["kind"] == "ensemble"
        else f"run {result['run_id']} ({result['name']} {result['version']})"
    )
    info(f"exported {what} to {result['path']} ({result['size']} bytes, sha256 {result['sha256'][:12]}...)")


@models_group.command("import")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--rename", "on_conflict", flag_value="rename", help="Give the run a new id if its id exists.")
@click.option(
    "--overwrite", "on_conflict", flag_value="overwrite", help="Replace an existing run with the same id."
)
@click.option("--by", default="cli", show_default=True, help="Who imported it (recorded in the history).")
@click.option(
    "--trust",
    is_flag=True,
    help="Import even though no known key signed the archive (you vouch "
    "for it; recorded in the run, and its files are re-signed here).",
)
@json_option
@pass_app
def import_(app: AppContext, archive: Path, on_conflict: str | None, by: str, trust: bool, as_json: bool) -> None:
    """Import a run or ensemble archive signed by this installation or a TRUSTED_KEYS key (else refused unless
    --trust); every checksum is verified before anything is written. An ensemble archive brings its base runs:
    one already here with the same files is reused, one with other files refused."""
    from models import registry

    result = registry.import_archive(app.db, archive, on_conflict=on_conflict or "refuse", by=by, trust=trust)
    if as_json:
        emit_json(result)
        return
    if result["kind"] == "ensemble":
        info(
            f"imported ensemble {result['name']} as version {result['version']} (stage none; "
            f"{len(result['base_runs_imported'])} base run(s) imported, {len(result['base_runs_reused'])} "
            "already here)"
        )
        return
    info(
        f"imported run {result['run_id']} as {result['name']} {result['version']}"
        + (f" (renamed from {result['original_run_id']})" if result["renamed"] else "")
        + (f"; config {result['config']['name']} created" if result["config"]["action"] == "created" else "")
    )


@models_group.command("deploy-export")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The folder to write to.")
@json_option
@pass_app
def deploy_export(app: AppContext, ref: str, out: Path, as_json: bool) -> None:
    """Write a single joblib file that plain scikit-learn loads, plus a metadata JSON.

    REF is a model reference (NAME serves its production run, else its latest training; NAME@production,
    NAME@1.2.0, a run id): a Pipeline (select features -> preprocessing -> model). Or an ensemble reference
    (NAME: its production version, else its highest; NAME@3, NAME@production, a version's run id): a fitted StackingClassifier/StackingRegressor (VotingClassifier/VotingRegressor for a weighted
    ensemble) over the base runs' pipelines, with the ensemble's own meta-model; nothing is refitted."""
    from models import registry

    result = registry.deploy_export(app.db, ref, out)
    if as_json:
        emit_json(result)
        return
    info(f"wrote {result['pipeline_path']} and {result['metadata_path']}")


@models_group.command("export-mlflow")
@click.argument("ref")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The MLflow model folder to write (new or empty).",
)
@json_option
@pass_app
def export_mlflow(app: AppContext, ref: str, out: Path, as_json: bool) -> None:
    """Write an MLflow model folder (MLmodel, model.pkl, requirements.txt, python_env.yaml, conda.yaml)
    that mlflow.pyfunc.load_model and `mlflow models serve` take; MLflow need not be installed here.

    REF resolves as for deploy-export: a model reference (NAME serves its production run, else its latest
    training; NAME@production, NAME@staging, NAME@latest, NAME@1.2.0, a run id) or an ensemble reference
    (NAME, NAME@3, NAME@production, a version's run id). model.pkl is the very estimator deploy-export writes. An --out folder that exists and is not
    empty is refused; nothing is half-written."""
    from models import registry

    result = registry.export_mlflow(app.db, ref, out)
    if as_json:
        emit_json(result)
        return
    what = f"ensemble {result['ensemble']}" if result.get("ensemble") else f"{result['name']} {result['version']}"
    info(
        f"wrote MLflow model {result['path']} ({result['kind']}, {', '.join(result['files'])}): {what}, "
        f"run {result['run_id']} (served: {result['served']})"
    )
