"""Suggested ensembles: choose base models and weights from the stored out-of-fold predictions.

Candidates are trained runs that share task, target, training data fingerprint and fold split
(the compatibility groups of :func:`models.ensembles.service.candidates`). Their stored OOF
predictions form the library; :mod:`models.ensembles.selection` does the math:

- ``greedy``: Caruana's forward selection with replacement; stored as a ``weighted`` ensemble
  (weights = selection counts / total) that predicts the weighted average of its base models;
- ``stack``: the usual meta-model over the top candidates, stored through
  :func:`models.ensembles.build.create_ensemble` (kind ``stacked``);
- ``both``: whichever has the better honest score.

The honest score is nested over the stored folds (select inside the training folds, score on the
held-out fold) and is reported beside the best single candidate's score on the same rows. The
ensemble's metrics on the run's held-out test rows are recorded as for any ensemble.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import jobs
from models.artifacts.base import ArtifactInfo, ArtifactStore, artifact_name, json_writer
from models.artifacts.cache import ModelCache
from models.artifacts.routing import get_store
from models.ensembles.base_models import BaseModelResult, fast_load, fetch_configs, load_base_models
from models.ensembles.build import (
    SPEC_KIND,
    WEIGHTED_KIND,
    check_same_split,
    create_ensemble,
    remove_files,
    rows_with_oof,
    training_targets,
)
from models.ensembles.compat import check_compatible, check_names, config_fingerprint, config_fold_spec
from models.ensembles.selection import (
    DEFAULT_SIZE,
    METHODS,
    SELECTION_METRICS,
    Choice,
    Selection,
    better,
    check_method,
    check_metric,
    check_size,
    doubly_nested,
    greedy_select,
    nested_greedy,
    nested_stack,
    score,
    single_scores,
    stack_predict,
    top_candidates,
    weighted_average,
)
from models.ensembles.service import candidates, ensemble_key
from models.ensembles.stacking import DEFAULT_META_MODELS, check_options, encode_labels, stored_prediction_metrics
from models.errors import ArtifactError, ValidationError
from models.jobs.context import commit_point
from models.jobs.remote import RemoteWork
from models.jsonable import to_json
from models.progress import Progress, no_progress, scaled
from models.splits import make_splitter
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.schema import NAME_RE
from models.timeutil import now
from models.training.train import environment_versions, new_run_id

log = logging.getLogger(__name__)

SUGGEST_KIND = "ensemble_suggest"
SUGGEST_FIELDS = (
    "name",
    "from",
    "all_compatible",
    "metric",
    "size",
    "method",
    "meta_model",
    "stack_top",
    "description",
    "new_version",
)
DEFAULT_STACK_TOP = 5
DEFAULT_META = DEFAULT_META_MODELS  # as every ensemble: scikit-learn's Stacking* defaults


@dataclass
class SuggestRequest:
    """Validated parameters of a suggestion (the metric and meta-model are checked again per task)."""

    name: str
    from_configs: list[Any]
    all_compatible: bool
    metric: str | None
    size: int
    method: str
    meta_model: str | None
    stack_top: int
    description: str
    new_version: bool = False


def check_suggest(
    name: Any,
    from_configs: Any = None,
    all_compatible: Any = False,
    metric: Any = None,
    size: Any = None,
    method: Any = "greedy",
    meta_model: Any = None,
    stack_top: Any = None,
    description: Any = "",
    new_version: Any = False,
) -> SuggestRequest:
    """Every check that needs no database; a ValidationError listing every problem."""
    errors: list[dict[str, str]] = []
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(
            {
                "field": "name",
                "message": f"name must be 1-100 characters: letters, digits, '_', '-' or "
                f"'.', starting with a letter or digit; got {name!r}",
            }
        )
    if not isinstance(all_compatible, bool):
        errors.append(
            {"field": "all_compatible", "message": f"all_compatible must be true or false; got {all_compatible!r}"}
        )
    names: list[Any] = []
    if from_configs not in (None, [], ()):
        try:
            names = check_names(from_configs, "from")
        except ValidationError as exc:
            errors.extend(exc.errors)
    if not names and all_compatible is False:
        errors.append(
            {
                "field": "from",
                "message": "name the candidate configs (from) or ask for all compatible "
                "trained configs (all_compatible)",
            }
        )
    elif len(names) == 1 and all_compatible is False:
        errors.append(
            {
                "field": "from",
                "message": "a suggestion needs at least two candidates; name more configs or add all_compatible",
            }
        )
    if metric is not None and not any(metric in SELECTION_METRICS[t] for t in SELECTION_METRICS):
        errors.append(
            {
                "field": "metric",
                "message": f"unknown metric {metric!r}; choose from: log_loss, brier, "
                "accuracy, roc_auc (classification), rmse, mae, r2 (regression)",
            }
        )
    for check, value in ((check_size, size), (check_method, method)):
        try:
            check(value)
        except ValidationError as exc:
            errors.extend(exc.errors)
    if stack_top is not None and (isinstance(stack_top, bool) or not isinstance(stack_top, int) or stack_top < 2):
        errors.append(
            {"field": "stack_top", "message": f"stack_top must be a whole number of at least 2; got {stack_top!r}"}
        )
    if meta_model is not None and (
        not isinstance(meta_model, str)
        or all(check_options(t, meta_model, "auto", False) for t in ("classification", "regression"))
    ):
        errors.append({"field": "meta_model", "message": f"unknown meta_model {meta_model!r}"})
    if not isinstance(description, str):
        errors.append({"field": "description", "message": "description must be text"})
    if not isinstance(new_version, bool):
        errors.append(
            {"field": "new_version", "message": f"new_version must be true or false; got {new_version!r}"}
        )
    if errors:
        raise ValidationError(
            "invalid suggestion: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        )
    return SuggestRequest(
        name,
        names,
        all_compatible,
        metric,
        check_size(size),
        method,
        meta_model,
        stack_top or DEFAULT_STACK_TOP,
        description,
        new_version,
    )


# ------------------------------------------------------------ candidates


def candidate_configs(database: Database, request: SuggestRequest) -> list[dict[str, Any]]:
    """The candidate config documents: ``from`` (checked compatible), plus their whole group with ``all_compatible``."""
    chosen = fetch_configs(database, request.from_configs) if request.from_configs else []
    untrained = [c["name"] for c in chosen if not c.get("run_id")]
    if untrained:
        raise ValidationError(
            f"config(s) {', '.join(untrained)} have never been trained; train them first", field="from"
        )
    if chosen:
        check_compatible(chosen, [config_fingerprint(c, database.settings) for c in chosen])
    if not request.all_compatible:
        return chosen
    found = candidates(database, first=chosen[0]["name"] if chosen else None)
    if chosen:
        group = next(c.group for c in found["candidates"] if c.name == chosen[0]["name"])
        if group is None:
            raise ValidationError(
                f"config {chosen[0]['name']!r} has no stored out-of-fold predictions; retrain it", field="from"
            )
    else:
        groups: dict[str, list[str]] = {}
        for cand in found["candidates"]:
            if cand.selectable and cand.group:
                groups.setdefault(cand.group, []).append(cand.name)
        if not groups:
            raise ValidationError(
                "no two trained configs share task, target, training data and folds; train more "
                "configs (e.g. a sweep) first",
                field="all_compatible",
            )
        if len(groups) > 1:
            listing = "; ".join(f"{found['groups'][g]}: {', '.join(n)}" for g, n in groups.items())
            raise ValidationError(
                f"trained configs form {len(groups)} compatible groups; name one config with "
                f"from to pick a group ({listing})",
                field="from",
            )
        group = next(iter(groups))
    names = [c["name"] for c in chosen]
    extra = [c.config for c in found["candidates"] if c.group == group and c.name not in names]
    return chosen + extra


def load_library(
    database: Database,
    configs: list[dict[str, Any]],
    explicit: set[str],
    *,
    store: ArtifactStore,
    cache: ModelCache | None,
    progress: Progress,
) -> tuple[list[BaseModelResult], list[dict[str, str]]]:
    """OOF predictions of every candidate: named ones like any base model (retrained if they must be);
    the group's others only from the cache or verified artifacts (skipped, with the reason, otherwise)."""
    named = [c for c in configs if c["name"] in explicit]
    results = (
        load_base_models(
            database,
            [c["_id"] for c in named],
            store=store,
            cache=cache,
            need_oof=True,
            progress=scaled(progress, 0.0, 0.5),
            load_model_object=False,
        )
        if named
        else []
    )
    skipped: list[dict[str, str]] = []
    others = [c for c in configs if c["name"] not in explicit]
    for i, config in enumerate(others):
        t0 = time.perf_counter()
        try:
            model, source, oof = fast_load(
                database.settings, config, store=store, cache=cache, need_oof=True, load_model_object=False
            )
        except ArtifactError as exc:
            skipped.append(
                {"name": config["name"], "reason": exc.reason or "artifact_error", "message": exc.message}
            )
            continue
        results.append(
            BaseModelResult(
                config["name"],
                config["_id"],
                config["run_id"],
                model,
                source,
                time.perf_counter() - t0,
                config=config,
                oof=oof,
            )
        )
        progress(0.5 + 0.5 * (i + 1) / len(others), f"{config['name']}: {source}")
    return results, skipped


