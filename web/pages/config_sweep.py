"""A config's Sweep form: one config per combination of hyperparameter values, optionally trained as jobs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for

from models.errors import ConflictError, ValidationError
from models.training.sweep import create_sweep, parse_grid, submit_sweep_training, sweep_tag
from web.services import config_store, get_db, job_runner, requested_by

bp = Blueprint("config_sweep", __name__, url_prefix="/configs")


@bp.post("/<ident>/sweep")
def sweep(ident: str) -> Any:
    """Create the sweep's configs (all or none), queue their training when asked; then list them."""
    base = config_store().get(ident)  # 404 for an unknown config
    lines = [line for line in request.form.get("grid", "").splitlines() if line.strip()]
    try:
        created = create_sweep(get_db(), base["_id"], parse_grid(lines))
    except (ValidationError, ConflictError) as exc:
        flash(f"No sweep was created: {exc.message}", "error")
        return redirect(url_for("pages.configs.detail", ident=base["name"], _anchor="sweep"))
    message = f"Created {len(created)} configs from {base['name']}"
    if request.form.get("train") == "on":
        submit_sweep_training(get_db(), created, runner=job_runner(), requested_by=requested_by())
        message += "; their training jobs are queued"
    flash(message + ".", "success")
    return redirect(url_for("pages.configs.index", tag=sweep_tag(base["name"])))
