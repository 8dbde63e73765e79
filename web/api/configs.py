"""``/api/configs``: list, create, read, replace (PUT), merge-patch (PATCH), delete.

A config is addressed by its name or its id. Bodies echo what GET returns, so
a client may GET, change and PUT back: ``id``, timestamps and unchanged
training fields are ignored; ``rev``, when sent, must match (else 409).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for

from models.errors import ConflictError, ValidationError
from models.jsonable import to_json
from models.store.schema import SERVER_FIELDS, TRAINING_FIELDS
from web.api.body import int_arg, json_object
from web.services import config_store

bp = Blueprint("configs", __name__, url_prefix="/configs")

ECHOED = ("id", *SERVER_FIELDS)


@bp.get("")
def list_configs() -> Any:
    """Filters: ``task``, ``model_type``, ``status``, ``tag``, ``q`` (text in the name);
    ``sort`` (a field), ``order`` (``asc``|``desc``), ``limit``, ``skip``."""
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ValidationError("order must be 'asc' or 'desc'", field="order")
    docs = config_store().list(
        task=request.args.get("task") or None,
        model_type=request.args.get("model_type") or None,
        status=request.args.get("status") or None,
        tag=request.args.get("tag") or None,
        q=request.args.get("q") or None,
        sort=request.args.get("sort", "name"),
        descending=order == "desc",
        limit=int_arg("limit", 0),
        skip=int_arg("skip", 0, maximum=10**9),
    )
    return jsonify(configs=[to_json(d) for d in docs], count=len(docs))


@bp.post("")
def create_config() -> Any:
    body = json_object()
    for key in ECHOED:  # server fields echoed from a GET are dropped; training's fields are refused (422)
        body.pop(key, None)
    doc = config_store().create(body, from_user=True)
    response = jsonify(to_json(doc))
    response.status_code = 201
    response.headers["Location"] = url_for(".get_config", ident=doc["name"])
    return response


@bp.get("/<ident>")
def get_config(ident: str) -> Any:
    return jsonify(to_json(config_store().get(ident)))


def _user_changes(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The body without echoed server fields and unchanged training fields; checks ``rev``."""
    if "rev" in body and body["rev"] != current.get("rev"):
        raise ConflictError(
            f"config {current['name']!r} is at rev {current.get('rev')}, not {body['rev']!r}; "
            "fetch it again and retry",
            field="rev",
        )
    current_json = to_json(current) or {}
    return {
        k: v
        for k, v in body.items()
        if k not in ECHOED and not (k in TRAINING_FIELDS and current_json.get(k) == v)
    }


@bp.put("/<ident>")
def replace_config(ident: str) -> Any:
    """Replace the user's fields with the body (fields left out are removed; the name stays unless given)."""
    body = json_object()
    store = config_store()
    current = store.get(ident)
    return jsonify(to_json(store.replace(current["_id"], _user_changes(body, current))))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, ``null`` removes a key."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@bp.patch("/<ident>")
def patch_config(ident: str) -> Any:
    """Change some fields (JSON merge patch: ``null`` removes a field, objects merge)."""
    body = json_object()
    store = config_store()
    current = store.get(ident)
    changes = _user_changes(body, current)
    unset = [k for k, v in changes.items() if v is None]
    to_set = {k: merge_patch(current.get(k), v) for k, v in changes.items() if v is not None}
    return jsonify(to_json(store.update(current["_id"], to_set, unset=unset)))


@bp.delete("/<ident>")
def delete_config(ident: str) -> Any:
    doc = config_store().delete(ident)
    return jsonify(deleted=doc["name"], id=str(doc["_id"]))