def stored_fold_ids(result: BaseModelResult, y_train: np.ndarray) -> np.ndarray:
    """The fold of every training row (``-1``: no fold validated it): stored with the run, else rebuilt
    from its fold spec (runs of random splits written before fold ids were stored)."""
    fold_ids = result.oof.get("fold_ids") if result.oof is not None else None
    if fold_ids is not None and len(fold_ids) == len(y_train):
        return np.asarray(fold_ids)
    out = np.full(len(y_train), -1, dtype=np.int64)
    splitter = make_splitter(config_fold_spec(result.config))
    for k, (_, rows) in enumerate(splitter.split(np.zeros((len(y_train), 1)), y_train)):
        out[rows] = k
    return out


# ------------------------------------------------------------ selection


@dataclass
class Library:
    """The candidates' stored predictions, aligned: OOF for the training rows, and for the held-out test rows."""

    task: str
    results: list[BaseModelResult]
    P: np.ndarray  # (m, n_train[, k])
    T: np.ndarray  # (m, n_test[, k])
    y: np.ndarray  # training targets (class positions for classification)
    y_test: np.ndarray  # held-out targets (class positions)
    y_test_raw: np.ndarray
    fold_ids: np.ndarray
    classes: np.ndarray | None
    forward: bool = False  # a time split: nest in time order (choose on earlier folds, score later ones)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.results]


