"""Stacking ensembles over trained configs: base models fast from artifacts, retrained only when needed.

Creating an ensemble:

1. check the options and the base configs up front (unknown names, task,
   target, fold spec, training data) and report every problem at once;
2. obtain each base model: the cache, else its verified artifacts, else
   (slow path) retrain it from its training CSV under a MongoDB claim so
   that concurrent callers train it once (:func:`obtain_base_model`);
3. fit the meta-model on the base runs' stored out-of-fold predictions
   (:mod:`models.stacking`) and score it and each base model on the same
   held-out rows;
4. write the meta-model and a JSON spec atomically, with checksums, then
   insert the ensemble document (the commit point). A failure at any step
   leaves no ensemble document and no ensemble files.

The steps are separate functions so that the async driver
(:mod:`models.ensembles_async`) reuses them with ``AsyncMongoClient``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from bson import ObjectId
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from .artifacts import (ArtifactInfo, ArtifactStore, artifact_name, get_store, joblib_writer, json_writer,
                        load_npz_verified, load_verified, read_verified)
from .cache import ModelCache, get_model_cache
from .config_store import config_filter
from .data import TrainingData, load_training_data
from .db import Database
from .errors import (ArtifactError, ConflictError, DataError, NotFoundError, ServiceError, TrainingError,
                     ValidationError)
from .loading import artifact_refs, cache_key, load_model
from .locks import MongoLock
from .predictor import TrainedModel
from .progress import Progress, no_progress, scaled
from .runs import RunStore
from .schema import NAME_RE
from .stacking import MetaFit, StackedEnsemble, check_options, fit_meta_model
from .timeutil import now
from .training import environment_versions, fold_spec, new_run_id, train_config

log = logging.getLogger(__name__)

SOURCES = ("cache", "artifacts", "retrained")
META_KIND, SPEC_KIND = "ensemble", "ensemble_spec"


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


class IncompatibleBaseModelsError(ValidationError):
    """The base models cannot be stacked together (task, target, data or folds differ)."""

    code = "incompatible_base_models"


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
        return {"name": self.name, "config_id": self.config_id, "run_id": self.run_id,
                "model_type": self.config.get("model_type"), "source": self.source, "reason": self.reason,
                "detail": self.detail, "seconds": round(self.seconds, 4),
                "waited_seconds": round(self.waited_seconds, 4)}


# ---------------------------------------------------------------- base models

def train_lock_key(config: dict[str, Any]) -> str:
    return f"train:{config['_id']}"


def _oof_ref(config: dict[str, Any]) -> dict[str, Any]:
    ref = (config.get("artifacts") or {}).get("oof")
    if not ref or not ref.get("path"):
        raise ArtifactError(f"config {config.get('name')!r} has no out-of-fold predictions recorded (trained "
                            "before they were kept); stacking needs them", reason="field_missing")
    return ref


def load_oof(settings: Any, config: dict[str, Any], *, store: ArtifactStore | None = None,
             cache: ModelCache | None = None) -> dict[str, np.ndarray]:
    """The verified out-of-fold archive of the config's current run (cached like models)."""
    ref = _oof_ref(config)
    cache = cache or get_model_cache(settings)
    key = ("oof", config.get("run_id"), ref.get("sha256"))
    hit = cache.get(key)
    if hit is not None:
        return hit
    arrays = load_npz_verified(store or get_store(settings), ref["path"], ref.get("sha256"))
    missing = [k for k in ("oof", "train_idx", "test_idx", "test_pred", "classes") if k not in arrays]
    if missing:
        raise ArtifactError(f"out-of-fold archive {ref['path']} lacks {', '.join(missing)}",
                            reason="unpickle_error", path=ref["path"])
    cache.put(key, arrays, sum(a.nbytes for a in arrays.values()))
    return arrays


