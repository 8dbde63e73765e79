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

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import ModelCache, get_model_cache
from models.artifacts.legacy import LEGACY_REASON, SEED_PATH_FIELDS, is_legacy, legacy_message
from models.artifacts.predictor import TrainedModel
from models.artifacts.routing import get_store
from models.artifacts.verified import fetch_pickle, parse_json_bytes, read_verified
from models.errors import ArtifactError
from models.settings import Settings

log = logging.getLogger(__name__)

PATH_FIELDS = {"model": "model_artifact_path", "scaler": "scaler_artifact_path", "features": "features_path"}


@dataclass
class LoadResult:
    model: TrainedModel
    source: str  # "cache" or "artifacts"
    seconds: float


def cache_key(run_id: str, checksums: dict[str, str]) -> tuple[str, str]:
    return run_id, checksums.get("model", "")


def artifact_refs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``kind -> {"path", "sha256", ...}`` from a config or run document.

    A config names its files in the seed system's fields; their checksums
    come from ``checksums`` (and per-chunk checksums and the signature from
    ``artifacts`` when it describes the same file). ArtifactError if a field is missing.
    """
    arts = doc.get("artifacts") or {}
    if is_legacy(doc):
        raise ArtifactError(legacy_message(doc), reason=LEGACY_REASON)
    if "model_artifact_path" not in doc and arts:  # a run document
        missing = [k for k in PATH_FIELDS if k not in arts]
        if missing:
            raise ArtifactError(
                f"run {doc.get('run_id')!r} records no {', '.join(missing)} artifact", reason="field_missing"
            )
        return {k: dict(arts[k]) for k in PATH_FIELDS}
    missing = [f for f in ("run_id", *PATH_FIELDS.values()) if not doc.get(f)]
    if missing:
        raise ArtifactError(
            f"config {doc.get('name')!r} has no {', '.join(missing)}: it has never been "
            "trained (or its artifact fields were removed)",
            reason="field_missing",
        )
    checksums = doc.get("checksums") or {}
    refs = {}
    for kind, field in PATH_FIELDS.items():
        entry = arts.get(kind) or {}
        ref = {"path": doc[field], "sha256": checksums.get(kind)}
        if entry.get("path") == doc[field]:
            # a checksum that differs from the signed entry's keeps the signature, so it fails as
            # signature_invalid (the checksums were changed) rather than passing for an unsigned file
            ref.update(
                {
                    k: entry[k]
                    for k in ("size", "chunk_size", "chunk_sha256", "chunk_blake3", "format", "signature")
                    if k in entry
                }
            )
        refs[kind] = ref
    return refs


def load_model(
    settings: Settings,
    doc: dict[str, Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    use_cache: bool = True,
) -> LoadResult:
    """The trained model a config (or run) document points at: cache first, then verified files."""
    t0 = time.perf_counter()
    if is_legacy(doc):  # a missing file is said first (file_missing); present ones are "not adopted"
        store = store or get_store(settings)
        for field in SEED_PATH_FIELDS:
            path = doc.get(field)
            if path and not store.stat(path)["exists"]:
                raise ArtifactError(
                    f"artifact file {path} of config {doc.get('name')!r} is missing",
                    reason="file_missing",
                    path=path,
                )
    refs = artifact_refs(doc)
    run_id = doc["run_id"]
    key = cache_key(run_id, {k: ref.get("sha256") or "" for k, ref in refs.items()})
    cache = cache or get_model_cache(settings)
    if use_cache:
        hit = cache.get(key)
        if hit is not None:
            return LoadResult(hit, "cache", time.perf_counter() - t0)
    store = store or get_store(settings)
    # Every file passes its up-front checks before anything is unpickled.
    features_path = refs["features"]["path"]
    features_bytes = read_verified(store, refs["features"])
    pending = {kind: fetch_pickle(store, refs[kind]) for kind in ("scaler", "model")}
    features = parse_json_bytes(features_bytes, features_path)
    feature_types = None
    if isinstance(features, dict):  # a run with other than numeric columns: the types come with the list
        feature_types = features.get("feature_types") if isinstance(features.get("feature_types"), dict) else None
        features = features.get("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ArtifactError(
            f"features file {features_path} does not hold a list of column names",
            reason="unpickle_error",
            path=features_path,
        )
    scaler, notes_s = pending["scaler"].load()
    model, notes_m = pending["model"].load()
    notes = notes_s + notes_m
    recorded = (doc.get("versions") or {}).get("sklearn")
    if recorded and recorded != sklearn.__version__:
        notes.append(
            f"trained with scikit-learn {recorded}, loaded with {sklearn.__version__}; predictions may differ"
        )
    task = doc.get("task") or (doc.get("config") or {}).get("task", "classification")
    size = len(features_bytes) + sum(p.size for p in pending.values())
    trained = TrainedModel(
        run_id=run_id,
        task=task,
        features=features,
        scaler=scaler,
        model=model,
        warnings=notes,
        size_bytes=size,
        feature_types=feature_types,
    )
    if use_cache:
        cache.put(key, trained, size)
    return LoadResult(trained, "artifacts", time.perf_counter() - t0)