def make_library(results: list[BaseModelResult], settings: Any = None) -> Library:
    check_same_split(results)
    task = results[0].config["task"]
    first = results[0].oof
    data, _ = training_targets(results, False, settings)
    train_idx, test_idx = first["train_idx"], first["test_idx"]
    y_train_raw, y_test_raw = data.y[train_idx], data.y[test_idx]
    classes = np.asarray(first["classes"]) if task == "classification" else None
    P = np.stack([np.asarray(r.oof["oof"], dtype=float) for r in results])
    T = np.stack([np.asarray(r.oof["test_pred"], dtype=float) for r in results])
    if task == "classification":
        y, y_test = encode_labels(y_train_raw, classes), encode_labels(y_test_raw, classes)
    else:
        y, y_test = np.asarray(y_train_raw, dtype=float), np.asarray(y_test_raw, dtype=float)
    fold_ids = stored_fold_ids(results[0], y_train_raw)
    rows = rows_with_oof([r.oof for r in results])
    if rows is not None:  # a walk-forward split: only the rows every candidate has a prediction for
        P, y, fold_ids = P[:, rows], y[rows], fold_ids[rows]
    forward = config_fold_spec(results[0].config).get("split") == "time"
    return Library(task, results, P, T, y, y_test, y_test_raw, fold_ids, classes, forward)


def _round(x: float) -> float:
    return float(round(x, 6))


