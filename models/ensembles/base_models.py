"""Base models of an ensemble: from the cache, from verified artifacts (fast path), or retrained (slow path)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import ModelCache, get_model_cache
from models.artifacts.legacy import LEGACY_REASON, is_legacy, legacy_message
from models.artifacts.loading import artifact_refs, cache_key, load_model
from models.artifacts.predictor import TrainedModel
from models.artifacts.routing import get_store
from models.artifacts.verified import check_signature, load_npz_verified, verify_ref
from models.ensembles.compat import check_names
from models.errors import (
    ArtifactError,
    DataError,
    NotFoundError,
    ServiceError,
    TrainingError,
    ValidationError,
    describe_reason,
    error_dict,
)
from models.jobs.bounded import ChildError
from models.progress import Progress, no_progress, scaled
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.references import RUN_ID_RE, resolve_model
from models.store.runs import RunStore, config_fields_for_run

log = logging.getLogger(__name__)

# BaseModelResult.source: "trained" is a first training (no earlier run), "retrained" replaces a run
SOURCES = ("cache", "artifacts", "trained", "retrained")


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
    source: str  # cache | artifacts | trained (first training) | retrained (there was a run before)
    seconds: float
    reason: str | None = None  # why the fast path failed (ArtifactError.reason), None when it did not
    detail: str | None = None  # the fast path's error message
    waited_seconds: float = 0.0  # time spent waiting for another caller's training
    job_id: str | None = None  # the training job of the slow path (its own, or the one it joined)
    joined: bool = False  # the slow path joined a training someone else had started
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the config document used
    oof: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly summary (no model object)."""
        return {
            "name": self.name,
            "config_id": self.config_id,
            "run_id": self.run_id,
            "version": self.config.get("version"),
            # the reference the base was given by, and how it chose the run (None: the config's current run)
            "ref": (self.config.get("pinned") or {}).get("ref", self.name),
            "pinned_by": (self.config.get("pinned") or {}).get("served"),
            "model_type": self.config.get("model_type"),
            "source": self.source,
            "reason": self.reason,
            "reason_text": describe_reason(self.reason) if self.reason else None,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
            "waited_seconds": round(self.waited_seconds, 4),
            "job_id": self.job_id,
            "joined": self.joined,
        }


# ---------------------------------------------------------------- base models


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
        for ref in refs.values():  # signature first, then its signed digests as it streams; nothing is unpickled
            check_signature(store, ref)
            verify_ref(store, ref)
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
    progress: Progress = no_progress,
    lock_timeout: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Retrain ``config`` (slow path) once: ``(fresh config, training summary)``.

    The training is the config's one training job (:func:`models.training.service.train_bounded`):
    bounded like every job, on the Dask cluster when one is configured, shown on the Jobs page; a
    training of the same config already running (a Train click, ``cli train``, another ensemble) is
    joined, not repeated, and one that ended while we looked is not repeated either.
    """
    log.warning("retraining %s (%s): %s", config.get("name"), describe_reason(problem.reason), problem.message)
    try:
        from models.training.service import train_bounded  # training code loads only when a base is retrained

        summary = train_bounded(
            database,
            config["_id"],
            progress=progress,
            requested_by="stacking",
            unless_changed_from=config.get("run_id") or "",
            wait_timeout=lock_timeout,
        )
    except (DataError, ValidationError) as exc:
        raise _unavailable(config, problem.message, exc.message) from exc
    except ServiceError as exc:
        if exc.code in ("data_error", "validation_error"):
            raise _unavailable(config, problem.message, exc.message) from exc
        if isinstance(exc, (TrainingError, ChildError)):
            raise _unavailable(config, problem.message, f"training failed: {exc.message}") from exc
        raise
    fresh = ConfigStore(database).find(config["_id"])
    if fresh is None:
        raise NotFoundError(f"config {config.get('name')!r} was deleted while it was retrained", field="name")
    return fresh, summary


def was_trained(config: dict[str, Any]) -> bool:
    """Whether ``config`` had a run before (a run id, or legacy artifacts): training it now is a
    retraining; otherwise it is its first training (reported as ``trained``, not ``retrained``)."""
    return bool(config.get("run_id") or config.get("model_artifact_path") or config.get("artifacts"))


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

    The slow path is the config's one training job: whoever asks first trains, the others join that
    job and then load what it wrote (their ``source`` is then the fast path's, with ``waited_seconds``).
    """
    settings = database.settings
    t0 = time.perf_counter()

    def loaded(doc: dict[str, Any], source: str | None = None, **extra: Any) -> BaseModelResult:
        model, found, oof = fast_load(
            settings, doc, store=store, cache=cache, need_oof=need_oof, load_model_object=load_model_object
        )
        return BaseModelResult(
            doc["name"],
            doc["_id"],
            doc["run_id"],
            model,
            source or found,
            time.perf_counter() - t0,
            config=doc,
            oof=oof,
            **extra,
        )

    try:
        return loaded(config)
    except ArtifactError as exc:
        problem = exc
    log.info("%s: fast path failed (%s): %s", config.get("name"), problem.reason, problem.message)
    fresh = ConfigStore(database).find(config["_id"])
    if fresh is None:
        raise NotFoundError(f"config {config.get('name')!r} no longer exists", field="name")
    if artifacts_changed(config, fresh):  # someone else trained it while we looked
        try:
            return loaded(fresh, reason=problem.reason, detail=problem.message)
        except ArtifactError as again:
            problem = again
    trained_before = was_trained(fresh)
    fresh, summary = retrain(database, fresh, problem, progress=progress, lock_timeout=lock_timeout)
    joined = bool(summary.get("joined") or summary.get("skipped"))
    return loaded(
        fresh,
        None if joined else ("retrained" if trained_before else "trained"),
        reason=problem.reason,
        detail=problem.message,
        waited_seconds=0.0 if not joined else float(summary.get("waited_seconds") or 0.0),
        job_id=summary.get("job_id"),
        joined=joined,
    )


