"""The config form's "Upload a CSV" without JavaScript: ``POST /data/upload`` stores the file in a data root
(:func:`models.store.uploads.save_upload`) and sends the browser back to the form (``next``) with
``training_csv`` filled in. With JavaScript the form calls ``POST /api/data/upload`` instead and stays open."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, flash, redirect, request, url_for

from models.errors import ConflictError, ValidationError
from models.store.datarefs import to_stored
from models.store.uploads import human_bytes, save_upload
from web.limits import upload_route
from web.redirects import safe_path
from web.services import get_settings

bp = Blueprint("data", __name__, url_prefix="/data")


def with_query(path: str, **values: str) -> str:
    """``path`` with ``values`` set in its query string (others kept)."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in values] + list(values.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@bp.post("/upload")
@upload_route
def upload() -> Any:
    back = safe_path(request.form.get("next"), url_for("pages.configs.create"))
    upload = request.files.get("file")
    settings = get_settings()
    try:
        if upload is None or not upload.filename:
            raise ValidationError("choose a file to upload", field="file")
        path = save_upload(
            settings,
            upload.filename,
            upload.stream,
            request.form.get("root") or None,
            replace=bool(request.form.get("replace")),
        )
    except (ValidationError, ConflictError) as exc:
        flash(f"Not uploaded: {exc.message}", "error")
        return redirect(back)
    stored = to_stored(str(path), settings)
    flash(f"Uploaded {stored} ({human_bytes(path.stat().st_size)}); Training CSV is filled in below.", "success")
    return redirect(with_query(back, training_csv=stored))
