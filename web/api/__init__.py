"""The JSON API under ``/api``. Every module here with a ``bp`` Blueprint is mounted under it.

Authentication is done by the app-wide guard in ``web/auth.py`` (bearer token,
or a logged-in session plus CSRF header); errors take the shape from
``web/errors.py``. Read request bodies with :func:`web.api.body.json_object`.
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Blueprint, jsonify, url_for

from web.discovery import mount_children


def create_blueprint() -> Blueprint:
    """A fresh ``api`` blueprint (one per app) with every API module mounted."""
    parent = Blueprint("api", __name__, url_prefix="/api")
    modules = mount_children(parent, sys.modules[__name__])

    @parent.get("/")
    def index() -> Any:
        """What the API offers (needs authentication like everything under /api)."""
        return jsonify(areas=sorted(m.bp.name for m in modules), configs=url_for("api.configs.list_configs"))

    return parent
