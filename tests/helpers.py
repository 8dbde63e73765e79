"""Small builders shared by tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.demo import FEATURES

FEATS = FEATURES[:8]


def cls_config(name: str, csv: Path, model_type: str = "logistic_regression", **extra: Any) -> dict[str, Any]:
    doc = {
        "name": name,
        "task": "classification",
        "model_type": model_type,
        "features": FEATS,
        "target": "home_win",
        "training_csv": str(csv),
        "cv_folds": 3,
        "random_state": 7,
    }
    doc.update(extra)
    return doc


def reg_config(name: str, csv: Path, model_type: str = "ridge", **extra: Any) -> dict[str, Any]:
    doc = {
        "name": name,
        "task": "regression",
        "model_type": model_type,
        "features": FEATS,
        "target": "point_diff",
        "training_csv": str(csv),
        "cv_folds": 3,
        "random_state": 7,
    }
    doc.update(extra)
    return doc


def spy_unpickling(monkeypatch: Any) -> list[bytes]:
    """Record the bytes of every unpickling the loader does (``models.artifacts.verified.load_stream``):
    the spy reads the verified stream to its end (so a failing block still fails) and unpickles that."""
    import io

    import models.artifacts.verified as verified

    calls: list[bytes] = []
    real = verified.load_stream

    def spy(source: Any, reopen: Any) -> Any:
        data = source.read()
        calls.append(data)
        return real(io.BytesIO(data), reopen)

    monkeypatch.setattr(verified, "load_stream", spy)
    return calls


def create_then_change_csv(store: Any, doc: dict[str, Any], content: str | bytes | None = None) -> dict[str, Any]:
    """Save ``doc`` while its training CSV has the right columns, then replace the file by ``content``
    (None: delete it): the data changed after the config was saved, which only training can notice."""
    path = Path(doc["training_csv"])
    path.write_text(",".join([*doc["features"], doc["target"]]) + "\n")
    created = store.create(doc)
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return created
