"""Config pages: the table, create / edit / duplicate, detail, delete with confirmation.

Views are thin: they read the form, call :class:`~models.store.configs.ConfigStore`
and turn its :class:`~models.errors.ValidationError` into inline messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from models.errors import ConflictError, ValidationError
from models.store.schema import TRAINING_FIELDS
from models.timeutil import iso
from models.training.service import submit_training
from web.formatting import last_trained, primary_metric
from web.pages.config_form import check, choices, errors_by_field, extra_fields, form_values, parse_form
from web.services import config_store, get_db, get_settings, job_runner, requested_by

from ..training_view import training_context

bp = Blueprint("configs", __name__, url_prefix="/configs")
NAV = ("Configs", "pages.configs.index")

FILTERS = ("task", "model_type", "status", "tag", "q")


def _time_key(doc: dict[str, Any]) -> str | None:
    value = last_trained(doc)
    return iso(value) if hasattr(value, "astimezone") else (str(value) if value else None)


def _metric_key(doc: dict[str, Any]) -> float | None:
    metric = primary_metric(doc)
    return metric[1] if metric else None


# column -> (label, key function); the table sorts on these
COLUMNS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "name": ("Name", lambda d: d.get("name")),
    "status": ("Status", lambda d: d.get("status") or "new"),
    "model_type": ("Model type", lambda d: d.get("model_type")),
    "task": ("Task", lambda d: d.get("task")),
    "metric": ("Primary metric", _metric_key),
    "trained": ("Last trained", _time_key),
}


def sort_rows(docs: list[dict[str, Any]], column: str, descending: bool) -> list[dict[str, Any]]:
    """Sort by a table column; rows without a value go last in either direction."""
    key = COLUMNS[column][1]
    present = [d for d in docs if key(d) is not None]
    missing = [d for d in docs if key(d) is None]
    present.sort(key=lambda d: d.get("name", ""))
    present.sort(key=key, reverse=descending)  # stable: equal values stay in name order
    return present + missing


@bp.get("/")
def index() -> Any:
    """The configs table, filtered by the query string and sorted by a column."""
    filters = {k: (request.args.get(k) or "").strip() for k in FILTERS}
    sort = request.args.get("sort", "name")
    if sort not in COLUMNS:
        flash(f"Cannot sort by {sort!r}; sorted by name.", "error")
        sort = "name"
    descending = request.args.get("dir") == "desc"
    docs = config_store().list(**{k: v or None for k, v in filters.items()})
    return render_template(
        "configs/index.html",
        configs=sort_rows(docs, sort, descending),
        filters=filters,
        sort=sort,
        descending=descending,
        columns=COLUMNS,
        choices=choices(),
        filtered=any(filters.values()),
    )


def _render_form(
    mode: str,
    values: dict[str, str],
    *,
    config: dict[str, Any] | None = None,
    error: ValidationError | None = None,
    extras: dict[str, Any] | None = None,
    duplicate_of: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    field_errors, general = errors_by_field(error) if error else ({}, [])
    if error:
        flash("The config was not saved: fix the fields marked below.", "error")
    return render_template(
        "configs/form.html",
        mode=mode,
        values=values,
        config=config,
        errors=field_errors,
        general_errors=general,
        extras=extras or {},
        duplicate_of=duplicate_of,
        choices=choices(),
        upload_limit=get_settings().max_training_csv_bytes,
    ), status


@bp.route("/new", methods=["GET", "POST"])
def create() -> Any:
    """Create a config; with ``duplicate_of`` the source's own extra fields come along."""
    store = config_store()
    duplicate_of = (request.values.get("duplicate_of") or "").strip() or None
    source = store.get(duplicate_of) if duplicate_of else None
    extras = extra_fields(source) if source else {}
    if request.method == "GET":
        values = form_values(
            {
                "scaler": "standard",
                "calibration": "none",
                "cv_folds": 5,
                "random_state": 42,
                "test_size": 0.2,
                "task": "classification",
                # back from "Upload a CSV" without JavaScript (pages/data.py): the uploaded file
                "training_csv": (request.args.get("training_csv") or "").strip() or None,
            }
        )
        return _render_form("create", values, extras=extras, duplicate_of=duplicate_of)[0]
    fields, _blank, read_errors = parse_form(request.form)
    document = {**extras, **fields}
    try:
        check(document, read_errors)
        doc = store.create(document, from_user=True)
    except ValidationError as exc:
        return _render_form(
            "create", dict(request.form), error=exc, extras=extras, duplicate_of=duplicate_of, status=422
        )
    except ConflictError as exc:
        error = ValidationError(exc.message, field=exc.field or "name")
        return _render_form(
            "create", dict(request.form), error=error, extras=extras, duplicate_of=duplicate_of, status=409
        )
    flash(f"Config {doc['name']} created.", "success")
    return redirect(url_for(".detail", ident=doc["name"]))


