"""Small builders shared by tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from models.demo import FEATURES

FEATS = FEATURES[:8]


def cls_config(name: str, csv: Path, model_type: str = "logistic_regression", **extra: Any) -> dict[str, Any]:
    doc = {"name": name, "task": "classification", "model_type": model_type, "features": FEATS,
           "target": "home_win", "training_csv": str(csv), "cv_folds": 3, "random_state": 7}
    doc.update(extra)
    return doc


def reg_config(name: str, csv: Path, model_type: str = "ridge", **extra: Any) -> dict[str, Any]:
    doc = {"name": name, "task": "regression", "model_type": model_type, "features": FEATS,
           "target": "point_diff", "training_csv": str(csv), "cv_folds": 3, "random_state": 7}
    doc.update(extra)
    return doc
