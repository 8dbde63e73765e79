"""The Suggest ensemble form: pick a compatible group of trained models, a metric, a method and a size;
the selection runs as a job keyed like an ensemble creation, so the ensemble's page follows it and then
shows the chosen models, their weights and how the score grew step by step."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from models.ensembles.selection import DEFAULT_SIZE, METHODS, SELECTION_METRICS
from models.ensembles.service import candidates
from models.ensembles.suggest import SUGGEST_FIELDS, submit_suggestion
from models.errors import ConflictError, NotFoundError, ValidationError
from web.pages.config_form import errors_by_field
from web.services import get_db, job_runner, requested_by

bp = Blueprint("ensemble_suggest", __name__, url_prefix="/ensembles")


def _groups() -> list[dict[str, Any]]:
    """Compatible groups with at least two trained models: ``{"first", "label", "names", "task"}``."""
    found = candidates(get_db())
    groups: dict[str, dict[str, Any]] = {}
    for cand in found["candidates"]:
        if cand.selectable and cand.group:
            g = groups.setdefault(
                cand.group,
                {
                    "first": cand.name,
                    "label": found["groups"][cand.group],
                    "names": [],
                    "task": cand.config.get("task"),
                },
            )
            g["names"].append(cand.name)
    return list(groups.values())


def _render(
    values: dict[str, Any],
    errors: dict[str, list[str]] | None = None,
    general: list[str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "ensembles/suggest.html",
        values=values,
        errors=errors or {},
        general_errors=general or [],
        groups=_groups(),
        methods=METHODS,
        metrics=SELECTION_METRICS,
    ), status


@bp.route("/suggest", methods=["GET", "POST"])
def form() -> Any:
    """GET: the form. POST: check, queue the selection job, go to the ensemble's page."""
    if request.method == "GET":
        return _render({"method": "greedy", "size": str(DEFAULT_SIZE), "group": request.args.get("group", "")})[0]
    form = request.form
    values = {
        "name": form.get("name", "").strip(),
        "group": form.get("group", ""),
        "metric": form.get("metric", ""),
        "method": form.get("method", "greedy"),
        "size": form.get("size", "").strip(),
        "description": form.get("description", "").strip(),
        "new_version": form.get("new_version") == "on",
    }
    body: dict[str, Any] = {
        "name": values["name"],
        "method": values["method"],
        "description": values["description"],
        "all_compatible": True,
        "new_version": values["new_version"],
        "from": [values["group"]] if values["group"] else [],
    }
    if values["metric"]:
        body["metric"] = values["metric"]
    try:
        if values["size"]:
            try:
                body["size"] = int(values["size"])
            except ValueError:
                raise ValidationError(
                    f"size must be a whole number; got {values['size']!r}", field="size"
                ) from None
        job, created = submit_suggestion(get_db(), body, runner=job_runner(), requested_by=requested_by())
    except ValidationError as exc:
        flash("No ensemble was suggested: fix the problems marked below.", "error")
        errors, general = errors_by_field(exc, (*SUGGEST_FIELDS, "group"))
        if "from" in errors:
            errors.setdefault("group", []).extend(errors.pop("from"))
        return _render(values, errors, general, 422)
    except (NotFoundError, ConflictError) as exc:
        flash(exc.message, "error")
        field = exc.field if exc.field in ("name",) else "group"
        return _render(values, {field: [exc.message]}, [], exc.http_status)
    flash(
        f"Choosing ensemble {values['name']}…"
        if created
        else f"Ensemble {values['name']} is already being built; showing that job.",
        "success" if created else "info",
    )
    return redirect(url_for("pages.ensembles.detail", name=job["params"].get("name", values["name"])))
