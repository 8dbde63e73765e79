"""Which configs can be stacked together, and the checked request to build an ensemble from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from bson import ObjectId

from models.ensembles.stacking import META_MODELS, check_options, default_meta_model, default_meta_model_note
from models.errors import DataError, ValidationError
from models.splits import fold_spec
from models.store.schema import NAME_RE
from models.training.data import load_training_data

log = logging.getLogger(__name__)


class IncompatibleBaseModelsError(ValidationError):
    """The base models cannot be stacked together (task, target, data or folds differ)."""

    code = "incompatible_base_models"


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


def _describe_spec(spec: dict[str, Any]) -> str:
    h = spec.get("holdout") or {}
    kind = spec.get("split", "random")
    if kind == "time":
        how = f"TimeSeriesSplit(n_splits={spec.get('n_splits')}, gap={spec.get('gap', 0)}) on {spec.get('time_column')!r}"
    elif kind == "group":
        how = (
            f"{spec.get('method')}(n_splits={spec.get('n_splits')}, random_state={spec.get('random_state')}) "
            f"on groups {spec.get('group_column')!r}"
        )
    else:
        how = f"{spec.get('method')}(n_splits={spec.get('n_splits')}, random_state={spec.get('random_state')})"
    return f"split {kind}: {how}, test_size={h.get('test_size')}"


def config_fold_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The fold spec of the config's artifacts when trained, else the one training would use."""
    return config.get("fold_spec") or fold_spec(config)


def config_fingerprint(config: dict[str, Any], settings: Any = None, *, strict: bool = False) -> str | None:
    """The data fingerprint of the config's run, or of its CSV as it is now; None if unreadable
    (``strict``: the :class:`DataError` saying why)."""
    if config.get("data_fingerprint"):
        return config["data_fingerprint"]
    try:
        return load_training_data(config, settings).fingerprint(config["target"])
    except DataError:
        if strict:
            raise
        return None
    except KeyError:
        if strict:
            raise DataError(
                f"config {config.get('name')!r} lacks a field training needs", field="config"
            ) from None
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
            parts = [
                f"{', '.join(names)} {'use' if len(names) > 1 else 'uses'} {show(key)}"
                for key, names in groups.items()
            ]
            problems.append({"field": "base_models", "message": f"{label} differs: {'; '.join(parts)}"})

    differ("task", [c.get("task") for c in configs])
    differ("target", [c.get("target") for c in configs], lambda v: repr(v))
    specs = [config_fold_spec(c) for c in configs]
    described = [_describe_spec(s) for s in specs]
    differ("fold spec", described)
    csvs = {c["name"]: c.get("training_csv") for c in configs}
    known = [(c, f) for c, f in zip(configs, fingerprints) if f is not None]
    if len({(sp.get("split", "random"), sp.get("time_column"), sp.get("group_column")) for sp in specs}) > 1:
        return problems  # the split's column is part of the fingerprint: the data differs with it, said above
    if len({f for _, f in known}) > 1 and len({csvs[c["name"]] for c, _ in known}) == 1:
        # one file, different rows: naming the path twice would say nothing
        groups = _groups([c for c, _ in known], [f for _, f in known])
        parts = [", ".join(names) for names in groups.values()]
        problems.append(
            {
                "field": "base_models",
                "message": (
                    f"training data differs: all read {csvs[known[0][0]['name']]}, but different rows were dropped for "
                    f"missing values (their features differ), so {' | '.join(parts)} were trained on different rows"
                ),
            }
        )
        return problems

    def show_fp(fp: str) -> str:
        names = [c["name"] for c, f in zip(configs, fingerprints) if f == fp]
        return f"data {fp[:12]}... ({csvs[names[0]]})"

    differ("training data", fingerprints, show_fp)
    return problems


