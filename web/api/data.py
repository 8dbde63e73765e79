"""``/api/data``: training files in the data roots, for the config form's upload and feature picker.

- ``POST /api/data/upload`` (multipart: ``file``, optional ``root`` naming a data root, ``replace``):
  stores the file as ``<root>/uploads/<name>`` (:func:`models.store.uploads.save_upload`: atomic, at most
  ``MAX_TRAINING_CSV_BYTES``, checked readable) -> ``201 {"path", "size", "columns": [{"name", "type"}],
  "rows", "rows_exact"}``; ``path`` is what a config's ``training_csv`` takes (``@data/uploads/x.csv``).
- ``GET /api/data/columns?path=...``: the columns of a file inside the data roots with the type each
  would get as a feature, and its row count (estimated for a large CSV); a path outside the roots gets
  the same refusal as a config's ``training_csv``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for

from models.errors import NotFoundError, ValidationError
from models.store.columns import describe_columns
from models.store.data_roots import check_data_root
from models.store.datarefs import to_stored
from models.store.uploads import save_upload
from models.tabular import file_label
from web.errors import BadRequestError
from web.limits import upload_route
from web.services import get_settings

bp = Blueprint("data", __name__, url_prefix="/data")

TRUE = ("1", "true", "yes", "on")


def file_summary(path: Any, shown: str) -> dict[str, Any]:
    """``{"path", "size", "columns", "rows", "rows_exact"}`` of a file in a data root; a file that cannot
    be read is a 422 naming it and why."""
    try:
        info = describe_columns(path)
        size = path.stat().st_size
    except ValueError as exc:
        raise ValidationError(f"{file_label(shown)} {shown!r} {exc}", field="path") from None
    except OSError as exc:
        raise ValidationError(
            f"{file_label(shown)} {shown!r} cannot be read: {exc.strerror or exc}", field="path"
        ) from None
    return {"path": shown, "size": size, **info}


@bp.post("/upload")
@upload_route
def upload() -> Any:
    upload = request.files.get("file")
    if upload is None:
        raise BadRequestError("send the file as the multipart/form-data field 'file'", field="file")
    settings = get_settings()
    replace = (request.form.get("replace") or "").strip().lower() in TRUE
    path = save_upload(settings, upload.filename, upload.stream, request.form.get("root") or None, replace=replace)
    stored = to_stored(str(path), settings)
    response = jsonify(file_summary(path, stored))
    response.status_code = 201
    response.headers["Location"] = url_for(".columns", path=stored)
    return response


@bp.get("/columns")
def columns() -> Any:
    raw = (request.args.get("path") or "").strip()
    if not raw:
        raise ValidationError("path is required: a training file inside the data roots", field="path")
    settings = get_settings()
    try:
        real = check_data_root(raw, settings)
    except ValidationError as exc:
        raise ValidationError(exc.message, field="path") from None
    shown = to_stored(str(real), settings) if not raw.startswith("@") else raw
    if not real.is_file():
        raise NotFoundError(
            f"{file_label(raw)} {raw!r} does not exist (looked at {shown} in the data roots)"
            if not real.exists()
            else f"{file_label(raw)} {raw!r} is not a file",
            field="path",
        )
    return jsonify(file_summary(real, shown))
