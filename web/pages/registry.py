"""Registry pages: search runs (filters, metric thresholds, sort), compare runs side by side,
a run's page with lifecycle actions and history, delete with confirmation, export download.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from models import registry
from models.artifacts.maintenance import run_artifacts_info
from models.errors import ConflictError, ValidationError
from web.registry_service import compare_ids, search_args
from web.services import get_db, requested_by

bp = Blueprint("registry", __name__, url_prefix="/registry")
NAV = ("Registry", "pages.registry.index")

SORTS = (
    "created_at",
    "name",
    "version",
    "status",
    "model_type",
    "roc_auc",
    "accuracy",
    "f1",
    "log_loss",
    "rmse",
    "r2",
    "mae",
)


@bp.get("/")
def index() -> Any:
    """Runs matching the filters in the query string; checkboxes pick runs to compare."""
    args = request.args
    try:
        result = registry.search(get_db(), **search_args(args))
        error = None
    except ValidationError as exc:
        result, error = None, exc
        flash(f"Search not run: {exc.message}", "error")
    filters = {
        k: args.get(k, "")
        for k in (
            "name",
            "q",
            "target",
            "data",
            "model_type",
            "task",
            "status",
            "tag",
            "min",
            "max",
            "sort",
            "order",
        )
    }
    return render_template(
        "registry/index.html", result=result, filters=filters, statuses=registry.STATUSES, sorts=SORTS, error=error
    ), (200 if error is None else 422)


@bp.get("/compare")
def compare() -> Any:
    ids = compare_ids(request.args)
    try:
        table = registry.compare(get_db(), ids)
    except ValidationError as exc:
        flash(f"Pick at least two runs to compare ({exc.message}).", "error")
        return redirect(url_for(".index"))
    return render_template("registry/compare.html", table=table, run_ids=ids)


@bp.get("/runs/<run_id>")
def run(run_id: str) -> Any:
    database = get_db()
    doc = registry.get_run(database, run_id)
    return render_template(
        "registry/run.html",
        run=doc,
        history=registry.history(database, run_id),
        transitions=registry.allowed_transitions(doc.get("status", "trained")),
        users=registry.ensembles_using(database, run_id),
        artifacts_info=run_artifacts_info(database, run_id),
        production=registry.find_production(database, doc["name"]),
    )


@bp.post("/runs/<run_id>/status")
def set_status(run_id: str) -> Any:
    """A lifecycle button: move the run to ``to`` (promoting to production demotes the current one)."""
    to = request.form.get("to", "")
    try:
        result = registry.set_status(
            get_db(), run_id, to, by=requested_by(), reason=(request.form.get("reason") or "").strip() or None
        )
    except (ValidationError, ConflictError) as exc:
        flash(f"Status not changed: {exc.message}", "error")
        return redirect(url_for(".run", run_id=run_id))
    message = f"Run {run_id} moved from {result['from']} to {result['to']}."
    if result["demoted"]:
        message += f" Run {result['demoted']['run_id']} moved from production to {result['demoted']['to']}."
    flash(message, "success")
    return redirect(url_for(".run", run_id=run_id))


@bp.route("/runs/<run_id>/delete", methods=["GET", "POST"])
def delete(run_id: str) -> Any:
    """GET asks for confirmation (and says which ensembles block it); POST with ``confirm`` deletes."""
    database = get_db()
    doc = registry.get_run(database, run_id)
    users = registry.ensembles_using(database, run_id)
    if request.method == "GET":
        return render_template("registry/delete.html", run=doc, users=users)
    if request.form.get("confirm") != doc["run_id"]:
        flash("The deletion was not confirmed: type the run id.", "error")
        return render_template("registry/delete.html", run=doc, users=users, confirm_error=True), 422
    try:
        result = registry.delete_run(database, run_id)
    except ConflictError as exc:
        flash(f"Run not deleted: {exc.message}", "error")
        return render_template("registry/delete.html", run=doc, users=users), 409
    note = ""
    if result["config"]:
        cfg = result["config"]
        note = (
            f" Config {cfg['name']} now points at run {cfg['run_id']}."
            if cfg["action"] == "repointed"
            else f" Config {cfg['name']} has no trained run any more."
        )
    flash(f"Run {run_id} ({result['name']} {result['version']}) deleted.{note}", "success")
    return redirect(url_for(".index"))
