"""Ensemble pages: the list, the Create Ensemble form (compatible base models only) and an ensemble's detail.

Creating runs as a background job; the detail page of a name whose ensemble is
still being built shows that job's progress and turns into the ensemble when it ends.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from models import jobs
from models.ensembles.build import get_ensemble, list_ensembles
from models.ensembles.service import (
    REQUEST_FIELDS,
    candidates,
    comparison_rows,
    ensemble_key,
    submit_ensemble,
)
from models.ensembles.stacking import STACK_METHODS, meta_model_names
from models.errors import ConflictError, NotFoundError, ValidationError
from web.pages.config_form import errors_by_field
from web.services import get_db, job_runner, requested_by

bp = Blueprint("ensembles", __name__, url_prefix="/ensembles")
NAV = ("Ensembles", "pages.ensembles.index")


@bp.get("/")
def index() -> Any:
    return render_template("ensembles/index.html", ensembles=list_ensembles(get_db()))


def _render_form(values: dict[str, Any], errors: dict[str, list[str]] | None = None,
                 general: list[str] | None = None, status: int = 200) -> tuple[str, int]:
    chosen = values.get("base_models") or []
    found = candidates(get_db(), first=values.get("first") or (chosen[0] if chosen else None))
    return render_template("ensembles/form.html", values=values, chosen=chosen, errors=errors or {},
                           general_errors=general or [], meta_models=meta_model_names(),
                           stack_methods=STACK_METHODS, **found), status


@bp.route("/new", methods=["GET", "POST"])
def create() -> Any:
    """GET: the form (``?first=<config>`` narrows the choice to that config's group). POST: queue the job."""
    if request.method == "GET":
        return _render_form({"meta_model": "logistic_regression", "stack_method": "auto",
                             "first": request.args.get("first")})[0]
    form = request.form
    values = {"name": form.get("name", "").strip(), "base_models": form.getlist("base_models"),
              "meta_model": form.get("meta_model", "logistic_regression"),
              "stack_method": form.get("stack_method", "auto"), "passthrough": form.get("passthrough") == "on",
              "description": form.get("description", "").strip()}
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
        flash(f"Creating ensemble {values['name']}…" + (f" {job['params']['train_first_summary']}." if plan else ""),
              "success")
    else:
        flash(f"Ensemble {values['name']} is already being created; showing that job.", "info")
    return redirect(url_for(".detail", name=job["params"].get("name", values["name"])))


@bp.get("/<name>")
def detail(name: str) -> Any:
    """The ensemble beside its base models; while it is being created, the job's progress."""
    database = get_db()
    doc = database.ensembles.find_one({"name": name})
    if doc is None:
        job = jobs.latest_job(database, ensemble_key(name))
        if job is None:
            get_ensemble(database, name)  # raises NotFoundError: 404
        return render_template("ensembles/pending.html", name=name, job=job)
    return render_template("ensembles/detail.html", ensemble=doc, comparison=comparison_rows(doc),
                           job=jobs.latest_job(database, ensemble_key(name)))