def selection_report(
    lib: Library, metric: str, size: int, method: str, meta_model: str, stack_top: int, random_state: int | None
) -> dict[str, Any]:
    """Greedy (and/or stacked) selection with honest nested scores; which one is kept and why."""
    t0 = time.perf_counter()
    single = single_scores(metric, lib.P, lib.y)
    best = top_candidates(single, metric, 1)[0]
    report: dict[str, Any] = {
        "metric": metric,
        "size": size,
        "method_requested": method,
        "rows": int(len(lib.y)),
        "folds": int(len(np.unique(lib.fold_ids))),
        "candidates": sorted(
            (
                {"name": n, "run_id": r.run_id, "model_type": r.config.get("model_type"), "score": _round(s)}
                for n, r, s in zip(lib.names, lib.results, single)
            ),
            key=lambda c: c["score"],
            reverse=better(metric, 1.0, 0.0),
        ),
        "best_single": {"name": lib.names[best], "score": _round(single[best])},
    }
    honest: dict[str, Any] = {}
    if method in ("greedy", "both"):
        nested = nested_greedy(lib.P, lib.y, lib.fold_ids, metric, size, forward=lib.forward)
        selected, alone = nested.score(metric, lib.y), nested.score(metric, lib.y, single=True)
        sel = greedy_select(lib.P, lib.y, metric, size)
        # Selection can overfit a small library or few rows; when taking the best single candidate scores
        # better, honestly, than selecting, keep that candidate alone (the selection's first step).
        single_wins = better(metric, alone, selected)
        if single_wins:
            sel = sel.first_step_only()
        honest["greedy"] = {
            "score": _round(alone if single_wins else selected),
            "selection_score": _round(selected),
            "single_score": _round(alone),
            "kept": "best single" if single_wins else "selection",
            "per_fold": [{k: v for k, v in f.items() if k != "weights"} for f in nested.per_fold],
        }
        report["greedy"] = _greedy_summary(lib, sel)
    if method in ("stack", "both"):
        top = top_candidates(single, metric, min(stack_top, len(lib.results)))
        nested = nested_stack(
            lib.task, meta_model, lib.P[top], lib.y, lib.fold_ids, metric, random_state, forward=lib.forward
        )
        honest["stack"] = {
            "score": _round(nested.score(metric, lib.y)),
            "meta_model": meta_model,
            "bases": [lib.names[i] for i in top],
            "per_fold": nested.per_fold,
        }
    kept = method
    if method == "both":
        kept = "stack" if better(metric, honest["stack"]["score"], honest["greedy"]["score"]) else "greedy"
    report["method"] = kept
    how = Choice(method, metric, size, lib.task, meta_model, stack_top, random_state, lib.forward)
    whole = doubly_nested(lib.P, lib.y, lib.fold_ids, how)
    scored = whole.scored if whole.scored is not None else np.ones(len(lib.y), dtype=bool)
    report["honest"] = {
        "metric": metric,
        "rows": int(scored.sum()),
        "ensemble": _round(whole.score(metric, lib.y)),
        "best_single": _round(score(metric, lib.y[scored], lib.P[best][scored])),
        "best_single_name": lib.names[best],
        "nesting": "forward (time order)" if lib.forward else "shuffled folds",
        "per_fold": whole.per_fold,
        "by_method": honest,
        "note": "ensemble: the whole procedure, doubly nested: in each training fold, every choice (selecting or "
        "keeping the best single candidate, greedy or stacking) was made on the other folds only"
        + (" (the earlier ones: time order)" if lib.forward else "")
        + ", then scored on this fold; by_method: each way on its own, nested once (what decides the stored "
        "ensemble); best single: the best candidate's out-of-fold score on the same rows",
    }
    report["kept"] = kept_line(report)
    report["seconds"] = round(time.perf_counter() - t0, 4)
    return report


def kept_line(report: dict[str, Any]) -> str:
    """One sentence saying which ensemble the selection kept and why: what the CLI prints first, the API
    returns as ``selection.kept`` and the page shows above the tables."""
    honest = report["honest"]
    by_method = honest.get("by_method") or {}
    metric = honest["metric"]
    scores = f"honest {metric} {honest['ensemble']:.4f} vs best single {honest['best_single']:.4f} ({honest['best_single_name']})"
    greedy, stack = by_method.get("greedy") or {}, by_method.get("stack") or {}
    if report["method"] == "stack":
        why = (
            f"stacking scored {stack['score']:.4f}, greedy selection {greedy['score']:.4f}"
            if greedy
            else "stacking was asked for"
        )
        return f"kept: a stack of {len(stack.get('bases') or [])} models ({stack.get('meta_model')}) because {why}; {scores}"
    if greedy.get("kept") == "best single":
        chosen = (report.get("greedy") or {}).get("chosen") or [report["best_single"]["name"]]
        return (
            f"kept: {chosen[0]} alone (step 1 of the selection) because taking the best single candidate scored "
            f"{greedy['single_score']:.4f} honestly and selecting {greedy['selection_score']:.4f}: the later steps "
            f"fit these rows better only in hindsight; {scores}"
        )
    summary = report.get("greedy") or {}
    count = len(summary.get("chosen") or [])
    versus = f"; greedy scored {greedy['score']:.4f}, stacking {stack['score']:.4f}" if stack else ""
    return (
        f"kept: the greedy selection of {count} model{'s' if count != 1 else ''} (its best step, "
        f"{summary.get('best_step')}) because it scored {greedy.get('score', honest['ensemble']):.4f} honestly, "
        f"the best single candidate alone {greedy.get('single_score', honest['best_single']):.4f}{versus}; {scores}"
    )


