"""Base models of an ensemble: from the cache, from verified artifacts (fast path), or retrained (slow path)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import ModelCache, get_model_cache
from models.artifacts.legacy import LEGACY_REASON, is_legacy, legacy_message
from models.artifacts.loading import artifact_refs, cache_key, load_model
from models.artifacts.predictor import TrainedModel
from models.artifacts.routing import get_store
from models.artifacts.verified import check_signature, load_npz_verified, verify_file
from models.ensembles.compat import check_names
from models.errors import (
    ArtifactError,
    DataError,
    NotFoundError,
    ServiceError,
    TrainingError,
    ValidationError,
    describe_reason,
)
from models.progress import Progress, no_progress, scaled
from models.store.configs import config_filter
from models.store.db import Database
from models.store.locks import MongoLock
from models.training.train import train_config

log = logging.getLogger(__name__)

SOURCES = ("cache", "artifacts", "retrained")  # BaseModelResult.source


class BaseModelUnavailableError(ServiceError):
    """A base model has no usable artifacts and cannot be retrained either."""

    code = "base_model_unavailable"
    http_status = 422


class BaseModelsError(ServiceError):
    """One or more base models could not be obtained; ``failures`` lists every one."""

    code = "base_models_unavailable"
    http_status = 422

    def __init__(self, failures: list[dict[str, Any]]) -> None:
        self.failures = failures
        lines = "; ".join(f["message"] for f in failures)
        super().__init__(f"{len(failures)} base model(s) could not be obtained: {lines}", details=failures)


@dataclass
class BaseModelResult:
    """How one base model was obtained."""

    name: str
    config_id: Any
    run_id: str
    model: TrainedModel | None  # None when only verified (see fast_load); loaded on first prediction
    source: str  # cache | artifacts | retrained
    seconds: float
    reason: str | None = None  # why the fast path failed (ArtifactError.reason), None when it did not
    detail: str | None = None  # the fast path's error message
    waited_seconds: float = 0.0  # time spent waiting for another caller's training
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the config document used
    oof: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly summary (no model object)."""
        return {
            "name": self.name,
            "config_id": self.config_id,
            "run_id": self.run_id,
            "model_type": self.config.get("model_type"),
            "source": self.source,
            "reason": self.reason,
            "reason_text": describe_reason(self.reason) if self.reason else None,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
            "waited_seconds": round(self.waited_seconds, 4),
        }


# ---------------------------------------------------------------- base models


def train_lock_key(config: dict[str, Any]) -> str:
    return f"train:{config['_id']}"


def _oof_ref(config: dict[str, Any]) -> dict[str, Any]:
    ref = (config.get("artifacts") or {}).get("oof")
    if is_legacy(config):
        raise ArtifactError(legacy_message(config), reason=LEGACY_REASON)
    if not ref or not ref.get("path"):
        raise ArtifactError(
            f"config {config.get('name')!r} has no out-of-fold predictions recorded (trained "
            "before they were kept); stacking needs them",
            reason="oof_missing",
        )
    return ref


def load_oof(
    settings: Any, config: dict[str, Any], *, store: ArtifactStore | None = None, cache: ModelCache | None = None
) -> dict[str, np.ndarray]:
    """The verified out-of-fold archive of the config's current run (cached like models)."""
    ref = _oof_ref(config)
    cache = cache or get_model_cache(settings)
    key = ("oof", config.get("run_id"), ref.get("sha256"))
    hit = cache.get(key)
    if hit is not None:
        return hit
    arrays = load_npz_verified(store or get_store(settings), ref)
    missing = [k for k in ("oof", "train_idx", "test_idx", "test_pred", "classes") if k not in arrays]
    if missing:
        raise ArtifactError(
            f"out-of-fold archive {ref['path']} lacks {', '.join(missing)}",
            reason="unpickle_error",
            path=ref["path"],
        )
    arrays = share_split_arrays(arrays)
    cache.put(key, arrays, sum(a.nbytes for a in arrays.values()))
    return arrays


# Every run trained on the same data and folds stores the same row indices, fold ids and targets beside its
# own predictions. One copy of each serves them all: an ensemble of five bases holds one, not five.
SHARED_SPLIT_ARRAYS = ("train_idx", "test_idx", "fold_ids", "y_train", "y_test")
_split_arrays: dict[tuple, list[weakref.ref]] = {}  # (name, dtype, shape) -> the copies held in this process
_split_lock = threading.Lock()


