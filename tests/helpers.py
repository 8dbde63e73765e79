"""Builders, waits and runners shared by tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.demo import FEATURES
from models.settings import Settings
from tests.fault_driver_util import ROOT, driver_env

# Credentials of the ``app``/``api``/``page`` fixtures (conftest.py).
TOKEN = "web-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "web-test-page-password"

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


def poll(fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def wait_job(api: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET /api/jobs/<id>`` like a client would, until the job ends; ``seen`` lists the states seen."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        response = api("GET", f"/api/jobs/{job_id}")
        assert response.status_code == 200
        job = response.get_json()
        seen.append(job["status"])
        if job["status"] in ("succeeded", "failed"):
            job["seen"] = seen
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {seen[-3:]}")


def run_cli(settings: Settings, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """``python -m cli ARGS`` as a real subprocess on the test's database and folders."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=driver_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
