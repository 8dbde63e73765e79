"""Which base models an ensemble creation will train first, why (in words), and about how long.

Judged from the config documents alone (nothing is read or unpickled): a config that was never trained,
one whose artifacts came from the earlier system without checksums (never adopted), or one trained before
out-of-fold predictions were kept. Files that fail verification are found only when they are read.
"""

from __future__ import annotations

from typing import Any

from models.artifacts.loading import PATH_FIELDS
from models.store.db import Database
from models.training.estimate import estimate_training, format_seconds

NOT_TRAINED = "not trained yet"
LEGACY = "legacy artifacts, not adopted"
NO_OOF = "trained before out-of-fold predictions were kept"


def retrain_reason(config: dict[str, Any]) -> str | None:
    """Why creating an ensemble would train ``config`` first, for a person; None when it should load."""
    if not config.get("run_id") or not all(config.get(f) for f in PATH_FIELDS.values()):
        return NOT_TRAINED
    checksums = config.get("checksums") or {}
    if not all(checksums.get(kind) for kind in PATH_FIELDS):
        return LEGACY
    if not ((config.get("artifacts") or {}).get("oof") or {}).get("path"):
        return NO_OOF
    return None


def retrain_plan(database: Database, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"name", "reason", "estimate": {"seconds", "basis", "rows"}, "estimate_text", "text"}]``, one for
    each config that will be trained first."""
    plan = []
    for config in configs:
        reason = retrain_reason(config)
        if reason is None:
            continue
        estimate = estimate_training(database, config)
        plan.append(
            {
                "name": config["name"],
                "reason": reason,
                "estimate": estimate.to_dict(),
                "estimate_text": estimate.text(),
                "text": f"{config['name']} ({reason}): {estimate.text()}",
            }
        )
    return plan


def plan_summary(plan: list[dict[str, Any]]) -> str:
    """One line for the CLI and the web: what will be trained first and the total estimate."""
    if not plan:
        return "no base model needs training: all load from their verified artifacts"
    known = [p["estimate"]["seconds"] for p in plan if p["estimate"]["seconds"] is not None]
    total = f"; about {format_seconds(sum(known))} in all" if known and len(known) == len(plan) else ""
    return f"will train first: {'; '.join(p['text'] for p in plan)}{total}"
