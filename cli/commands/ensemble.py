"""``ensemble create|list|show|predict|promote|history|delete``: stacking ensembles through the stacking tool.

Ensembles are named by reference: NAME (its production version, else its highest), NAME@production,
NAME@staging, NAME@latest, NAME@3 or a version's run id. ``create --new-version`` adds version N+1 of a
taken name; ``--base`` takes model references (NAME, NAME@production, NAME@1.2.0, a run id)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.context import AppContext, emit_json, emit_table, info, json_option, pass_app, stdout
from cli.progress_lines import ProgressLines

if TYPE_CHECKING:
    from agents.tools.stacking_tool import StackingTool


# the core's meta-model names, for --meta-model's help without importing the core (a test keeps them equal)
META_MODEL_NAMES = (
    "gradient_boosting",
    "linear_regression",
    "logistic_regression",
    "random_forest",
    "ridge",
    "ridge_cv",
)


def _meta_models() -> list[str]:
    from models.ensembles.stacking import meta_model_names

    return meta_model_names()


# the core's STACK_METHODS, so that parsing --stack-method imports nothing (a test keeps them equal)
STACK_METHOD_NAMES = ("auto", "predict_proba", "predict")


def register(cli: click.Group) -> None:
    cli.add_command(ensemble)


def _tool(app: AppContext) -> StackingTool:
    from agents.tools.stacking_tool import StackingTool

    return StackingTool(app.settings, app.db)


def _metric(metrics: dict[str, Any]) -> str:
    for key in ("roc_auc", "accuracy", "rmse", "r2"):
        if metrics.get(key) is not None:
            return f"{key} {metrics[key]:.4f}"
    return ""


@click.group()
def ensemble() -> None:
    """Stacking ensembles over trained configs (base models from verified artifacts)."""


def announce_training(app: AppContext, bases: list[str]) -> None:
    """Say on stderr, before any work, which base models will be trained first and about how long."""
    from models.ensembles.base_models import base_documents
    from models.ensembles.plan import plan_summary, retrain_plan
    from models.errors import ServiceError
    from models.training.estimate import slow_warning

    try:  # a base pinned by reference is loaded, never trained
        configs = [c for c in base_documents(app.db, bases) if not c.get("pinned")]
    except ServiceError:  # unknown names and the like: create_ensemble reports them properly
        return
    plan = retrain_plan(app.db, configs)
    if plan:
        info(plan_summary(plan))
    for entry, config in ((p, c) for p in plan for c in configs if c["name"] == p["name"]):
        warning = slow_warning(config, entry["estimate"]["rows"])
        if warning:
            info(f"warning: {warning}")


@ensemble.command("create")
@click.argument("name")
@click.option(
    "--base",
    "bases",
    multiple=True,
    help="A base model (repeat for each; at least two): a config NAME (its production run if one is "
    "promoted, else its current run), NAME@production, NAME@staging, NAME@latest, NAME@1.2.0 or a run id; "
    "the run used is pinned by run id.",
)
@click.option(
    "--meta-model",
    "--meta",
    "meta_model",
    default=None,
    help=f"Meta-model type: {', '.join(META_MODEL_NAMES)}. Default: scikit-learn's for the bases' task "
    "(logistic_regression for classification, ridge_cv, i.e. RidgeCV, for regression).",
)
@click.option("--passthrough", is_flag=True, help="Also give the meta-model the raw feature columns.")
@click.option(
    "--stack-method",
    default="auto",
    show_default=True,
    type=click.Choice(STACK_METHOD_NAMES),
    help="Which base-model output the meta-model sees.",
)
@click.option("--description", default="", help="A note stored with the ensemble.")
@click.option(
    "--new-version",
    is_flag=True,
    help="If NAME exists, store this as its next version (older versions stay loadable); without it a "
    "taken name is refused.",
)
@json_option
@pass_app
def create(
    app: AppContext,
    name: str,
    bases: tuple[str, ...],
    meta_model: str | None,
    passthrough: bool,
    stack_method: str,
    description: str,
    new_version: bool,
    as_json: bool,
) -> None:
    """Create ensemble NAME from --base models; prints where each base model came from.

    With DASK_SCHEDULER_ADDRESS set the creation is a job on the cluster, like the web's: a worker
    builds it with its own settings and writes it through the deployment's shared store (GridFS), so
    every machine can use it."""
    check_meta_model(meta_model)
    if not new_version:  # a taken name fails before any work (and says how to add a version)
        from models.store.ensembles import EnsembleStore

        EnsembleStore(app.db).refuse_taken(name)
    announce_training(app, list(bases))
    with ProgressLines(app.settings.progress_interval_seconds) as lines:
        if app.settings.dask_scheduler_address:
            record = _create_on_cluster(
                app,
                name,
                list(bases),
                meta_model,
                passthrough,
                stack_method,
                description,
                lines.reporter(),
                new_version,
            )
        else:
            record = _tool(app).create_ensemble(
                name,
                list(bases),
                meta_model,
                passthrough=passthrough,
                stack_method=stack_method,
                progress=lines.reporter(),
                description=description,
                new_version=new_version,
            )
    info(f"{record['name']}: version {record.get('version')} (run {record['run_id']})")
    if record.get("meta_model_default"):  # none was asked for: say which default, and why
        info(f"meta-model: {record['meta_model_default']}")
    if as_json:
        emit_json(record)
        return
    emit_table(
        (
            (b["name"], b["run_id"], b["source"], b["reason"] or "", f"{b['seconds']:.3f}s", _metric(b["metrics"]))
            for b in record["base_models"]
        ),
        ["base model", "run id", "source", "reason", "time", "held-out"],
        title=f"ensemble {record['name']} version {record.get('version')} ({record['meta_model']}, "
        f"run {record['run_id']})",
    )
    stdout.print(
        f"ensemble {_metric(record['metrics'])} on {record['n_test']} held-out rows; "
        f"created in {record['seconds']:.2f}s; trained: {', '.join(record.get('trained') or []) or 'none'}; "
        f"retrained: {', '.join(record['retrained']) or 'none'}"
    )


def check_meta_model(meta_model: str | None) -> None:
    """Refuse an unknown ``--meta-model`` (usage error, exit 2) before any work. Checked here, not by a
    ``click.Choice``, so that parsing the arguments imports nothing of the core; whether it fits the
    bases' task is the core's check."""
    if meta_model is None:
        return
    names = _meta_models()
    if meta_model not in names:
        raise click.BadParameter(
            f"{meta_model!r} is not one of: {', '.join(names)} (or leave --meta-model out for "
            "scikit-learn's default for the task)",
            param_hint="'--meta-model'",
        )


def _create_on_cluster(
    app: AppContext,
    name: str,
    bases: list[str],
    meta_model: str | None,
    passthrough: bool,
    stack_method: str,
    description: str,
    progress: Any,
    new_version: bool = False,
) -> dict[str, Any]:
    from models.ensembles.build import get_ensemble
    from models.ensembles.service import submit_ensemble
    from models.jobs import shutdown_default_runner
    from models.jobs.follow import follow

    body = {
        "name": name,
        "base_models": bases,
        **({} if meta_model is None else {"meta_model": meta_model}),
        "passthrough": passthrough,
        "stack_method": stack_method,
        "description": description,
        "new_version": new_version,
    }
    try:
        job, created = submit_ensemble(app.db, body, requested_by="cli")
        info(f"creating {name} on the Dask cluster at {app.settings.dask_scheduler_address} (job {job['_id']})")
        follow(app.db, job, joined=not created, progress=progress)
    finally:
        shutdown_default_runner()
    run_id = ((job_result(app, job["_id"]) or {}).get("run_id")) if job else None
    return get_ensemble(app.db, run_id or f"{name}@latest")


def job_result(app: AppContext, job_id: Any) -> dict[str, Any] | None:
    from models import jobs

    return (jobs.get_job(app.db, job_id) or {}).get("result")


@ensemble.command("list")
@json_option
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List ensembles."""
    docs = _tool(app).list_ensembles()
    if as_json:
        emit_json(docs)
        return
    emit_table(
        (
            (
                d["name"],
                str(d.get("version") or 1),
                d.get("stage") or "none",
                d["task"],
                d["meta_model"],
                ", ".join(d["base_names"]),
                _metric(d["metrics"]),
                d["created_at"].strftime("%Y-%m-%d %H:%M"),
            )
            for d in docs
        ),
        ["name", "version", "stage", "task", "meta-model", "base models", "held-out", "created"],
    )


