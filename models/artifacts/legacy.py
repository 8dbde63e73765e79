"""Documents from the reference system: artifact paths, but no checksums (nothing to verify them against).

Such a config cannot take the fast path (its files cannot be verified) until an admin adopts it
(``python -m cli artifacts adopt NAME --trust``: :mod:`models.training.adopt`), which records the
checksums and computes the out-of-fold predictions. Until then every refusal says
:data:`LEGACY_REASON`.
"""

from __future__ import annotations

from typing import Any

LEGACY_REASON = "legacy artifacts, not adopted"
SEED_PATH_FIELDS = ("model_artifact_path", "scaler_artifact_path", "features_path")


def is_legacy(config: dict[str, Any]) -> bool:
    """A config whose files the reference system wrote: paths and a run id, but no checksums recorded."""
    return bool(
        config.get("run_id")
        and any(config.get(f) for f in SEED_PATH_FIELDS)
        and not config.get("checksums")
        and not (config.get("artifacts") or {})
    )


def legacy_message(config: dict[str, Any]) -> str:
    name = config.get("name")
    return (
        f"config {name!r} has {LEGACY_REASON}: the reference system recorded no checksums for its files, so "
        f"they cannot be verified; an admin can adopt them (python -m cli artifacts adopt {name} --trust) "
        "or retrain it"
    )