def _greedy_summary(lib: Library, sel: Selection) -> dict[str, Any]:
    return {
        "best_step": sel.best_step,
        "score": _round(sel.score),
        "steps": [
            {"step": s["step"], "added": lib.names[s["index"]], "score": _round(s["score"])} for s in sel.steps
        ],
        "weights": {lib.names[i]: float(sel.weights[i]) for i in sel.chosen},
        "counts": {lib.names[i]: int(sel.counts[i]) for i in sel.chosen},
        "chosen": [lib.names[i] for i in sel.chosen],
    }


def holdout_report(lib: Library, metric: str, pred: np.ndarray) -> dict[str, Any]:
    """The ensemble's score on the run's held-out test rows beside the best candidate's there."""
    tests = single_scores(metric, lib.T, lib.y_test)
    best = top_candidates(tests, metric, 1)[0]
    picked = top_candidates(single_scores(metric, lib.P, lib.y), metric, 1)[0]
    return {
        "metric": metric,
        "rows": int(len(lib.y_test)),
        "ensemble": _round(score(metric, lib.y_test, pred)),
        "best_single": _round(tests[best]),
        "best_single_name": lib.names[best],
        "picked_single": _round(tests[picked]),
        "picked_single_name": lib.names[picked],
        "note": "best single: the best candidate on these rows; picked single: the candidate with the best "
        "out-of-fold score, on these rows",
    }


# ------------------------------------------------------------ storing


def weighted_record(name: str, description: str, lib: Library, report: dict[str, Any]) -> tuple[dict, dict]:
    """The document and spec of a weighted ensemble (the greedy choice); nothing written yet."""
    greedy = report["greedy"]
    order = [lib.names.index(n) for n in greedy["chosen"]]
    weights = np.array([greedy["weights"][lib.names[i]] for i in order])
    task = lib.task
    pred = weighted_average(lib.T[order], weights)
    metrics = stored_prediction_metrics(task, lib.y_test_raw, pred, lib.classes)
    base_metrics = [stored_prediction_metrics(task, lib.y_test_raw, lib.T[i], lib.classes) for i in order]
    report["holdout"] = holdout_report(lib, report["metric"], pred)
    chosen = [lib.results[i] for i in order]
    run_id = new_run_id()
    class_list = None if lib.classes is None else [c.item() if hasattr(c, "item") else c for c in lib.classes]
    method_used = "predict_proba" if task == "classification" else "predict"
    config = chosen[0].config
    spec = {
        "name": name,
        "run_id": run_id,
        "kind": WEIGHTED_KIND,
        "task": task,
        "target": config["target"],
        "base_names": [r.name for r in chosen],
        "base_run_ids": [r.run_id for r in chosen],
        "weights": weights.tolist(),
        "classes": class_list,
    }
    record = {
        "name": name,
        "run_id": run_id,
        "kind": WEIGHTED_KIND,
        "description": description,
        "task": task,
        "target": config["target"],
        "base_config_ids": [r.config_id for r in chosen],
        "base_names": [r.name for r in chosen],
        "base_run_ids": [r.run_id for r in chosen],
        "base_models": [
            {**r.to_record(), "metrics": m, "weight": float(w)} for r, m, w in zip(chosen, base_metrics, weights)
        ],
        "weights": weights.tolist(),
        "meta_model": "weighted_average",
        "meta_params": {},
        "options": {"passthrough": False, "stack_method": "auto", "stack_method_used": method_used},
        "passthrough_features": None,
        "classes": class_list,
        "data_fingerprint": config.get("data_fingerprint"),
        "fold_spec": config_fold_spec(config),
        "n_train": int(len(lib.y)),
        "n_test": int(len(lib.y_test)),
        "metrics": metrics,
        "base_metrics": {r.name: m for r, m in zip(chosen, base_metrics)},
        "trained": [r.name for r in chosen if r.source == "trained"],  # first trainings
        "retrained": [r.name for r in chosen if r.source == "retrained"],  # replaced an earlier run
        "selection": report,
        "versions": environment_versions(),
        "status": "ready",
    }
    return record, spec