@ensemble.command("show")
@click.argument("name")
@json_option
@pass_app
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show one ensemble version (NAME is a reference): options, metrics, and each base model's source,
    reason and time."""
    doc = _tool(app).get_ensemble(name)
    if as_json:
        emit_json(doc)
        return
    opts = doc["options"]
    stdout.print(
        f"[bold]{doc['name']}[/] version {doc.get('version') or 1} ({doc.get('stage') or 'none'}) "
        f"run {doc['run_id']}: {doc['task']} on {doc['target']!r}, meta-model "
        f"{doc['meta_model']}, stack method {opts['stack_method_used']}, passthrough {opts['passthrough']}"
    )
    emit_table(
        (
            (b["name"], b["run_id"], b["source"], b["reason"] or "", f"{b['seconds']:.3f}s", _metric(b["metrics"]))
            for b in doc["base_models"]
        ),
        ["base model", "run id", "source", "reason", "time", "held-out"],
    )
    stdout.print(
        f"ensemble {_metric(doc['metrics'])} on {doc['n_test']} held-out rows; created in {doc['seconds']:.2f}s"
    )


@ensemble.command("predict")
@click.argument("name")
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rows to predict (must hold the base models' feature columns).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rows with prediction columns to this CSV.",
)
@json_option
@pass_app
def predict(app: AppContext, name: str, csv_path: Path, out_path: Path | None, as_json: bool) -> None:
    """Predict the rows of --csv with ensemble NAME (a reference: NAME serves its production version, else
    its highest; NAME@production, NAME@staging, NAME@latest, NAME@3 or a run id pick a version). The run
    id and version that answered are printed (stderr; in the JSON answer with --json)."""
    from cli.csvio import read_csv_arg, write_predictions
    from models.store.references import SERVED_WORDS

    frame = read_csv_arg(csv_path)
    model = _tool(app).load_ensemble(name)
    served = model.served
    info(f"{model.name}: run {served['run_id']} (version {served['version']}, {SERVED_WORDS[served['served']]})")
    write_predictions(
        frame, model.predict_table(frame), out_path, as_json, meta={"ensemble": model.name, **served}
    )


@ensemble.command("promote")
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Choice(["production", "staging", "archived", "none"]),
    help="The new stage.",
)
@click.option(
    "--demote-to",
    default="staging",
    show_default=True,
    type=click.Choice(["staging", "archived"]),
    help="Where the current production version goes when another is promoted (as models promote).",
)
@click.option("--by", default="cli", show_default=True, help="Who made the change (recorded in the history).")
@click.option("--reason", help="Why (recorded in the history).")
@json_option
@pass_app
def promote(
    app: AppContext, ref: str, to: str, demote_to: str, by: str, reason: str | None, as_json: bool
) -> None:
    """Move an ensemble version to another stage; NAME alone is its highest version. One version per name
    is in production: promoting one demotes the previous one."""
    result = _tool(app).promote_ensemble(ref, to, by=by, reason=reason, demote_to=demote_to)
    if as_json:
        emit_json({k: v for k, v in result.items() if k != "ensemble"})
        return
    info(
        f"ensemble {result['name']} version {result['version']} (run {result['run_id']}): {result['from']} -> {to}"
    )
    if result["demoted"]:
        d = result["demoted"]
        info(f"ensemble {result['name']} version {d['version']} (run {d['run_id']}): production -> {d['to']}")


@ensemble.command("history")
@click.argument("name")
@json_option
@pass_app
def history(app: AppContext, name: str, as_json: bool) -> None:
    """Every version of ensemble NAME: stage, created, base runs (name@version, run id) and metrics."""
    from models.jsonable import to_json

    result = _tool(app).ensemble_history(name)
    if as_json:
        emit_json(to_json(result))
        return
    emit_table(
        (
            (
                str(v["version"]),
                v["stage"],
                v["created_at"].strftime("%Y-%m-%d %H:%M:%S") if v.get("created_at") else "",
                v["run_id"],
                "; ".join(f"{b['name']}@{b['version']} ({b['run_id']})" for b in v["bases"]),
                _metric(v["metrics"]),
            )
            for v in result["versions"]
        ),
        ["version", "stage", "created", "run id", "base models", "held-out"],
        title=f"ensemble {result['name']}: {name!r} serves version {result['serves']['version']}",
    )


@ensemble.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def delete(app: AppContext, name: str, yes: bool, as_json: bool) -> None:
    """Delete ensemble NAME (every version) and its files, or one version (NAME@3, a run id); base runs are
    kept."""
    tool = _tool(app)
    tool.get_ensemble(name)  # unknown names fail before the question
    if not yes:
        click.confirm(f"Delete ensemble {name!r}?", abort=True, err=True)
    doc = tool.delete_ensemble(name)
    if as_json:
        emit_json({"deleted": doc["name"], "run_id": doc["run_id"], "versions": doc["deleted_versions"]})
    else:
        versions = ", ".join(map(str, doc["deleted_versions"]))
        info(f"deleted ensemble {doc['name']} (version {versions}; run {doc['run_id']})")
