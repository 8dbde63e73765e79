"""Ensemble pages: the list, the Create Ensemble form (compatible base models only) and an ensemble's detail.

Creating runs as a background job; the detail page of a name whose ensemble is
still being built shows that job's progress and turns into the ensemble when it ends.

``<name>`` in these URLs is an ensemble reference (NAME: its production version, else its highest;
NAME@3, NAME@production, NAME@staging, NAME@latest, a version's run id). The detail page lists every
version with a control to move it to another stage; the predict upload answers with the version's run id
and version in ``X-Ensemble-Run-Id`` / ``X-Ensemble-Version`` / ``X-Ensemble-Served``.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from models import jobs
from models.artifacts.prediction_csv import to_safe_csv
from models.artifacts.predictor import with_predictions
from models.ensembles import versions
from models.ensembles.build import delete_ensemble, find_ensemble, get_ensemble, list_ensembles, load_ensemble
from models.ensembles.service import (
    REQUEST_FIELDS,
    candidates,
    comparison_rows,
    ensemble_features,
    ensemble_key,
    submit_ensemble,
)
from models.ensembles.stacking import STACK_METHODS, default_meta_model, default_meta_model_note, meta_model_names
from models.errors import ConflictError, NotFoundError, ValidationError
from models.estimators import TASKS
from web.pages.config_form import errors_by_field
from web.services import get_db, job_runner, requested_by

bp = Blueprint("ensembles", __name__, url_prefix="/ensembles")
NAV = ("Ensembles", "pages.ensembles.index")


@bp.get("/")
def index() -> Any:
    return render_template("ensembles/index.html", ensembles=list_ensembles(get_db()))


def _render_form(
    values: dict[str, Any],
    errors: dict[str, list[str]] | None = None,
    general: list[str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    chosen = values.get("base_models") or []
    found = candidates(get_db(), first=values.get("first") or (chosen[0] if chosen else None))
    # meta-models for the task at hand: the first choice's, or the only task there is; else per task
    tasks = sorted(
        {
            str(c.config.get("task"))
            for c in found["candidates"]
            if c.name == found["first"] or (not found["first"] and c.group)
        }
        & set(TASKS)
    )
    meta_models = {task: meta_model_names(task) for task in (tasks if tasks else TASKS)}
    return render_template(
        "ensembles/form.html",
        values=values,
        chosen=chosen,
        errors=errors or {},
        general_errors=general or [],
        meta_models=meta_models,
        meta_model_selected=selected_meta_model(meta_models, values.get("meta_model")),
        meta_model_defaults={
            task: (default_meta_model(task), default_meta_model_note(task)) for task in meta_models
        },
        stack_methods=STACK_METHODS,
        **found,
    ), status


def selected_meta_model(meta_models: dict[str, list[str]], asked: str | None) -> tuple[str, str] | None:
    """The ``(task, meta-model)`` option the form preselects: the one asked for (in the first task that
    has it), else the first task's default (scikit-learn's: logistic regression / RidgeCV) rather than
    whatever comes first in the list."""
    for task, names in meta_models.items():
        if asked in names:
            return task, str(asked)
    if not meta_models:
        return None
    task = next(iter(meta_models))
    return task, default_meta_model(task)


@bp.route("/new", methods=["GET", "POST"])
def create() -> Any:
    """GET: the form (``?first=<config>`` narrows the choice to that config's group). POST: queue the job."""
    if request.method == "GET":
        # no meta-model yet: the form preselects each task's default (scikit-learn's Stacking* default)
        return _render_form({"meta_model": None, "stack_method": "auto", "first": request.args.get("first")})[0]
    form = request.form
    values = {
        "name": form.get("name", "").strip(),
        "base_models": form.getlist("base_models"),
        "meta_model": form.get("meta_model") or None,  # none: the bases' task's default
        "stack_method": form.get("stack_method", "auto"),
        "passthrough": form.get("passthrough") == "on",
        "new_version": form.get("new_version") == "on",
        "description": form.get("description", "").strip(),
    }
    try:
        job, created = submit_ensemble(get_db(), values, runner=job_runner(), requested_by=requested_by())
    except ValidationError as exc:
        flash("The ensemble was not created: fix the problems marked below.", "error")
        errors, general = errors_by_field(exc, REQUEST_FIELDS)
        return _render_form(values, errors, general, 422)
    except (NotFoundError, ConflictError) as exc:
        flash(exc.message, "error")
        return _render_form(values, {exc.field or "name": [exc.message]}, [], exc.http_status)
    if created:
        plan = job["params"].get("train_first") or []
        default = job["params"].get("meta_model_default")
        flash(
            f"Creating ensemble {values['name']}…"
            + (f" Meta-model: {default}." if default else "")
            + (f" {job['params']['train_first_summary']}." if plan else ""),
            "success",
        )
    else:
        flash(f"Ensemble {values['name']} is already being created; showing that job.", "info")
    return redirect(url_for(".detail", name=job["params"].get("name", values["name"])))


@bp.get("/<name>")
def detail(name: str) -> Any:
    """The ensemble beside its base models; while it is being created, the job's progress."""
    database = get_db()
    doc = find_ensemble(database, name)
    if doc is None:
        job = jobs.latest_job(database, ensemble_key(name))
        if job is None:
            get_ensemble(database, name)  # raises NotFoundError: 404
        return render_template("ensembles/pending.html", name=name, job=job)
    return render_template(
        "ensembles/detail.html",
        ensemble=doc,
        ref=name,
        history=versions.history(database, name),
        comparison=comparison_rows(doc),
        ensemble_features=ensemble_features(database, doc),
        job=jobs.latest_job(database, ensemble_key(doc["name"])),
    )


def _uploaded_frame() -> pd.DataFrame:
    """The CSV file of the predict form as a DataFrame; ValidationError naming ``csv`` otherwise."""
    upload = request.files.get("csv")
    if upload is None or not upload.filename:
        raise ValidationError("choose a CSV file with the rows to predict", field="csv")
    try:
        frame = pd.read_csv(io.BytesIO(upload.read()))
    except UnicodeDecodeError:
        raise ValidationError(f"{upload.filename} is not UTF-8 text", field="csv") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(f"{upload.filename} cannot be read: {str(exc).strip()}", field="csv") from None
    if frame.empty:
        raise ValidationError(f"{upload.filename} has no rows", field="csv")
    return frame


@bp.post("/<name>/predict")
def predict(name: str) -> Any:
    """Predict the rows of an uploaded CSV; answers with that CSV plus the prediction columns."""
    database = get_db()
    get_ensemble(database, name)  # 404 for an unknown name, version or alias
    try:
        frame = _uploaded_frame()
        ensemble = load_ensemble(database, name)
        merged, _ = with_predictions(frame, ensemble.predict_table(frame))
    except ValidationError as exc:
        flash(f"No predictions: {exc.message}", "error")
        return redirect(url_for(".detail", name=name, _anchor="predict"))
    served = ensemble.served
    return Response(
        to_safe_csv(merged),  # formula-like cells escaped, as the API and the CLI write them
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{ensemble.name}-predictions.csv"',
            "X-Ensemble-Run-Id": str(served["run_id"]),
            "X-Ensemble-Version": str(served["version"]),
            "X-Ensemble-Served": str(served["served"]),
        },
    )