def store_weighted(
    database: Database,
    store: ArtifactStore,
    record: dict[str, Any],
    spec: dict[str, Any],
    started: float,
    load_s: float = 0.0,
    new_version: bool = False,
) -> dict[str, Any]:
    """Write the spec file, then insert the document (the commit point; with ``new_version`` as the
    name's next version); on failure nothing remains."""
    info: ArtifactInfo = store.write(artifact_name(record["run_id"], SPEC_KIND), json_writer(to_json(spec)))
    try:
        total = time.perf_counter() - started
        record = {
            **record,
            "artifacts": {SPEC_KIND: info.to_dict()},
            "checksums": {SPEC_KIND: info.sha256},
            "durations": {
                "total_s": round(total, 4),
                "load_s": round(load_s, 4),
                "selection_s": record["selection"]["seconds"],
                "meta_fit_s": record["selection"]["seconds"],
            },
            "seconds": round(total, 4),
            "created_at": now(),
        }
        commit_point({"run_id": record["run_id"]})  # inside a job: not cancelled, and now it cannot be
        EnsembleStore(database).insert(record, new_version=new_version)
    except BaseException:
        remove_files(store, [info])
        raise
    return record


def suggest_ensemble(
    database: Database,
    name: str,
    from_configs: list[Any] | None = None,
    *,
    all_compatible: bool = False,
    metric: str | None = None,
    size: int | None = None,
    method: str = "greedy",
    meta_model: str | None = None,
    stack_top: int | None = None,
    description: str = "",
    new_version: bool = False,
    progress: Progress = no_progress,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
) -> dict[str, Any]:
    """Choose an ensemble from the candidates' stored OOF predictions and store it; return its document.

    ``new_version``: when ``name`` exists, store the suggestion as its next version (refused otherwise).

    The document's ``selection`` holds the candidates and their scores, the greedy steps (what was
    added, the score after each step), the weights, the honest nested score beside the best single
    candidate's on the same rows, and the held-out test-row comparison.
    """
    started = time.perf_counter()
    request = check_suggest(
        name, from_configs, all_compatible, metric, size, method, meta_model, stack_top, description, new_version
    )
    store = store or get_store(database.settings)
    EnsembleStore(database).refuse_taken(request.name, new_version=request.new_version)
    progress(0.0, "finding candidates")
    configs = candidate_configs(database, request)
    task = configs[0]["task"]
    metric_ = check_metric(task, request.metric)
    meta = request.meta_model or DEFAULT_META[task]
    problems = check_options(task, meta, "auto", False)
    if problems:
        raise ValidationError(problems[0]["message"], field="meta_model")
    t_load = time.perf_counter()
    results, skipped = load_library(
        database,
        configs,
        {c["name"] for c in configs[: len(request.from_configs)]},
        store=store,
        cache=cache,
        progress=scaled(progress, 0.02, 0.5),
    )
    if len(results) < 2:
        raise ValidationError(
            f"a suggestion needs at least two candidates with usable out-of-fold predictions; "
            f"found {len(results)}" + (f" (skipped: {', '.join(s['name'] for s in skipped)})" if skipped else ""),
            field="from",
        )
    progress(0.5, f"reading targets; {len(results)} candidates")
    lib = make_library(results, database.settings)
    load_s = time.perf_counter() - t_load
    progress(0.6, f"selecting ({request.method}, {metric_}, {request.size} steps)")
    spec_ = config_fold_spec(configs[0])
    report = selection_report(
        lib, metric_, request.size, request.method, meta, request.stack_top, int(spec_["random_state"])
    )
    report["skipped"] = skipped
    progress(0.9, f"keeping {report['method']}; saving")
    if report["method"] == "greedy":
        record, spec = weighted_record(request.name, request.description, lib, report)
        record = store_weighted(database, store, record, spec, started, load_s, new_version=request.new_version)
    else:
        bases = report["honest"]["by_method"]["stack"]["bases"]
        record = create_ensemble(
            database,
            request.name,
            bases,
            meta,
            description=request.description,
            new_version=request.new_version,
            store=store,
            cache=cache,
        )
        idx = [lib.names.index(b) for b in bases]
        report["holdout"] = _stack_holdout(lib, metric_, record, idx)
        EnsembleStore(database).set_fields(record["_id"], {"selection": report})
        record["selection"] = report
    progress(1.0, "done")
    log.info(
        "suggested ensemble %s (%s, %s): honest %s %.4f vs best single %.4f",
        request.name,
        report["method"],
        ", ".join(record["base_names"]),
        metric_,
        report["honest"]["ensemble"],
        report["honest"]["best_single"],
    )
    return record


