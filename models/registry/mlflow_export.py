"""A model or an ensemble out of the service as an MLflow model directory, written without MLflow.

``export_mlflow(database, ref, out)`` writes what ``mlflow.sklearn.save_model(estimator, out,
serialization_format="pickle")`` writes for the very estimator ``models deploy-export`` builds
(:func:`models.registry.archive.deployable`: a run's Pipeline, or an ensemble's fitted
Stacking/Voting estimator), so ``mlflow.pyfunc.load_model(out)``, ``mlflow.sklearn.load_model(out)`` and
``mlflow models serve -m out`` take it (tested with MLflow 3.17.2 by ``tests/test_export_mlflow.py``):

- ``MLmodel``: the ``python_function`` flavor (``loader_module: mlflow.sklearn``) and the ``sklearn``
  flavor (``pickled_model: model.pkl``, ``serialization_format: pickle``), a signature naming the input
  columns (numeric and categorical columns are ``any``: MLflow refuses an int64 column declared
  ``double``, which the model itself takes; text columns are ``string``), and in ``metadata`` which run
  answered. No ``mlflow_version``: MLflow did not write it.
- ``model.pkl``: the estimator, a plain pickle (MLflow's sklearn flavor reads it with ``pickle.load``).
- ``requirements.txt``, ``python_env.yaml``, ``conda.yaml``: the Python version and the packages the
  pickle needs, pinned at this installation's versions (found by recording every module the pickle
  refers to; a pickle that would need this project's own code is refused).

MLflow is never imported here (it is not a runtime dependency). The directory is built in a temporary
folder beside ``out`` and renamed into place, so ``out`` is either absent or complete; an ``out`` that
exists and is not empty is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from models.errors import ValidationError
from models.registry.archive import deployable
from models.registry.ensemble_export import Deployable
from models.registry.portable import pickled, requirements
from models.store.db import Database
from models.timeutil import iso

log = logging.getLogger(__name__)

MODEL_FILE = "model.pkl"
MLMODEL, REQUIREMENTS, PYTHON_ENV, CONDA_ENV = "MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"
MLFLOW_REQUIREMENT = "mlflow>=3.0,<4"  # the MLmodel fields written here are MLflow 3's
SIGNATURE_TYPES = {"numeric": "any", "categorical": "any", "text": "string"}


def _version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def signature(built: Deployable) -> dict[str, Any]:
    """The MLmodel ``signature``: every input column by name (see the module docstring for the types)
    and, for a classifier with numeric labels, the output tensor."""
    inputs = [
        {"type": SIGNATURE_TYPES.get(kind, "any"), "name": name, "required": True}
        for name, kind in ((f, built.feature_types.get(f, "numeric")) for f in built.meta["features"])
    ]
    classes = built.meta.get("classes")
    dtype: str | None = None  # a regressor's output dtype is its own (XGBoost: float32): not declared
    if built.meta["task"] == "classification" and classes:
        labels = np.asarray(classes).dtype
        dtype = labels.name if labels.kind in "iufb" else None
    outputs = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1]}}]) if dtype else None
    return {"inputs": json.dumps(inputs), "outputs": outputs, "params": None}


def mlmodel(built: Deployable, size: int, python_version: str) -> dict[str, Any]:
    """The ``MLmodel`` document, with the fields ``mlflow.sklearn.save_model`` writes (but ``mlflow_version``)."""
    import sklearn

    return {
        "flavors": {
            "python_function": {
                "env": {"conda": CONDA_ENV, "virtualenv": PYTHON_ENV},
                "loader_module": "mlflow.sklearn",
                "model_path": MODEL_FILE,
                "predict_fn": "predict",
                "python_version": python_version,
            },
            "sklearn": {
                "code": None,
                "pickled_model": MODEL_FILE,
                "serialization_format": "pickle",
                "sklearn_version": sklearn.__version__,
                "skops_trusted_types": None,
            },
        },
        "is_signature_from_type_hint": False,
        "metadata": {
            "exported_by": "ensemble-model-cache models export-mlflow",
            **built.served,
            **{k: v for k, v in built.meta.items() if k != "requirements"},
        },
        "model_id": None,
        "model_size_bytes": size,
        "model_uuid": uuid.uuid4().hex,
        "prompts": None,
        "signature": signature(built),
        "type_hint_from_example": False,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }


def environment_files(pins: list[str], python_version: str) -> dict[str, bytes]:
    """``requirements.txt``, ``python_env.yaml`` and ``conda.yaml`` as MLflow writes them."""
    lines = [MLFLOW_REQUIREMENT, *pins]
    pip = _version_of("pip")
    build = [f"pip=={pip}" if pip else "pip"]
    setuptools = _version_of("setuptools")
    build += [f"setuptools=={setuptools}" if setuptools else "setuptools", "wheel"]
    python_env = {"python": python_version, "build_dependencies": build, "dependencies": ["-r requirements.txt"]}
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version}", f"pip<={pip}" if pip else "pip", {"pip": lines}],
        "name": "mlflow-env",
    }

    def dump(doc: dict[str, Any]) -> bytes:
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()

    return {REQUIREMENTS: ("\n".join(lines) + "\n").encode(), PYTHON_ENV: dump(python_env), CONDA_ENV: dump(conda)}


def _write(path: Path, payload: bytes) -> None:
    """One file of the staging folder, flushed to disk (the folder's rename is what makes it visible)."""
    with open(path, "xb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o644)


def _fsync(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_out(out: Any) -> Path:
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise ValidationError("out must be a folder path", field="out")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValidationError(f"out {str(out)!r} is a file, not a folder; nothing was written", field="out")
    if out.is_dir() and any(out.iterdir()):
        raise ValidationError(
            f"out {str(out)!r} exists and is not empty; give a new or empty folder (nothing was written)",
            field="out",
        )
    return out


def export_mlflow(database: Database, ref: str, out: str | Path) -> dict[str, Any]:
    """Write ``ref`` (a model reference or an ensemble's name or run id, resolved as ``models
    deploy-export`` resolves it) to the MLflow model directory ``out`` (new, or an empty folder).

    Returns the export's metadata (run id, version and how it was chosen, task, features, classes...)
    plus ``{"path", "files": {name: {sha256, size}}, "requirements", "kind"}``. ValidationError naming
    ``out`` when it exists and is not empty; nothing is written on any failure.
    """
    out = _check_out(out)
    built = deployable(database, ref)
    data, modules = pickled(built.estimator)
    pins = requirements(modules)
    python_version = platform.python_version()
    files = {MODEL_FILE: data, **environment_files(pins, python_version)}
    size = sum(len(b) for b in files.values())
    files = {MLMODEL: yaml.safe_dump(mlmodel(built, size, python_version), sort_keys=False).encode(), **files}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}.", dir=out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a model folder is read by whoever serves it
        for name, payload in files.items():
            _write(staging / name, payload)
        _fsync(staging)
        try:
            os.rename(staging, out)  # replaces an empty folder; refused if one appeared with files in it
        except OSError as exc:
            if out.is_dir() and any(out.iterdir()):
                raise ValidationError(
                    f"out {str(out)!r} was filled by someone else while exporting; nothing was written",
                    field="out",
                ) from None
            raise ValidationError(f"out {str(out)!r} cannot be written: {exc.strerror}", field="out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync(out.parent)
    kind = type(built.estimator).__name__
    log.info(
        "MLflow export of %s %s (run %s) to %s",
        "ensemble" if built.is_ensemble else "run",
        ref,
        built.served["run_id"],
        out,
    )
    return {
        **built.meta,
        **built.served,
        "kind": kind,
        "path": str(out),
        "files": {name: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for name, b in files.items()},
        "requirements": [MLFLOW_REQUIREMENT, *pins],
        "exported_at": iso(),
        "usage": f"import mlflow, pandas as pd; model = mlflow.pyfunc.load_model({str(out)!r}); "
        "model.predict(pd.DataFrame(rows))  # rows need the listed feature columns",
    }
