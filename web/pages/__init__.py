"""HTML pages. Every module here with a ``bp`` Blueprint is mounted under the ``pages`` blueprint,
so endpoints are ``pages.<module bp name>.<view>``; ``NAV = (label, endpoint)`` adds a menu entry."""

from __future__ import annotations

import sys
from typing import Any

from flask import Blueprint, redirect, url_for

from web.discovery import mount_children


def create_blueprint() -> Blueprint:
    """A fresh ``pages`` blueprint (one per app) with every page module mounted."""
    parent = Blueprint("pages", __name__)
    modules = mount_children(parent, sys.modules[__name__])
    nav = [module.NAV for module in modules if getattr(module, "NAV", None)]

    @parent.route("/")
    def home() -> Any:
        return redirect(url_for("pages.configs.index"))

    @parent.app_context_processor
    def navigation() -> dict[str, Any]:
        return {"nav_items": nav}

    return parent