def fast_load(settings: Any, config: dict[str, Any], *, store: ArtifactStore | None = None,
              cache: ModelCache | None = None, need_oof: bool = False, load_model_object: bool = True
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
        for ref in refs.values():  # one file in memory at a time; nothing is unpickled
            read_verified(store, ref["path"], ref.get("sha256"))
    oof = load_oof(settings, config, store=store, cache=cache) if need_oof else None
    return model, "cache" if (model is not None or oof_cached) else "artifacts", oof


def _unavailable(config: dict[str, Any], artifact_problem: str, data_problem: str) -> BaseModelUnavailableError:
    name = config.get("name")
    return BaseModelUnavailableError(
        f"config {name!r} cannot be loaded or retrained. Artifacts: {artifact_problem}. "
        f"Data: {data_problem}.", field="base_models",
        details={"config": name, "artifacts": artifact_problem, "data": data_problem})


def retrain(database: Database, config: dict[str, Any], problem: ArtifactError, *,
            store: ArtifactStore | None = None, progress: Progress = no_progress) -> dict[str, Any]:
    """Retrain ``config`` (slow path) and return the updated config document.

    With a Dask cluster configured (``DASK_SCHEDULER_ADDRESS``) the training runs
    on a worker, which writes through the configured artifact store; the caller
    keeps holding its claim meanwhile, so the config is still trained once.
    """
    log.warning("retraining %s: %s", config.get("name"), problem.message)
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
    from .jobs.dask_runner import train_on_cluster  # late: dask is needed only with a cluster
    return train_on_cluster(database.settings, config["_id"], requested_by="stacking", progress=progress) is not None


def artifacts_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return (before.get("run_id"), before.get("checksums")) != (after.get("run_id"), after.get("checksums"))


def obtain_base_model(database: Database, config: dict[str, Any], *, store: ArtifactStore | None = None,
                      cache: ModelCache | None = None, need_oof: bool = False, progress: Progress = no_progress,
                      lock_timeout: float | None = None, load_model_object: bool = True) -> BaseModelResult:
    """One base model: cache, else verified artifacts, else retrain it once (slow path).

    The slow path runs under a claim on ``train:<config id>`` in the locks
    collection. Whoever gets the claim first retrains; the others wait, then
    see that the config now points at new artifacts and load those.
    """
    settings = database.settings
    t0 = time.perf_counter()
    try:
        model, source, oof = fast_load(settings, config, store=store, cache=cache, need_oof=need_oof,
                                       load_model_object=load_model_object)
        return BaseModelResult(config["name"], config["_id"], config["run_id"], model, source,
                               time.perf_counter() - t0, config=config, oof=oof)
    except ArtifactError as exc:
        problem = exc
    log.info("%s: fast path failed (%s): %s", config.get("name"), problem.reason, problem.message)
    with MongoLock(database.locks, train_lock_key(config), ttl_seconds=settings.lock_ttl_seconds,
                   timeout=lock_timeout) as claim:
        fresh = database.configs.find_one({"_id": config["_id"]})
        if fresh is None:
            raise NotFoundError(f"config {config.get('name')!r} no longer exists", field="name")
        if artifacts_changed(config, fresh):  # someone else trained it while we looked or waited
            try:
                model, source, oof = fast_load(settings, fresh, store=store, cache=cache, need_oof=need_oof,
                                               load_model_object=load_model_object)
                return BaseModelResult(fresh["name"], fresh["_id"], fresh["run_id"], model, source,
                                       time.perf_counter() - t0, reason=problem.reason, detail=problem.message,
                                       waited_seconds=claim.waited_seconds, config=fresh, oof=oof)
            except ArtifactError as again:
                problem = again
        fresh = retrain(database, fresh, problem, store=store, progress=progress)
        model, _, oof = fast_load(settings, fresh, store=store, cache=cache, need_oof=need_oof,
                                  load_model_object=load_model_object)
    return BaseModelResult(fresh["name"], fresh["_id"], fresh["run_id"], model, "retrained", time.perf_counter() - t0,
                           reason=problem.reason, detail=problem.message, waited_seconds=claim.waited_seconds,
                           config=fresh, oof=oof)


def check_names(names: Any, param: str = "base_models") -> list[str]:
    """A list of distinct config names (or ids); ValidationError naming ``param`` otherwise."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValidationError(f"{param} must be a list of config names, got {type(names).__name__}", field=param)
    bad = [n for n in names if not isinstance(n, (str, ObjectId)) or (isinstance(n, str) and not n.strip())]
    if bad:
        raise ValidationError(f"{param} must hold config names; got {bad[0]!r}", field=param)
    names = [n.strip() if isinstance(n, str) else n for n in names]
    dupes = sorted({str(n) for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"{param} lists {', '.join(dupes)} more than once", field=param)
    if not names:
        raise ValidationError(f"{param} must name at least one config", field=param)
    return list(names)


def find_configs(docs: dict[Any, dict[str, Any] | None], names: list[Any]) -> list[dict[str, Any]]:
    """The documents for ``names`` in order; NotFoundError naming every unknown one."""
    unknown = [str(n) for n in names if docs.get(n) is None]
    if unknown:
        raise NotFoundError(f"no config named {', '.join(map(repr, unknown))}", field="base_models")
    return [docs[n] for n in names]  # type: ignore[misc]


def fetch_configs(database: Database, names: list[Any]) -> list[dict[str, Any]]:
    return find_configs({n: database.configs.find_one(config_filter(n)) for n in names}, names)


def load_base_models(database: Database, names: Iterable[Any], *, store: ArtifactStore | None = None,
                     cache: ModelCache | None = None, need_oof: bool = False, progress: Progress = no_progress,
                     lock_timeout: float | None = None, load_model_object: bool = True) -> list[BaseModelResult]:
    """Obtain every named base model; tries them all and reports every failure at once."""
    names = check_names(names if isinstance(names, (str, list, tuple)) else list(names))
    configs = fetch_configs(database, names)
    store = store or get_store(database.settings)
    results, failures = [], []
    for i, config in enumerate(configs):
        step = scaled(progress, i / len(configs), (i + 1) / len(configs))
        step(0.0, f"{config['name']}: loading")
        try:
            res = obtain_base_model(database, config, store=store, cache=cache, need_oof=need_oof,
                                    progress=lambda f, m, n=config["name"]: step(f, f"{n}: retraining: {m}"),
                                    lock_timeout=lock_timeout, load_model_object=load_model_object)
        except ServiceError as exc:
            failures.append({"name": config["name"], "code": exc.code, "message": exc.message,
                             "details": exc.details})
            step(1.0, f"{config['name']}: failed")
            continue
        results.append(res)
        step(1.0, f"{res.name}: {res.source}" + (f" ({res.reason})" if res.reason else "")
             + f" in {res.seconds:.2f}s")
    if failures:
        raise BaseModelsError(failures)
    return results


# ------------------------------------------------------------ compatibility

def _describe_spec(spec: dict[str, Any]) -> str:
    h = spec.get("holdout") or {}
    return (f"{spec.get('method')}(n_splits={spec.get('n_splits')}, random_state={spec.get('random_state')}), "
            f"test_size={h.get('test_size')}")


def config_fold_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The fold spec of the config's artifacts when trained, else the one training would use."""
    return config.get("fold_spec") or fold_spec(config)


def config_fingerprint(config: dict[str, Any], settings: Any = None) -> str | None:
    """The data fingerprint of the config's run, or of its CSV as it is now; None if unreadable."""
    if config.get("data_fingerprint"):
        return config["data_fingerprint"]
    try:
        return load_training_data(config, settings).fingerprint(config["target"])
    except (DataError, KeyError):
        return None


def _groups(configs: list[dict[str, Any]], values: list[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cfg, val in zip(configs, values):
        out.setdefault(val if isinstance(val, str) else repr(val), []).append(cfg["name"])
    return out


def compatibility_problems(configs: list[dict[str, Any]], fingerprints: list[str | None]) -> list[dict[str, str]]:
    """Every way in which the base configs differ (task, target, fold spec, data), as field/message pairs."""
    problems: list[dict[str, str]] = []

    def differ(label: str, values: list[Any], show=lambda v: v) -> None:
        known = [(c, v) for c, v in zip(configs, values) if v is not None]
        groups = _groups([c for c, _ in known], [v for _, v in known])
        if len(groups) > 1:
            parts = [f"{', '.join(names)} {'use' if len(names) > 1 else 'uses'} {show(key)}"
                     for key, names in groups.items()]
            problems.append({"field": "base_models", "message": f"{label} differs: {'; '.join(parts)}"})

    differ("task", [c.get("task") for c in configs])
    differ("target", [c.get("target") for c in configs], lambda v: repr(v))
    specs = [config_fold_spec(c) for c in configs]
    described = [_describe_spec(s) for s in specs]
    differ("fold spec", described)
    csvs = {c["name"]: c.get("training_csv") for c in configs}

    def show_fp(fp: str) -> str:
        names = [c["name"] for c, f in zip(configs, fingerprints) if f == fp]
        return f"data {fp[:12]}... ({csvs[names[0]]})"
    differ("training data", fingerprints, show_fp)
    return problems


def check_compatible(configs: list[dict[str, Any]], fingerprints: list[str | None],
                     request: "EnsembleRequest | None" = None) -> None:
    """IncompatibleBaseModelsError listing every difference (and option that does not fit the task)."""
    problems = compatibility_problems(configs, fingerprints)
    tasks = {c.get("task") for c in configs}
    if request is not None and len(tasks) == 1:
        problems += check_options(tasks.pop(), request.meta_model, request.stack_method, request.passthrough,
                                  request.meta_params or None)
    if problems:
        raise IncompatibleBaseModelsError(
            "base models cannot be stacked together: " + " | ".join(p["message"] for p in problems),
            errors=problems)


# --------------------------------------------------------------- options

@dataclass
class EnsembleRequest:
    """Validated parameters of an ensemble creation."""

    name: str
    base_models: list[Any]
    meta_model: str
    passthrough: bool
    stack_method: str
    meta_params: dict[str, Any]
    description: str


def check_request(name: Any, base_models: Any, meta_model: Any, passthrough: Any, stack_method: Any,
                  meta_params: Any = None, description: Any = "") -> EnsembleRequest:
    """Check every parameter that can be checked without the database; all problems at once."""
    errors: list[dict[str, str]] = []
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append({"field": "name", "message": f"name must be 1-100 characters: letters, digits, '_', '-' or "
                                                   f"'.', starting with a letter or digit; got {name!r}"})
    try:
        base_models = check_names(base_models)
        if len(base_models) < 2:
            errors.append({"field": "base_models", "message": "an ensemble needs at least two base models"})
    except ValidationError as exc:
        errors.extend(exc.errors)
    # meta_model validity depends on the task; checked for any task here, per task once configs are known
    if not isinstance(meta_model, str) or not any(
            not check_options(t, meta_model, "auto", False) for t in ("classification", "regression")):
        errors.append({"field": "meta_model", "message": f"unknown meta_model {meta_model!r}; choose from: "
                                                         "gradient_boosting, linear_regression (regression), "
                                                         "logistic_regression (classification), random_forest, "
                                                         "ridge"})
    for problem in check_options("classification", "logistic_regression", stack_method, passthrough):
        errors.append(problem)
    if meta_params is not None and not isinstance(meta_params, dict):
        errors.append({"field": "meta_params", "message": "meta_params must be a mapping of parameter names to values"})
    if not isinstance(description, str):
        errors.append({"field": "description", "message": "description must be text"})
    if errors:
        raise ValidationError("invalid ensemble request: " + "; ".join(f"{e['field']}: {e['message']}"
                                                                       for e in errors), errors=errors)
    return EnsembleRequest(name, base_models, meta_model, passthrough, stack_method, dict(meta_params or {}),
                           description)


# --------------------------------------------------------------- building

@dataclass
class BuiltEnsemble:
    """An ensemble fitted in memory, before anything is written."""

    run_id: str
    meta: MetaFit
    record: dict[str, Any]
    spec: dict[str, Any]


def training_targets(results: list[BaseModelResult], passthrough: bool, settings: Any = None
                     ) -> tuple[TrainingData, list[str] | None]:
    """The training data the base runs saw (targets, and raw features for passthrough), checked by fingerprint."""
    ref = results[0].config
    features = None
    if passthrough:
        features = []
        for r in results:
            features.extend(f for f in r.config["features"] if f not in features)
    data = load_training_data({**ref, "features": features or ref["features"]}, settings)
    fp = data.fingerprint(ref["target"])
    if fp != ref.get("data_fingerprint"):
        raise DataError(f"training CSV {ref['training_csv']!r} no longer holds the rows the base runs were "
                        f"trained on (data fingerprint {fp[:12]}..., runs have "
                        f"{str(ref.get('data_fingerprint'))[:12]}...)"
                        + ("; with passthrough the union of the base models' features must not drop extra rows"
                           if passthrough else "; retrain the base models"), field="training_csv")
    return data, features


def build_ensemble(request: EnsembleRequest, results: list[BaseModelResult], settings: Any = None, *,
                   progress: Progress = no_progress) -> BuiltEnsemble:
    """Fit the meta-model on stored out-of-fold predictions and describe the ensemble (CPU only, no writes)."""
    t0 = time.perf_counter()
    configs = [r.config for r in results]
    check_compatible(configs, [c.get("data_fingerprint") for c in configs], request)
    task = configs[0]["task"]
    oofs = [r.oof for r in results]
    assert all(o is not None for o in oofs)
    first = oofs[0]
    for r, o in zip(results[1:], oofs[1:]):
        if not (np.array_equal(o["train_idx"], first["train_idx"]) and np.array_equal(o["test_idx"], first["test_idx"])
                and np.array_equal(o["classes"], first["classes"])):
            raise IncompatibleBaseModelsError(f"run {r.run_id} of {r.name!r} was split into different training/"
                                              f"held-out rows than run {results[0].run_id} of {results[0].name!r}",
                                              field="base_models")
    progress(0.1, "reading training targets")
    data, passthrough_features = training_targets(results, request.passthrough, settings)
    train_idx, test_idx = first["train_idx"], first["test_idx"]
    classes = first["classes"] if task == "classification" else None
    progress(0.3, f"fitting meta-model {request.meta_model}")
    t_fit = time.perf_counter()
    spec_ = config_fold_spec(configs[0])
    meta = fit_meta_model(task, request.meta_model, request.stack_method, oof=[o["oof"] for o in oofs],
                          test_pred=[o["test_pred"] for o in oofs], y_train=data.y[train_idx],
                          y_test=data.y[test_idx], classes=classes,
                          passthrough_train=data.X[train_idx] if request.passthrough else None,
                          passthrough_test=data.X[test_idx] if request.passthrough else None,
                          random_state=int(spec_["random_state"]), params=request.meta_params or None)
    fit_s = time.perf_counter() - t_fit
    run_id = new_run_id()
    bases = []
    for r, metrics in zip(results, meta.base_metrics):
        bases.append({**r.to_record(), "metrics": metrics})
    class_list = None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]
    spec = {"name": request.name, "run_id": run_id, "task": task, "target": configs[0]["target"],
            "base_names": [r.name for r in results], "base_run_ids": [r.run_id for r in results],
            "meta_model": request.meta_model, "meta_params": request.meta_params,
            "stack_method": meta.stack_method, "passthrough": request.passthrough,
            "passthrough_features": passthrough_features, "classes": class_list,
            "n_meta_features": meta.n_meta_features}
    record = {
        "name": request.name, "run_id": run_id, "description": request.description, "task": task,
        "target": configs[0]["target"],
        "base_config_ids": [r.config_id for r in results], "base_names": [r.name for r in results],
        "base_run_ids": [r.run_id for r in results], "base_models": bases,
        "meta_model": request.meta_model, "meta_params": request.meta_params,
        "options": {"passthrough": request.passthrough, "stack_method": request.stack_method,
                    "stack_method_used": meta.stack_method},
        "passthrough_features": passthrough_features, "classes": class_list,
        "data_fingerprint": configs[0]["data_fingerprint"], "fold_spec": spec_,
        "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
        "metrics": meta.metrics, "base_metrics": {r.name: m for r, m in zip(results, meta.base_metrics)},
        "retrained": [r.name for r in results if r.source == "retrained"],
        "durations": {"build_s": round(time.perf_counter() - t0, 4), "meta_fit_s": round(fit_s, 4)},
        "versions": environment_versions(), "status": "ready",
    }
    progress(1.0, "meta-model fitted")
    return BuiltEnsemble(run_id, meta, record, spec)


def write_ensemble_files(store: ArtifactStore, built: BuiltEnsemble) -> dict[str, ArtifactInfo]:
    """The meta-model and spec files, atomically; on failure nothing of them remains."""
    written: dict[str, ArtifactInfo] = {}
    try:
        written[META_KIND] = store.write(artifact_name(built.run_id, META_KIND), joblib_writer(built.meta.model))
        written[SPEC_KIND] = store.write(artifact_name(built.run_id, SPEC_KIND), json_writer(built.spec))
    except BaseException:
        remove_files(store, written.values())
        raise
    return written


def remove_files(store: ArtifactStore, infos: Iterable[ArtifactInfo | dict[str, Any]]) -> None:
    for info in infos:
        path = info.path if isinstance(info, ArtifactInfo) else info.get("path")
        try:
            if path:
                store.delete(path)
        except Exception:  # best effort: a leftover file is reported, not fatal
            log.exception("could not remove %s", path)


def finish_record(built: BuiltEnsemble, written: dict[str, ArtifactInfo], started: float,
                  durations: dict[str, float]) -> dict[str, Any]:
    record = dict(built.record)
    record["artifacts"] = {k: v.to_dict() for k, v in written.items()}
    record["checksums"] = {k: v.sha256 for k, v in written.items()}
    total = time.perf_counter() - started
    record["durations"] = {**record["durations"], **{k: round(v, 4) for k, v in durations.items()},
                           "total_s": round(total, 4)}
    record["seconds"] = round(total, 4)
    record["created_at"] = now()
    return record


def ensemble_exists(name: str) -> ConflictError:
    """The error for a name that is taken."""
    return ConflictError(f"an ensemble named {name!r} already exists", field="name")


def create_ensemble(database: Database, name: str, base_models: list[Any], meta_model: str = "logistic_regression",
                    *, passthrough: bool = False, stack_method: str = "auto", meta_params: dict[str, Any] | None = None,
                    description: str = "", progress: Progress = no_progress, store: ArtifactStore | None = None,
                    cache: ModelCache | None = None, lock_timeout: float | None = None) -> dict[str, Any]:
    """Create and store a stacking ensemble; return its document (with per-base source, reason, time).

    Raises ValidationError / NotFoundError / ConflictError / IncompatibleBaseModelsError for bad
    input (nothing is trained or written), BaseModelsError when base models cannot be obtained.
    """
    started = time.perf_counter()
    request = check_request(name, base_models, meta_model, passthrough, stack_method, meta_params, description)
    store = store or get_store(database.settings)
    if database.ensembles.find_one({"name": request.name}, {"_id": 1}):
        raise ensemble_exists(request.name)
    progress(0.0, "checking base models")
    configs = fetch_configs(database, request.base_models)
    check_compatible(configs, [config_fingerprint(c, database.settings) for c in configs], request)
    check_s = time.perf_counter() - started
    t_load = time.perf_counter()
    results = load_base_models(database, [c["_id"] for c in configs], store=store, cache=cache, need_oof=True,
                               progress=scaled(progress, 0.05, 0.85), lock_timeout=lock_timeout,
                               load_model_object=False)
    load_s = time.perf_counter() - t_load
    built = build_ensemble(request, results, database.settings, progress=scaled(progress, 0.85, 0.95))
    progress(0.95, "saving ensemble")
    t_save = time.perf_counter()
    written = write_ensemble_files(store, built)
    try:
        record = finish_record(built, written, started, {"check_s": check_s, "load_s": load_s,
                                                         "save_s": time.perf_counter() - t_save})
        database.ensembles.insert_one(record)
    except DuplicateKeyError:
        remove_files(store, written.values())
        raise ensemble_exists(request.name) from None
    except BaseException:
        remove_files(store, written.values())
        raise
    progress(1.0, "done")
    log.info("ensemble %s (%s over %s) created in %.2fs; retrained: %s", request.name, request.meta_model,
             ", ".join(record["base_names"]), record["seconds"], record["retrained"] or "none")
    return record


# --------------------------------------------------------------- reading

def get_ensemble(database: Database, name: str) -> dict[str, Any]:
    doc = database.ensembles.find_one({"name": name})
    if doc is None:
        raise NotFoundError(f"no ensemble named {name!r}", field="name")
    return doc


def list_ensembles(database: Database) -> list[dict[str, Any]]:
    return list(database.ensembles.find({}).sort("name", ASCENDING))


def ensembles_using_run(database: Database, run_id: str) -> list[str]:
    """Names of the ensembles built on ``run_id`` (the registry refuses to delete such runs)."""
    return [d["name"] for d in database.ensembles.find({"base_run_ids": run_id}, {"name": 1})]


def load_ensemble(database: Database, name: str, *, store: ArtifactStore | None = None,
                  cache: ModelCache | None = None) -> StackedEnsemble:
    """The stored ensemble as a predictor: the exact base runs it was built on, all verified."""
    doc = get_ensemble(database, name)
    settings = database.settings
    store = store or get_store(settings)
    runs = RunStore(database)
    bases = []
    for base_name, run_id in zip(doc["base_names"], doc["base_run_ids"]):
        run = runs.find(run_id)
        if run is None:
            raise ArtifactError(f"ensemble {name!r} needs run {run_id} of {base_name!r}, which no longer exists; "
                                "create the ensemble again", reason="field_missing")
        try:
            bases.append(load_model(settings, run, store=store, cache=cache).model)
        except ArtifactError as exc:
            raise ArtifactError(f"ensemble {name!r} cannot load base model {base_name!r} (run {run_id}): "
                                f"{exc.message}", reason=exc.reason, path=exc.path) from None
    ref = doc["artifacts"][META_KIND]
    cache = cache or get_model_cache(settings)
    key = ("ensemble", doc["run_id"], ref["sha256"])
    meta = cache.get(key)
    if meta is None:
        meta, _notes = load_verified(store, ref["path"], ref["sha256"])
        cache.put(key, meta, int(ref.get("size") or 0))
    classes = np.asarray(doc["classes"]) if doc.get("classes") is not None else None
    return StackedEnsemble(name=doc["name"], run_id=doc["run_id"], task=doc["task"], bases=bases,
                           base_names=list(doc["base_names"]), meta_model=meta,
                           stack_method=doc["options"]["stack_method_used"], classes=classes,
                           passthrough_features=doc.get("passthrough_features"), record=doc)


def delete_ensemble(database: Database, name: str, *, store: ArtifactStore | None = None) -> dict[str, Any]:
    """Remove the ensemble document (the commit point), then its files. Base runs are untouched."""
    doc = get_ensemble(database, name)
    database.ensembles.delete_one({"_id": doc["_id"]})
    remove_files(store or get_store(database.settings), (doc.get("artifacts") or {}).values())
    cache = get_model_cache(database.settings)
    cache.discard(lambda k: isinstance(k, tuple) and len(k) == 3 and k[0] == "ensemble" and k[1] == doc["run_id"])
    log.info("ensemble %s deleted", name)
    return doc


__all__ = ["BaseModelResult", "BaseModelUnavailableError", "BaseModelsError", "IncompatibleBaseModelsError",
           "SOURCES", "check_request", "compatibility_problems", "create_ensemble",
           "delete_ensemble", "ensembles_using_run", "get_ensemble", "list_ensembles", "load_base_models",
           "load_ensemble", "obtain_base_model"]