def _stack_holdout(lib: Library, metric: str, record: dict[str, Any], idx: list[int]) -> dict[str, Any]:
    """Held-out comparison for a stacked choice, from the meta-model refit on all OOF rows."""
    n_classes = 0 if lib.classes is None else len(lib.classes)
    pred = stack_predict(
        lib.task,
        record["meta_model"],
        lib.P[idx],
        lib.y,
        lib.T[idx],
        n_classes,
        int(record["fold_spec"]["random_state"]),
    )
    return holdout_report(lib, metric, pred)


# ------------------------------------------------------------ as a job


def suggestion_summary(record: dict[str, Any]) -> dict[str, Any]:
    sel = record.get("selection") or {}
    return (
        to_json(
            {
                "name": record["name"],
                "kind": record.get("kind"),
                "run_id": record.get("run_id"),
                "base_names": record.get("base_names"),
                "weights": record.get("weights"),
                "method": sel.get("method"),
                "kept": sel.get("kept"),
                "honest": {k: v for k, v in (sel.get("honest") or {}).items() if k != "by_method"},
                "holdout": sel.get("holdout"),
                "metrics": record.get("metrics"),
            }
        )
        or {}
    )


def body_request(body: dict[str, Any]) -> SuggestRequest:
    unknown = sorted(set(body) - set(SUGGEST_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(SUGGEST_FIELDS)}", field=unknown[0]
        )
    return check_suggest(
        body.get("name"),
        body.get("from"),
        body.get("all_compatible", False),
        body.get("metric"),
        body.get("size"),
        body.get("method", "greedy"),
        body.get("meta_model"),
        body.get("stack_top"),
        body.get("description", ""),
        body.get("new_version", False),
    )


def submit_suggestion(
    database: Database,
    body: dict[str, Any],
    *,
    runner: jobs.JobRunner | None = None,
    requested_by: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Check the request and the candidates up front, then run :func:`suggest_ensemble` as a job
    keyed like an ensemble creation (``ensemble:<name>``), so the ensemble's page follows it."""
    request = body_request(body)
    EnsembleStore(database).refuse_taken(request.name, new_version=request.new_version)
    configs = candidate_configs(database, request)
    check_metric(configs[0]["task"], request.metric)
    if len(configs) < 2:
        raise ValidationError("a suggestion needs at least two compatible trained candidates", field="from")

    work = RemoteWork(
        run_suggestion,
        {
            "name": request.name,
            "from_configs": [str(c) for c in request.from_configs],
            "all_compatible": request.all_compatible,
            "metric": request.metric,
            "size": request.size,
            "method": request.method,
            "meta_model": request.meta_model,
            "stack_top": request.stack_top,
            "description": request.description,
            "new_version": request.new_version,
        },
        database=database,
    )

    params = {
        "name": request.name,
        "from": [str(c) for c in request.from_configs],
        "all_compatible": request.all_compatible,
        "method": request.method,
        "size": request.size,
        "metric": request.metric,
        "new_version": request.new_version,
    }
    return jobs.submit(
        database,
        runner,
        SUGGEST_KIND,
        ensemble_key(request.name),
        work,
        params=params,
        requested_by=requested_by,
        bounded=True,
    )


def run_suggestion(database: Database, progress: Progress, **request: Any) -> dict[str, Any]:
    """A suggestion job's work (in a stoppable child, or on a Dask worker with its own settings):
    :func:`suggest_ensemble` with the checked request's fields."""
    name = request.pop("name")
    from_configs = request.pop("from_configs")
    record = suggest_ensemble(database, name, from_configs, progress=progress, **request)
    return suggestion_summary(record)


__all__ = ["DEFAULT_SIZE", "METHODS", "SUGGEST_FIELDS", "check_suggest", "submit_suggestion", "suggest_ensemble"]
