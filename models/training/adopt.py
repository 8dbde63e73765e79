"""Adopting a legacy document: the reference system's files become a verified run, without retraining.

A document from the reference system names its model, scaler and features files but records no
checksums, so nothing can vouch for the files except the admin. Adoption, in order:

1. checks the document is legacy (:func:`models.artifacts.legacy.is_legacy`) and that every file it
   names is a local file (a ``gridfs:`` path is refused, ``path_refused``, naming it: GridFS bytes come
   from whoever can write the database) that exists inside ``ARTIFACT_DIR`` (``file_missing`` names each
   missing one); the files are read from the local folder only; nothing is read before trust;
2. refuses without the admin's explicit trust (:class:`TrustRequiredError`): a pickle runs code when
   it loads, so no byte is unpickled before that step;
3. reads each file once, records its SHA-256 (whole file and per block) from those very bytes, signs
   them (:func:`sign_adopted_files`), and only then unpickles the scaler and model;
4. computes the out-of-fold predictions by cross-validating a clone of the model's estimator (and
   scaler) on the training CSV with the standard fold spec, and scores a clone fitted on the training
   rows on the held-out rows; the legacy fitted model itself is kept as the run's model;
5. writes the OOF archive and metrics atomically, inserts the run, then updates the config (the
   commit point). A failure before the config update leaves the document as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from models.artifacts import blocks
from models.artifacts.base import ArtifactInfo, ArtifactStore, artifact_name, json_writer, npz_writer
from models.artifacts.blocks import CHUNK_SIZE
from models.artifacts.gridfs import is_gridfs_path
from models.artifacts.legacy import SEED_PATH_FIELDS, is_legacy
from models.artifacts.routing import get_store
from models.artifacts.verified import unpickle_bytes
from models.errors import ArtifactError, ConflictError, ValidationError
from models.progress import Progress, no_progress, scaled
from models.splits import fold_spec
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.runs import RunStore, config_fields_for_run
from models.store.schema import definition, validate_config
from models.timeutil import now
from models.training.data import load_training_data
from models.training.train import environment_versions, fit_config, oof_arrays, split_info

log = logging.getLogger(__name__)

KINDS = {"model": "model_artifact_path", "scaler": "scaler_artifact_path", "features": "features_path"}


class TrustRequiredError(ValidationError):
    """Adoption needs the admin's explicit trust before any legacy file is unpickled."""

    code = "trust_required"


def describe_bytes(path: str, data: bytes, chunk_size: int = CHUNK_SIZE) -> ArtifactInfo:
    """The checksums of a file's bytes, as a written artifact would record them."""
    chunks = tuple(blocks.digests_of(data, chunk_size))
    return ArtifactInfo(
        path, hashlib.sha256(data).hexdigest(), len(data), chunk_size, block_digests=chunks or None
    )


def sign_adopted_files(store: ArtifactStore, infos: dict[str, ArtifactInfo]) -> dict[str, Any]:
    """Sign the adopted files' infos (in place) with this installation's key: the admin's trust step is what
    makes them trusted from here on, like files this installation wrote. Returns what the run records."""
    signer = getattr(store, "signer", None)
    if signer is None:  # a bare backend store: checksums only
        return {"signed": False, "note": "this store does not sign"}
    for kind, info in list(infos.items()):
        infos[kind] = signer.sign_info(info)
    return {"signed": True, "public_key": signer.public_key}


def legacy_paths(store: ArtifactStore, config: dict[str, Any]) -> dict[str, str]:
    """The legacy files of ``config`` by kind; ArtifactError (``file_missing``) naming every missing one."""
    if not is_legacy(config):
        if config.get("checksums") or config.get("artifacts"):
            raise ConflictError(
                f"config {config['name']!r} is not a legacy document: its artifacts already have "
                "checksums (adopted or trained here); nothing to adopt",
                field="name",
            )
        raise ValidationError(
            f"config {config['name']!r} names no legacy artifact files (run_id, "
            f"{', '.join(SEED_PATH_FIELDS)}); train it instead",
            field="name",
        )
    paths = {kind: config.get(field) for kind, field in KINDS.items()}
    unset = [KINDS[k] for k, p in paths.items() if not p]
    if unset:
        raise ArtifactError(
            f"config {config['name']!r} has no {', '.join(unset)}; nothing was adopted", reason="field_missing"
        )
    for kind, path in paths.items():  # before anything is stat'ed or read
        if is_gridfs_path(path) or not isinstance(path, str):
            raise ArtifactError(
                f"config {config['name']!r}: the legacy {kind} file {path!r} is not a local file: adoption reads "
                "only files inside ARTIFACT_DIR, never GridFS (whose bytes whoever can write the database "
                "supplies). Nothing was read or adopted",
                reason="path_refused",
                path=str(path),
            )
    missing = []
    for kind, path in paths.items():
        if not store.stat(path)["exists"]:  # refuses paths outside ARTIFACT_DIR (path_refused)
            missing.append(f"{kind} ({path})")
    if missing:
        raise ArtifactError(
            f"config {config['name']!r}: legacy artifact file(s) missing: {', '.join(missing)}; "
            "nothing was adopted (retrain it instead)",
            reason="file_missing",
            path=paths[missing[0].split(" ")[0]],
        )
    return paths  # type: ignore[return-value]