def check_compatible(
    configs: list[dict[str, Any]], fingerprints: list[str | None], request: EnsembleRequest | None = None
) -> None:
    """IncompatibleBaseModelsError listing every difference (and option that does not fit the task)."""
    problems = compatibility_problems(configs, fingerprints)
    tasks = {c.get("task") for c in configs}
    if request is not None and request.meta_model is not None and len(tasks) == 1:
        problems += check_options(
            tasks.pop(), request.meta_model, request.stack_method, request.passthrough, request.meta_params or None
        )
    if problems:
        raise IncompatibleBaseModelsError(
            "base models cannot be stacked together: " + " | ".join(p["message"] for p in problems),
            errors=problems,
        )


# --------------------------------------------------------------- options


@dataclass
class EnsembleRequest:
    """Validated parameters of an ensemble creation."""

    name: str
    base_models: list[Any]
    meta_model: str | None  # None: not given; the task's default (see with_default_meta_model)
    passthrough: bool
    stack_method: str
    meta_params: dict[str, Any]
    description: str
    meta_model_default: str | None = None  # when the default was used: which and why (for the answer)


def with_default_meta_model(request: EnsembleRequest, configs: list[dict[str, Any]]) -> EnsembleRequest:
    """The request with the base models' task's default meta-model when none was given (scikit-learn's:
    logistic regression for classification, RidgeCV for regression), and a note saying so; unchanged
    when one was given or the bases' tasks differ (:func:`check_compatible` refuses those)."""
    tasks = {c.get("task") for c in configs}
    if request.meta_model is not None or len(tasks) != 1:
        return request
    task = str(tasks.pop())
    if task not in META_MODELS:
        return request
    return replace(request, meta_model=default_meta_model(task), meta_model_default=default_meta_model_note(task))


def _meta_model_choices() -> str:
    """Every meta-model name, those of one task only marked with it (for the unknown-name refusal)."""
    names = sorted({m for models in META_MODELS.values() for m in models})
    only = {m: [t for t in META_MODELS if m in META_MODELS[t]] for m in names}
    return ", ".join(m if len(only[m]) == len(META_MODELS) else f"{m} ({only[m][0]})" for m in names)


def check_request(
    name: Any,
    base_models: Any,
    meta_model: Any,
    passthrough: Any,
    stack_method: Any,
    meta_params: Any = None,
    description: Any = "",
) -> EnsembleRequest:
    """Check every parameter that can be checked without the database; all problems at once."""
    errors: list[dict[str, str]] = []
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(
            {
                "field": "name",
                "message": f"name must be 1-100 characters: letters, digits, '_', '-' or "
                f"'.', starting with a letter or digit; got {name!r}",
            }
        )
    if isinstance(base_models, (list, tuple)) and len(base_models) < 2:  # none or one: the same answer
        errors.append({"field": "base_models", "message": "an ensemble needs at least two base models"})
    else:
        try:
            base_models = check_names(base_models)
        except ValidationError as exc:
            errors.extend(exc.errors)
    # meta_model validity depends on the task; checked for any task here, per task once configs are known.
    # None or "": not given, the bases' task's default (with_default_meta_model)
    if meta_model == "":
        meta_model = None
    if meta_model is not None and (
        not isinstance(meta_model, str)
        or not any(not check_options(t, meta_model, "auto", False) for t in ("classification", "regression"))
    ):
        errors.append(
            {
                "field": "meta_model",
                "message": f"unknown meta_model {meta_model!r}; choose from: {_meta_model_choices()}",
            }
        )
    for problem in check_options("classification", "logistic_regression", stack_method, passthrough):
        errors.append(problem)
    if meta_params is not None and not isinstance(meta_params, dict):
        errors.append(
            {"field": "meta_params", "message": "meta_params must be a mapping of parameter names to values"}
        )
    if not isinstance(description, str):
        errors.append({"field": "description", "message": "description must be text"})
    if errors:
        raise ValidationError(
            "invalid ensemble request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        )
    return EnsembleRequest(
        name, base_models, meta_model, passthrough, stack_method, dict(meta_params or {}), description
    )


# --------------------------------------------------------------- building