def share_split_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with its split arrays replaced by an equal copy already held in this process, if any
    (compared byte for byte, which costs less than hashing them)."""
    out = dict(arrays)
    for name in SHARED_SPLIT_ARRAYS:
        a = out.get(name)
        if a is None or a.dtype == object:
            continue
        with _split_lock:
            key = (name, a.dtype.str, a.shape)
            held = [r for r in _split_arrays.get(key, []) if r() is not None]
            same = next((h for h in (r() for r in held) if h is not None and np.array_equal(h, a)), None)
            if same is not None:
                out[name] = same
            else:
                a.flags.writeable = False  # shared from now on: nobody may change it under another run
                held.append(weakref.ref(a))
            _split_arrays[key] = held
    return out


def fast_load(
    settings: Any,
    config: dict[str, Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    load_model_object: bool = True,
) -> tuple[TrainedModel | None, str, dict[str, np.ndarray] | None]:
    """``(model, source, oof)`` from the cache or verified artifacts; :class:`ArtifactError` otherwise.

    With ``load_model_object=False`` (what creating an ensemble needs: only the
    out-of-fold predictions) the model files are verified against their
    checksums but not unpickled, unless the model is in the cache already; the
    model is then loaded when the ensemble first predicts. That keeps
    creation's memory to the OOF arrays instead of every base model.
    """
    if load_model_object:
        loaded = load_model(settings, config, store=store, cache=cache)
        oof = load_oof(settings, config, store=store, cache=cache) if need_oof else None
        return loaded.model, loaded.source, oof
    cache = cache or get_model_cache(settings)
    refs = artifact_refs(config)
    key = cache_key(config["run_id"], {k: ref.get("sha256") or "" for k, ref in refs.items()})
    model = cache.get(key) if key in cache else None
    oof_cached = ("oof", config.get("run_id"), _oof_ref(config).get("sha256")) in cache
    if model is None and not oof_cached:
        store = store or get_store(settings)
        for ref in refs.values():  # signature first, then streamed through SHA-256; nothing is unpickled
            check_signature(store, ref)
            verify_file(store, ref["path"], ref.get("sha256"))
    oof = load_oof(settings, config, store=store, cache=cache) if need_oof else None
    return model, "cache" if (model is not None or oof_cached) else "artifacts", oof


def _unavailable(config: dict[str, Any], artifact_problem: str, data_problem: str) -> BaseModelUnavailableError:
    name = config.get("name")
    return BaseModelUnavailableError(
        f"config {name!r} cannot be loaded or retrained. Artifacts: {artifact_problem}. Data: {data_problem}.",
        field="base_models",
        details={"config": name, "artifacts": artifact_problem, "data": data_problem},
    )


def retrain(
    database: Database,
    config: dict[str, Any],
    problem: ArtifactError,
    *,
    store: ArtifactStore | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Retrain ``config`` (slow path) and return the updated config document.

    With a Dask cluster configured (``DASK_SCHEDULER_ADDRESS``) the training runs
    on a worker, which writes through the configured artifact store; the caller
    keeps holding its claim meanwhile, so the config is still trained once.
    """
    log.warning("retraining %s (%s): %s", config.get("name"), describe_reason(problem.reason), problem.message)
    try:
        if not _train_on_cluster(database, config, progress):
            train_config(database, config["_id"], progress=progress, store=store, requested_by="stacking")
    except (DataError, ValidationError) as exc:
        raise _unavailable(config, problem.message, exc.message) from exc
    except TrainingError as exc:
        raise _unavailable(config, problem.message, f"training failed: {exc.message}") from exc
    fresh = database.configs.find_one({"_id": config["_id"]})
    if fresh is None:
        raise NotFoundError(f"config {config.get('name')!r} was deleted while it was retrained", field="name")
    return fresh


def _train_on_cluster(database: Database, config: dict[str, Any], progress: Progress) -> bool:
    """Train ``config`` on the Dask cluster if one is configured; False when it must be trained here."""
    if not database.settings.dask_scheduler_address:
        return False
    from models.training.cluster import train_on_cluster

    return (
        train_on_cluster(database.settings, config["_id"], requested_by="stacking", progress=progress) is not None
    )


def artifacts_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return (before.get("run_id"), before.get("checksums")) != (after.get("run_id"), after.get("checksums"))


