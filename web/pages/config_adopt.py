"""Adopt a legacy config from its page: an explicit trust checkbox, then the adoption (checksums, OOF)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for

from models.artifacts.legacy import LEGACY_REASON, is_legacy
from models.errors import ArtifactError, ConflictError, DataError, ForbiddenError, ValidationError
from models.training.adopt import adopt_legacy
from web.services import config_store, get_db, refuse_trust_over_http, requested_by

bp = Blueprint("config_adopt", __name__, url_prefix="/configs")


@bp.app_context_processor
def legacy_helpers() -> dict[str, Any]:
    return {"is_legacy_config": is_legacy, "legacy_reason": LEGACY_REASON}


@bp.post("/<ident>/adopt")
def adopt(ident: str) -> Any:
    """Adopt the config's legacy files (refused unless the trust box is ticked); back to its page."""
    config = config_store().get(ident)
    try:
        if request.form.get("trust") == "on":
            refuse_trust_over_http("adoption")
        run = adopt_legacy(
            get_db(), config["_id"], trust=request.form.get("trust") == "on", requested_by=requested_by()
        )
    except (ValidationError, ConflictError, ArtifactError, DataError, ForbiddenError) as exc:
        flash(f"Not adopted: {exc.message}", "error")
        return redirect(url_for("pages.configs.detail", ident=config["name"], _anchor="adopt"))
    flash(
        f"Adopted {config['name']} as run {run['run_id']}: checksums recorded, out-of-fold predictions "
        f"computed ({run['cv']['metric']} {run['cv']['mean']:.4f}).",
        "success",
    )
    return redirect(url_for("pages.configs.detail", ident=config["name"]))
