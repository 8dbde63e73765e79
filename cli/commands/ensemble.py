"""``ensemble create|list|show|predict|delete``: stacking ensembles through the stacking tool."""

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
    from models.ensembles.base_models import fetch_configs
    from models.ensembles.plan import plan_summary, retrain_plan
    from models.errors import ServiceError
    from models.training.estimate import slow_warning

    try:
        configs = fetch_configs(app.db, bases)
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
@click.option("--base", "bases", multiple=True, help="A base config (repeat for each; at least two).")
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
    as_json: bool,
) -> None:
    """Create ensemble NAME from --base configs; prints where each base model came from.

    With DASK_SCHEDULER_ADDRESS set the creation is a job on the cluster, like the web's: a worker
    builds it with its own settings and writes it through the deployment's shared store (GridFS), so
    every machine can use it."""
    check_meta_model(meta_model)
    announce_training(app, list(bases))
    with ProgressLines(app.settings.progress_interval_seconds) as lines:
        if app.settings.dask_scheduler_address:
            record = _create_on_cluster(
                app, name, list(bases), meta_model, passthrough, stack_method, description, lines.reporter()
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
            )
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
        title=f"ensemble {record['name']} ({record['meta_model']}, run {record['run_id']})",
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
    }
    try:
        job, created = submit_ensemble(app.db, body, requested_by="cli")
        info(f"creating {name} on the Dask cluster at {app.settings.dask_scheduler_address} (job {job['_id']})")
        follow(app.db, job, joined=not created, progress=progress)
    finally:
        shutdown_default_runner()
    return get_ensemble(app.db, name)


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
                d["task"],
                d["meta_model"],
                ", ".join(d["base_names"]),
                _metric(d["metrics"]),
                d["created_at"].strftime("%Y-%m-%d %H:%M"),
            )
            for d in docs
        ),
        ["name", "task", "meta-model", "base models", "held-out", "created"],
    )


@ensemble.command("show")
@click.argument("name")
@json_option
@pass_app
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show one ensemble: options, metrics, and each base model's source, reason and time."""
    doc = _tool(app).get_ensemble(name)
    if as_json:
        emit_json(doc)
        return
    opts = doc["options"]
    stdout.print(
        f"[bold]{doc['name']}[/] run {doc['run_id']}: {doc['task']} on {doc['target']!r}, meta-model "
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
    """Predict the rows of --csv with ensemble NAME."""
    from cli.csvio import read_csv_arg, write_predictions

    frame = read_csv_arg(csv_path)
    model = _tool(app).load_ensemble(name)
    write_predictions(
        frame, model.predict_table(frame), out_path, as_json, meta={"ensemble": name, "run_id": model.run_id}
    )


@ensemble.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def delete(app: AppContext, name: str, yes: bool, as_json: bool) -> None:
    """Delete ensemble NAME and its files (base runs are kept)."""
    tool = _tool(app)
    tool.get_ensemble(name)  # unknown names fail before the question
    if not yes:
        click.confirm(f"Delete ensemble {name!r}?", abort=True, err=True)
    doc = tool.delete_ensemble(name)
    if as_json:
        emit_json({"deleted": doc["name"], "run_id": doc["run_id"]})
    else:
        info(f"deleted ensemble {doc['name']} (run {doc['run_id']})")