def find_configs(docs: dict[Any, dict[str, Any] | None], names: list[Any]) -> list[dict[str, Any]]:
    """The documents for ``names`` in order; NotFoundError naming every unknown one."""
    unknown = [str(n) for n in names if docs.get(n) is None]
    if unknown:
        raise NotFoundError(f"no config named {', '.join(map(repr, unknown))}", field="base_models")
    return [docs[n] for n in names]  # type: ignore[misc]


def fetch_configs(database: Database, names: list[Any]) -> list[dict[str, Any]]:
    return find_configs(ConfigStore(database).find_many(names), names)


def pins_a_run(ref: Any) -> bool:
    """Whether base reference ``ref`` names a run (``NAME@...`` or a run id) rather than a config."""
    return isinstance(ref, str) and ("@" in ref or bool(RUN_ID_RE.match(ref.strip())))


def pinned_document(database: Database, run: dict[str, Any], ref: str, served: str) -> dict[str, Any]:
    """A config-shaped document for run ``run``: the config as that run was trained (the run's snapshot),
    its artifact fields the run's own, and ``pinned`` saying by which reference it was chosen."""
    config = ConfigStore(database).find(run["config_id"]) if run.get("config_id") is not None else None
    doc = {**(config or {}), **(run.get("config") or {})}
    doc.update(config_fields_for_run(run))
    doc.update(
        {
            "_id": run.get("config_id", doc.get("_id")),
            "name": run["name"],
            "pinned": {"ref": ref, "served": served, "run_id": run["run_id"], "version": run.get("version")},
        }
    )
    return doc