def adopt_legacy(
    database: Database,
    name: Any,
    *,
    trust: bool = False,
    requested_by: str | None = None,
    store: ArtifactStore | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Adopt config ``name``'s legacy files as a verified run with out-of-fold predictions; return the run."""
    t0 = time.perf_counter()
    stored = ConfigStore(database).get(name)
    config = {**validate_config(stored), "_id": stored["_id"]}
    store = store or get_store(database.settings)
    local = getattr(store, "local", store)  # the configured store reads gridfs: paths from GridFS: never here
    paths = legacy_paths(local, config)
    if trust is not True:
        raise TrustRequiredError(
            f"adopting {config['name']!r} loads its legacy files, and loading a pickle runs code from it; the "
            "reference system recorded no checksums, so only an admin can vouch for them. Check where they came "
            'from, then adopt with --trust (API: "trust": true). Nothing was read or changed.',
            field="trust",
        )
    # ---- the trust step: from here on the files are read, hashed, signed and unpickled
    progress(0.0, "hashing the legacy files")
    blobs = {kind: local.read_bytes(path) for kind, path in paths.items()}
    infos = {kind: describe_bytes(paths[kind], data) for kind, data in blobs.items()}
    signature = sign_adopted_files(store, infos)
    try:
        features = json.loads(blobs["features"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"features file {paths['features']} is not JSON: {exc}",
            reason="unpickle_error",
            path=paths["features"],
        ) from None
    if isinstance(features, dict):
        features = features.get("features")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise ArtifactError(
            f"features file {paths['features']} does not hold a list of column names",
            reason="unpickle_error",
            path=paths["features"],
        )
    scaler, _ = unpickle_bytes(blobs["scaler"], paths["scaler"])
    model, notes = unpickle_bytes(blobs["model"], paths["model"])
    for obj, kind in ((scaler, "scaler"), (model, "model")):
        if not hasattr(obj, "get_params") or not hasattr(obj, "fit"):
            raise ArtifactError(
                f"{kind} file {paths[kind]} holds a {type(obj).__name__}, not a scikit-learn "
                "estimator; nothing was adopted",
                reason="unpickle_error",
                path=paths[kind],
            )
    progress(0.05, "reading the training data")
    config = {**config, "features": list(features)}
    data = load_training_data(config, database.settings)
    base = Pipeline([("scaler", clone(scaler)), ("model", clone(model))])
    fit = fit_config(config, data, scaled(progress, 0.1, 0.9), n_jobs=database.settings.cv_jobs, base=base)
    run_id = config["run_id"]
    if RunStore(database).find(run_id) is not None:
        raise ConflictError(
            f"run {run_id} already exists; config {config['name']!r} cannot be adopted under it", field="run_id"
        )
    progress(0.92, "saving out-of-fold predictions")
    spec = fold_spec(config)
    fingerprint = data.fingerprint(config["target"])
    data_info = {
        "training_csv": config["training_csv"],
        "file_sha256": data.file_sha256,
        "fingerprint": fingerprint,
        "rows_read": data.rows_read,
        "rows_used": data.rows_used,
        "rows_dropped": data.rows_dropped,
        "missing_value_policy": "drop rows",
        "n_train": int(len(fit.train_idx)),
        "n_test": int(len(fit.test_idx)),
        **split_info(config, data, fit),
    }
    adopted = {
        "at": now(),
        "by": requested_by,
        "trusted": True,
        "signature": signature,
        "oof": "cross-validated clones of the legacy estimator with the standard fold spec",
        "metrics": "a clone fitted on the training rows, scored on the held-out rows; the legacy model "
        "itself is kept unchanged",
    }
    summary = {
        "run_id": run_id,
        "name": config["name"],
        "metrics": fit.metrics,
        "cv": fit.cv,
        "data": data_info,
        "fold_spec": spec,
        "adopted": {k: v for k, v in adopted.items() if k != "at"},
    }
    written: dict[str, ArtifactInfo] = {}
    try:
        written["oof"] = store.write(
            artifact_name(run_id, "oof"), npz_writer(oof_arrays(fit, data_info.get("fingerprint")))
        )
        written["metrics"] = store.write(artifact_name(run_id, "metrics"), json_writer(summary))
        saved_at = now()
        artifacts = {**{k: v.to_dict() for k, v in infos.items()}, **{k: v.to_dict() for k, v in written.items()}}
        run = {
            "run_id": run_id,
            "config_id": config["_id"],
            "name": config["name"],
            "task": config["task"],
            "model_type": config["model_type"],
            "definition": definition(config),
            "config": {k: v for k, v in config.items() if k not in ("_id",)},
            "tags": config.get("tags", []),
            "artifacts": artifacts,
            "metrics": fit.metrics,
            "cv": fit.cv,
            "feature_importance": fit.feature_importance,
            "data": data_info,
            "fold_spec": spec,
            "classes": fit.classes,
            "durations": {"total_s": round(time.perf_counter() - t0, 4)},
            "versions": environment_versions(),
            "status": "trained",
            "created_at": saved_at,
            "requested_by": requested_by,
            "adopted": adopted,
            "load_warnings": notes,
            "status_history": [{"status": "trained", "at": saved_at, "by": requested_by, "note": "adopted"}],
        }
        RunStore(database).insert_versioned(run)
    except BaseException:
        for info in written.values():
            store.delete(info.path)
        raise
    fields = config_fields_for_run(run)
    fields["artifacts_saved_at"] = stored.get("artifacts_saved_at") or fields["artifacts_saved_at"]
    ConfigStore(database).record_run(config["_id"], {**fields, "adopted": adopted}, saved_at)
    progress(1.0, "adopted")
    log.info(
        "adopted legacy config %s as run %s (cv %s %.4f)", config["name"], run_id, fit.cv["metric"], fit.cv["mean"]
    )
    return run