def obtain_base_model(
    database: Database,
    config: dict[str, Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    progress: Progress = no_progress,
    lock_timeout: float | None = None,
    load_model_object: bool = True,
) -> BaseModelResult:
    """One base model: cache, else verified artifacts, else retrain it once (slow path).

    The slow path runs under a claim on ``train:<config id>`` in the locks
    collection. Whoever gets the claim first retrains; the others wait, then
    see that the config now points at new artifacts and load those.
    """
    settings = database.settings
    t0 = time.perf_counter()
    try:
        model, source, oof = fast_load(
            settings, config, store=store, cache=cache, need_oof=need_oof, load_model_object=load_model_object
        )
        return BaseModelResult(
            config["name"],
            config["_id"],
            config["run_id"],
            model,
            source,
            time.perf_counter() - t0,
            config=config,
            oof=oof,
        )
    except ArtifactError as exc:
        problem = exc
    log.info("%s: fast path failed (%s): %s", config.get("name"), problem.reason, problem.message)
    with MongoLock(
        database.locks, train_lock_key(config), ttl_seconds=settings.lock_ttl_seconds, timeout=lock_timeout
    ) as claim:
        fresh = database.configs.find_one({"_id": config["_id"]})
        if fresh is None:
            raise NotFoundError(f"config {config.get('name')!r} no longer exists", field="name")
        if artifacts_changed(config, fresh):  # someone else trained it while we looked or waited
            try:
                model, source, oof = fast_load(
                    settings,
                    fresh,
                    store=store,
                    cache=cache,
                    need_oof=need_oof,
                    load_model_object=load_model_object,
                )
                return BaseModelResult(
                    fresh["name"],
                    fresh["_id"],
                    fresh["run_id"],
                    model,
                    source,
                    time.perf_counter() - t0,
                    reason=problem.reason,
                    detail=problem.message,
                    waited_seconds=claim.waited_seconds,
                    config=fresh,
                    oof=oof,
                )
            except ArtifactError as again:
                problem = again
        fresh = retrain(database, fresh, problem, store=store, progress=progress)
        model, _, oof = fast_load(
            settings, fresh, store=store, cache=cache, need_oof=need_oof, load_model_object=load_model_object
        )
    return BaseModelResult(
        fresh["name"],
        fresh["_id"],
        fresh["run_id"],
        model,
        "retrained",
        time.perf_counter() - t0,
        reason=problem.reason,
        detail=problem.message,
        waited_seconds=claim.waited_seconds,
        config=fresh,
        oof=oof,
    )


def find_configs(docs: dict[Any, dict[str, Any] | None], names: list[Any]) -> list[dict[str, Any]]:
    """The documents for ``names`` in order; NotFoundError naming every unknown one."""
    unknown = [str(n) for n in names if docs.get(n) is None]
    if unknown:
        raise NotFoundError(f"no config named {', '.join(map(repr, unknown))}", field="base_models")
    return [docs[n] for n in names]  # type: ignore[misc]


def fetch_configs(database: Database, names: list[Any]) -> list[dict[str, Any]]:
    return find_configs({n: database.configs.find_one(config_filter(n)) for n in names}, names)


def load_base_models(
    database: Database,
    names: Iterable[Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    progress: Progress = no_progress,
    lock_timeout: float | None = None,
    load_model_object: bool = True,
) -> list[BaseModelResult]:
    """Obtain every named base model; tries them all and reports every failure at once."""
    names = check_names(names if isinstance(names, (str, list, tuple)) else list(names))
    configs = fetch_configs(database, names)
    store = store or get_store(database.settings)
    results, failures = [], []
    for i, config in enumerate(configs):
        step = scaled(progress, i / len(configs), (i + 1) / len(configs))
        step(0.0, f"{config['name']}: loading")
        try:
            res = obtain_base_model(
                database,
                config,
                store=store,
                cache=cache,
                need_oof=need_oof,
                progress=lambda f, m, n=config["name"], step=step: step(f, f"{n}: retraining: {m}"),
                lock_timeout=lock_timeout,
                load_model_object=load_model_object,
            )
        except ServiceError as exc:
            failures.append(
                {"name": config["name"], "code": exc.code, "message": exc.message, "details": exc.details}
            )
            step(1.0, f"{config['name']}: failed")
            continue
        results.append(res)
        step(
            1.0,
            f"{res.name}: {res.source}"
            + (f" ({describe_reason(res.reason)})" if res.reason else "")
            + f" in {res.seconds:.2f}s",
        )
    if failures:
        raise BaseModelsError(failures)
    return results


# ------------------------------------------------------------ compatibility