def base_documents(database: Database, refs: list[Any]) -> list[dict[str, Any]]:
    """The documents of the base models ``refs`` name, in order.

    - ``NAME`` (or a config id): the config's production run if one is promoted (pinned), else the
      config itself, whose current run is used (and trained first when it cannot be loaded);
    - ``NAME@production``, ``NAME@staging``, ``NAME@latest``, ``NAME@1.2.0`` or a run id: that run, pinned
      (:func:`models.store.references.resolve_model`), loaded from its own artifacts and never retrained.

    NotFoundError naming every unknown config; the resolver's errors for a bad reference; ValidationError
    when two references name the same config (an ensemble uses one run per config).
    """
    plain = [r for r in refs if not pins_a_run(r)]
    configs = ConfigStore(database).find_many(plain) if plain else {}
    find_configs(configs, plain)  # every unknown plain name at once
    runs = RunStore(database)
    out = []
    for ref in refs:
        if pins_a_run(ref):
            served = resolve_model(database, ref, field="base_models")
            out.append(pinned_document(database, served.run_document(database), ref.strip(), served.chosen_by))
            continue
        config = configs[ref]
        production = runs.find_production(config["name"])
        if production is not None:
            out.append(pinned_document(database, production, config["name"], "production"))
        else:
            out.append(config)
    names = [d["name"] for d in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValidationError(
            f"base_models name config {', '.join(map(repr, twice))} more than once (an ensemble stacks one "
            "run of each config)",
            field="base_models",
        )
    return out


def obtain_pinned_base(
    database: Database,
    doc: dict[str, Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    load_model_object: bool = True,
) -> BaseModelResult:
    """A pinned base run (see :func:`base_documents`) from the cache or its verified artifacts; a pinned
    run is never retrained (that would make another run): BaseModelUnavailableError naming it."""
    t0 = time.perf_counter()
    pin = doc["pinned"]
    try:
        model, source, oof = fast_load(
            database.settings,
            doc,
            store=store,
            cache=cache,
            need_oof=need_oof,
            load_model_object=load_model_object,
        )
    except ArtifactError as exc:
        raise BaseModelUnavailableError(
            f"base model {pin['ref']!r} is pinned to run {pin['run_id']} ({doc['name']} {pin.get('version')}), "
            f"whose artifacts cannot be used: {exc.message}. A pinned run is not retrained; give another "
            "reference, or the plain config name to train and use its current run",
            field="base_models",
            details={"ref": pin["ref"], "run_id": pin["run_id"], "reason": exc.reason},
        ) from None
    return BaseModelResult(
        doc["name"], doc["_id"], doc["run_id"], model, source, time.perf_counter() - t0, config=doc, oof=oof
    )


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
    concurrency: int = 1,
    documents: list[dict[str, Any]] | None = None,
) -> list[BaseModelResult]:
    """Obtain every named base model, in order; tries them all and reports every failure at once.

    ``names`` are base references (:func:`base_documents`); ``documents`` (what :func:`base_documents`
    returned) skips looking them up again. ``concurrency`` > 1 obtains that many at once, each in a
    thread (the async entry points do); the results, messages and failures are the same as one by one.
    """
    if documents is None:
        names = check_names(names if isinstance(names, (str, list, tuple)) else list(names))
        documents = base_documents(database, names)
    configs = documents
    store = store or get_store(database.settings)
    count = len(configs)

    def one(i: int, config: dict[str, Any]) -> BaseModelResult | dict[str, Any]:
        step = scaled(progress, i / count, (i + 1) / count)
        step(0.0, f"{config['name']}: loading")
        try:
            if config.get("pinned"):
                res = obtain_pinned_base(
                    database,
                    config,
                    store=store,
                    cache=cache,
                    need_oof=need_oof,
                    load_model_object=load_model_object,
                )
                step(1.0, base_model_line(res))
                return res
            res = obtain_base_model(
                database,
                config,
                store=store,
                cache=cache,
                need_oof=need_oof,
                progress=lambda f, m: step(f, f"{config['name']}: retraining: {m}"),
                lock_timeout=lock_timeout,
                load_model_object=load_model_object,
            )
        except ServiceError as exc:
            step(1.0, f"{config['name']}: failed")
            return {"name": config["name"], **error_dict(exc)}
        step(1.0, base_model_line(res))
        return res

    if concurrency > 1 and count > 1:
        with ThreadPoolExecutor(max_workers=min(concurrency, count), thread_name_prefix="base-model") as pool:
            outcomes = list(pool.map(one, range(count), configs))
    else:
        outcomes = [one(i, c) for i, c in enumerate(configs)]
    failures = [o for o in outcomes if isinstance(o, dict)]
    if failures:
        raise BaseModelsError(failures)
    return [o for o in outcomes if isinstance(o, BaseModelResult)]


def base_model_line(res: BaseModelResult) -> str:
    """The progress line saying how a base model was obtained (the same for every entry point)."""
    how = res.source
    if res.joined:
        how += f", joined the training job {res.job_id} already running"
    # a first training: the reason ("not trained yet") would only repeat it
    why = "no artifacts yet" if res.source == "trained" else describe_reason(res.reason) if res.reason else ""
    return f"{res.name}: {how}" + (f" ({why})" if why else "") + f" in {res.seconds:.2f}s"


# ------------------------------------------------------------ compatibility
