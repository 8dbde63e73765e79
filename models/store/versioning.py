"""Semantic versions of a config name's runs.

A retrain of the same definition bumps the patch; a change of what is
trained (hyperparameters, features, scaler, ...) bumps the minor; a change of
the problem itself (task, target, model type) bumps the major.
"""

from __future__ import annotations

import re
from typing import Any

from models.errors import ValidationError

VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
MAJOR_FIELDS = ("task", "target", "model_type")


def parse_version(text: str) -> tuple[int, int, int]:
    m = VERSION_RE.match(text or "")
    if not m:
        raise ValidationError(f"version {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.2.0)", field="version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def format_version(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def change_kind(previous: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """``"major"``, ``"minor"`` or ``"patch"`` for going from one definition to the next."""
    if previous is None:
        return "major"
    if any(previous.get(k) != current.get(k) for k in MAJOR_FIELDS):
        return "major"
    if any(previous.get(k) != current.get(k) for k in set(previous) | set(current)):
        return "minor"
    return "patch"


def next_version(latest: str | None, kind: str) -> str:
    if latest is None:
        return "1.0.0"
    major, minor, patch = parse_version(latest)
    if kind == "major":
        return format_version((major + 1, 0, 0))
    if kind == "minor":
        return format_version((major, minor + 1, 0))
    return format_version((major, minor, patch + 1))


def highest(versions: list[str]) -> str | None:
    parsed = [parse_version(v) for v in versions if v and VERSION_RE.match(v)]
    return format_version(max(parsed)) if parsed else None
