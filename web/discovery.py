"""Mount every module of a package that defines ``bp`` (a Blueprint) under a parent blueprint.

Adding a page or an API area is one new module: ``web/pages/jobs.py`` or
``web/api/jobs.py`` with ``bp = Blueprint("jobs", __name__, url_prefix="/jobs")``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from flask import Blueprint


def child_modules(package: ModuleType) -> list[ModuleType]:
    """The package's modules that define ``bp``, in name order."""
    out = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if isinstance(getattr(module, "bp", None), Blueprint):
            out.append(module)
    return out


def mount_children(parent: Blueprint, package: ModuleType) -> list[ModuleType]:
    """Register each child module's ``bp`` on ``parent``; returns the modules."""
    modules = child_modules(package)
    for module in modules:
        parent.register_blueprint(module.bp)
    return modules
