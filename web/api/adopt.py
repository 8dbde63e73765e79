"""``POST /api/configs/<name or id>/adopt``: adopt a reference-system document's files without retraining.

Body ``{"trust": true}`` (the admin's explicit trust: loading a pickle runs code from it). ``201`` with the
new run's summary. Without ``trust`` a 422 ``trust_required`` (nothing read); missing files a 422
``artifact_error`` with reason ``file_missing`` naming them; a document that is not legacy a 409.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from models.errors import ValidationError
from models.training.adopt import adopt_legacy
from models.training.service import run_summary
from web.api.body import json_object
from web.services import get_db, refuse_trust_over_http, requested_by

bp = Blueprint("config_adopt", __name__, url_prefix="/configs")


@bp.post("/<ident>/adopt")
def adopt(ident: str) -> Any:
    body = json_object()
    unknown = sorted(set(body) - {"trust"})
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}; allowed: trust", field=unknown[0])
    if body.get("trust") is True:
        refuse_trust_over_http("adoption")
    run = adopt_legacy(get_db(), ident, trust=body.get("trust") is True, requested_by=requested_by())
    response = jsonify({**run_summary(run), "adopted": True})
    response.status_code = 201
    return response