@bp.get("/<ident>")
def detail(ident: str) -> Any:
    """One config: its fields, the user's extra fields, and what training wrote."""
    doc = config_store().get(ident)
    training = {k: doc[k] for k in TRAINING_FIELDS if k in doc and k != "status"}
    return render_template(
        "configs/detail.html",
        config=doc,
        extras=extra_fields(doc),
        training=training,
        **training_context(get_db(), doc),
    )


@bp.post("/<ident>/train")
def train(ident: str) -> Any:
    """The Train Model button: queue a training job (or show the one already running) and go back."""
    job, created = submit_training(get_db(), ident, runner=job_runner(), requested_by=requested_by())
    name = job["params"].get("config", ident)
    if created:
        flash(f"Training of {name} started.", "success")
    else:
        flash(f"{name} is already being trained (job {job['_id']}); showing that job.", "info")
    return redirect(url_for(".detail", ident=name, _anchor="training"))


@bp.route("/<ident>/edit", methods=["GET", "POST"])
def edit(ident: str) -> Any:
    """Edit the form fields; the user's extra fields and training's fields stay as they are.

    The form carries the revision it was opened at, so a concurrent change is
    reported instead of silently overwritten.
    """
    store = config_store()
    current = store.get(ident)
    extras = extra_fields(current)
    if request.method == "GET":
        values = form_values(current)
        if (request.args.get("training_csv") or "").strip():  # back from "Upload a CSV" (pages/data.py)
            values["training_csv"] = request.args["training_csv"].strip()
        return _render_form("edit", values, config=current, extras=extras)[0]
    values = dict(request.form)
    if str(current.get("rev")) != request.form.get("rev", ""):
        flash(
            "Someone changed this config after you opened it. Review the current values below and save again.",
            "error",
        )
        return _render_form("edit", form_values(current), config=current, extras=extras, status=409)
    fields, blank, read_errors = parse_form(request.form)
    merged = {k: v for k, v in {**current, **fields}.items() if k not in blank}
    try:
        check(merged, read_errors)
        doc = store.update(current["_id"], fields, unset=[k for k in blank if k in current])
    except ValidationError as exc:
        return _render_form("edit", values, config=current, error=exc, extras=extras, status=422)
    except ConflictError as exc:
        error = ValidationError(exc.message, field=exc.field or "name")
        return _render_form("edit", values, config=current, error=error, extras=extras, status=409)
    flash(f"Config {doc['name']} saved.", "success")
    return redirect(url_for(".detail", ident=doc["name"]))


@bp.get("/<ident>/duplicate")
def duplicate(ident: str) -> Any:
    """The create form filled from an existing config, under a new name."""
    source = config_store().get(ident)
    values = form_values(source)
    values["name"] = f"{source['name']}_copy"[:100]
    return _render_form("create", values, extras=extra_fields(source), duplicate_of=source["name"])[0]


@bp.route("/<ident>/delete", methods=["GET", "POST"])
def delete(ident: str) -> Any:
    """GET asks for confirmation; POST (with ``confirm``) deletes."""
    store = config_store()
    doc = store.get(ident)
    if request.method == "GET":
        return render_template("configs/delete.html", config=doc)
    if request.form.get("confirm") != doc["name"]:
        flash("The deletion was not confirmed.", "error")
        return render_template("configs/delete.html", config=doc, confirm_error=True), 422
    store.delete(doc["_id"])
    flash(f"Config {doc['name']} deleted.", "success")
    return redirect(url_for(".index"))
