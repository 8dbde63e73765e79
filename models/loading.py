"""Loading trained models: from the in-process cache, else from verified artifacts.

``load_config_model`` is the fast path the stacking tool and the API use;
every refusal is an :class:`ArtifactError` whose ``reason`` says why (so the
caller can decide to retrain) and whose message names the file.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import sklearn

from .artifacts import ArtifactStore, get_store, parse_json_bytes, read_verified, unpickle_bytes
from .cache import ModelCache, get_model_cache
from .errors import ArtifactError
from .predictor import TrainedModel
from .settings import Settings

log = logging.getLogger(__name__)

PATH_FIELDS = {"model": "model_artifact_path", "scaler": "scaler_artifact_path", "features": "features_path"}


@dataclass
class LoadResult:
    model: TrainedModel
    source: str  # "cache" or "artifacts"
    seconds: float


def cache_key(run_id: str, checksums: dict[str, str]) -> tuple[str, str]:
    return run_id, checksums.get("model", "")


def artifact_refs(config: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """``kind -> (stored path, sha256)`` from a config or run document; ArtifactError if a field is missing."""
    if "artifacts" in config and "model_artifact_path" not in config:  # a run document
        arts = config["artifacts"]
        return {k: (arts[k]["path"], arts[k]["sha256"]) for k in PATH_FIELDS if k in arts}
    missing = [f for f in ("run_id", *PATH_FIELDS.values()) if not config.get(f)]
    if missing:
        raise ArtifactError(f"config {config.get('name')!r} has no {', '.join(missing)}: it has never been "
                            "trained (or its artifact fields were removed)", reason="field_missing")
    checksums = config.get("checksums") or {}
    return {k: (config[f], checksums.get(k)) for k, f in PATH_FIELDS.items()}


def load_model(settings: Settings, doc: dict[str, Any], *, store: ArtifactStore | None = None,
               cache: ModelCache | None = None, use_cache: bool = True) -> LoadResult:
    """The trained model a config (or run) document points at: cache first, then verified files."""
    t0 = time.perf_counter()
    refs = artifact_refs(doc)
    run_id = doc["run_id"]
    key = cache_key(run_id, {k: sha or "" for k, (_, sha) in refs.items()})
    cache = cache or get_model_cache(settings)
    if use_cache:
        hit = cache.get(key)
        if hit is not None:
            return LoadResult(hit, "cache", time.perf_counter() - t0)
    store = store or get_store(settings)
    # Every file is read and verified before anything is unpickled.
    blobs = {kind: read_verified(store, *refs[kind]) for kind in ("features", "scaler", "model")}
    features = parse_json_bytes(blobs["features"], refs["features"][0])
    if isinstance(features, dict):
        features = features.get("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ArtifactError(f"features file {refs['features'][0]} does not hold a list of column names",
                            reason="unpickle_error", path=refs["features"][0])
    scaler, notes_s = unpickle_bytes(blobs["scaler"], refs["scaler"][0])
    model, notes_m = unpickle_bytes(blobs["model"], refs["model"][0])
    notes = notes_s + notes_m
    recorded = (doc.get("versions") or {}).get("sklearn")
    if recorded and recorded != sklearn.__version__:
        notes.append(f"trained with scikit-learn {recorded}, loaded with {sklearn.__version__}; "
                     "predictions may differ")
    task = doc.get("task") or (doc.get("config") or {}).get("task", "classification")
    size = sum(len(b) for b in blobs.values())
    trained = TrainedModel(run_id=run_id, task=task, features=features, scaler=scaler, model=model,
                           warnings=notes, size_bytes=size)
    if use_cache:
        cache.put(key, trained, size)
    return LoadResult(trained, "artifacts", time.perf_counter() - t0)