@bp.post("/<name>/promote")
def promote(name: str) -> Any:
    """Move the version ``name`` names (a plain name: its highest) to the form's stage ``to``."""
    try:
        result = versions.set_stage(
            get_db(), name, request.form.get("to", ""), by=requested_by(), demote_to="staging"
        )
    except ValidationError as exc:
        flash(f"Not moved: {exc.message}", "error")
        return redirect(url_for(".detail", name=name.rpartition("@")[0] or name, _anchor="versions"))
    demoted = result["demoted"]
    flash(
        f"Ensemble {result['name']} version {result['version']}: {result['from']} -> {result['to']}."
        + (f" Version {demoted['version']} moved to {demoted['to']}." if demoted else ""),
        "success",
    )
    return redirect(url_for(".detail", name=result["name"], _anchor="versions"))


@bp.route("/<name>/delete", methods=["GET", "POST"])
def delete(name: str) -> Any:
    """GET asks for confirmation; POST (with ``confirm``) deletes the ensemble and its files."""
    database = get_db()
    doc = get_ensemble(database, name)
    if request.method == "GET":
        return render_template("ensembles/delete.html", ensemble=doc)
    if request.form.get("confirm") != doc["name"]:
        flash("The deletion was not confirmed.", "error")
        return render_template("ensembles/delete.html", ensemble=doc, confirm_error=True), 422
    delete_ensemble(database, doc["name"])
    flash(f"Ensemble {doc['name']} deleted (its base models' runs are kept).", "success")
    return redirect(url_for(".index"))
