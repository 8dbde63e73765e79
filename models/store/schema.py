"""The model config document: its typed schema and validation.

A config is what to train. Users keep their own extra fields in these
documents, so unknown fields are kept, never dropped. Fields written by
training (``TRAINING_FIELDS``) cannot be set by hand through an update.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import bson
from bson.errors import InvalidDocument
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from models.errors import ValidationError
from models.estimators import REGISTRY, hyperparameter_errors, model_types

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Written by training: the seed system's five names, then ours.
SEED_ARTIFACT_FIELDS = (
    "run_id",
    "model_artifact_path",
    "scaler_artifact_path",
    "features_path",
    "artifacts_saved_at",
)
TRAINING_FIELDS = (
    *SEED_ARTIFACT_FIELDS,
    "artifacts",
    "checksums",
    "metrics",
    "status",
    "version",
    "error",
    "trained_at",
    "data_fingerprint",
    "fold_spec",
    "runs_count",
    "last_job_id",
    "type_hints",
    "versions",
    "training_started_at",
    "training_owner",
)
SERVER_FIELDS = ("_id", "created_at", "updated_at", "rev")


def service_field_errors(keys: Any) -> list[dict[str, str]]:
    """``{"field", "message"}`` for each of ``keys`` that only training or the server writes."""
    return [
        {"field": str(k), "message": f"field {k!r} is written by the service and cannot be set by hand"}
        for k in keys
        if k in TRAINING_FIELDS or k in SERVER_FIELDS
    ]


def refuse_service_fields(keys: Any) -> None:
    """ValidationError naming the first of ``keys`` that only training or the server writes (and all of them)."""
    errors = service_field_errors(keys)
    if errors:
        raise ValidationError(
            errors[0]["message"]
            if len(errors) == 1
            else "fields written by the service cannot be set by hand: " + ", ".join(e["field"] for e in errors),
            field=errors[0]["field"],
            errors=errors,
        )


INPUT_FIELDS = (
    "name",
    "task",
    "model_type",
    "hyperparameters",
    "features",
    "target",
    "training_csv",
    "scaler",
    "calibration",
    "cv_folds",
    "random_state",
    "test_size",
    "description",
    "tags",
    "split",
    "time_column",
    "gap",
    "group_column",
    "feature_types",
    "imputation",
)
SPLITS = ("random", "time", "group")
SPLIT_FIELDS = ("split", "time_column", "gap", "group_column")
# Names people use for a validation scheme that this schema spells otherwise: kept as unknown extras they
# would be silently ignored, so they are refused with the field to use.
MISLEADING_FIELDS = {
    "shuffle": "split",
    "cv": "split",
    "fold_method": "split",
    "split_kind": "split",
    "split_method": "split",
    "split_type": "split",
    "cv_method": "split",
    "cv_strategy": "split",
    "validation": "split",
    "time_col": "time_column",
    "date_column": "time_column",
    "timestamp_column": "time_column",
    "order_by": "time_column",
    "groups": "group_column",
    "group": "group_column",
    "group_col": "group_column",
    "n_folds": "cv_folds",
    "column_types": "feature_types",
    "feature_type": "feature_types",
    "dtypes": "feature_types",
    "types": "feature_types",
    "impute": "imputation",
    "imputer": "imputation",
    "missing_values": "imputation",
    "folds": "cv_folds",
}

CONFIG_STATUSES = ("new", "training", "trained", "failed")


class ModelConfig(BaseModel):
    """What to train. Validated on every write; ``extra`` fields are kept."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    name: str = Field(description="unique name; letters, digits, '_', '-', '.'")
    task: Literal["classification", "regression"]
    model_type: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    features: list[str]
    target: str
    training_csv: str
    scaler: Literal["standard", "minmax", "robust", "none"] = "standard"
    calibration: Literal["none", "sigmoid", "isotonic"] = "none"
    cv_folds: int = Field(default=5, ge=2, le=20)
    random_state: int = Field(default=42, ge=0, le=2**32 - 1)
    test_size: float = Field(default=0.2, gt=0.0, le=0.5)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    split: Literal["random", "time", "group"] = "random"
    time_column: str | None = None
    gap: int = Field(default=0, ge=0, le=1_000_000)
    group_column: str | None = None
    feature_types: dict[str, Literal["numeric", "categorical", "text"]] | None = None
    imputation: dict[str, str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                "must be 1-100 characters: letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        return v

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one column")
        if any(not f for f in v):
            raise ValueError("column names must not be empty")
        dupes = sorted({f for f in v if v.count(f) > 1})
        if dupes:
            raise ValueError(f"duplicate columns: {', '.join(dupes)}")
        return v

    @field_validator("target", "training_csv")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("cv_folds", "random_state", "gap", mode="before")
    @classmethod
    def _strict_int(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError("must be a whole number")
        return v

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> ModelConfig:
        problems: list[tuple[str, str]] = []
        if self.model_type not in REGISTRY[self.task]:
            problems.append(
                (
                    "model_type",
                    f"unknown model_type {self.model_type!r} for {self.task}; "
                    f"choose from: {', '.join(model_types(self.task))}",
                )
            )
        else:
            for param, msg in hyperparameter_errors(
                self.task, self.model_type, self.hyperparameters, (info.context or {}).get("limits")
            ):
                problems.append((f"hyperparameters.{param}", msg))
        if self.target in self.features:
            problems.append(("target", f"target {self.target!r} is also listed in features"))
        if self.task == "regression" and self.calibration != "none":
            problems.append(("calibration", "calibration applies to classification only; use 'none'"))
        problems += self._split_problems()
        problems += self._type_problems()
        if problems:
            raise _CrossFieldError(problems)
        return self

    def _type_problems(self) -> list[tuple[str, str]]:
        from models.preprocess import CATEGORICAL_IMPUTATIONS, NATIVE_MISSING, NUMERIC_IMPUTATIONS

        problems: list[tuple[str, str]] = []
        for column in self.feature_types or {}:
            if column not in self.features:
                problems.append(
                    (
                        f"feature_types.{column}",
                        f"feature_types names {column!r}, which is not one of the features",
                    )
                )
        allowed = {"numeric": NUMERIC_IMPUTATIONS, "categorical": CATEGORICAL_IMPUTATIONS}
        for kind, strategy in (self.imputation or {}).items():
            if kind not in allowed:
                problems.append(
                    (f"imputation.{kind}", f"imputation applies to numeric and categorical columns, not {kind!r}")
                )
            elif strategy not in allowed[kind]:
                problems.append(
                    (
                        f"imputation.{kind}",
                        f"imputation.{kind} {strategy!r} is not one of: {', '.join(allowed[kind])}",
                    )
                )
            elif kind == "numeric" and strategy == "none" and self.model_type not in NATIVE_MISSING:
                problems.append(
                    (
                        "imputation.numeric",
                        f"imputation.numeric 'none' gives the model the blanks as they are; {self.model_type} "
                        f"cannot take them (only {', '.join(NATIVE_MISSING)} can): use median, mean or most_frequent",
                    )
                )
        return problems

    def _split_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.split == "time" and not self.time_column:
            problems.append(("time_column", "split 'time' needs time_column: the column that orders the rows"))
        if self.split == "group" and not self.group_column:
            problems.append(
                ("group_column", "split 'group' needs group_column: the column naming each row's group")
            )
        if self.split != "time" and self.time_column:
            problems.append(
                (
                    "time_column",
                    f"time_column applies to split 'time' only (this config's split is {self.split!r})",
                )
            )
        if self.split != "time" and self.gap:
            problems.append(("gap", f"gap applies to split 'time' only (this config's split is {self.split!r})"))
        if self.split != "group" and self.group_column:
            problems.append(
                (
                    "group_column",
                    f"group_column applies to split 'group' only (this config's split is {self.split!r})",
                )
            )
        for field in ("time_column", "group_column"):
            if getattr(self, field) is not None and getattr(self, field) == self.target:
                problems.append((field, f"{field} {self.target!r} is the target"))
        return problems


class _CrossFieldError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _oversized_int(value: Any, where: str = "") -> tuple[str, int] | None:
    """The first integer (and where it is) that BSON cannot store, in a JSON-like value; None if none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (where or "config", value) if not INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _oversized_int(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _nul_key(value: Any, where: str = "") -> str | None:
    """Where a key with a NUL character (which BSON cannot store) is, in a JSON-like value; None if none."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key!r}" if where else repr(key)
            if isinstance(key, str) and "\x00" in key:
                return here
            found = _nul_key(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _nul_key(item, f"{where}.{i}" if where else str(i))
            if found is not None:
                return found
    return None


def validate_config(doc: Any, *, limits: dict[str, int] | None = None) -> dict[str, Any]:
    """Validate a config document and return it normalised (defaults filled, extras kept).

    ``limits``: the upper bounds of size-like hyperparameters (default: the HYPERPARAMETER_LIMITS setting).

    Training-written and server fields are passed through untouched. Raises
    :class:`ValidationError` listing every bad field.
    """
    if not isinstance(doc, dict):
        raise ValidationError(f"a config must be a JSON object, got {type(doc).__name__}", field="")
    bad_keys = [k for k in doc if not isinstance(k, str) or k.startswith("$") or "." in k or not k or "\x00" in k]
    if bad_keys:
        raise ValidationError(
            f"invalid field names: {', '.join(map(repr, bad_keys))} "
            "(field names may not be empty, start with '$' or contain '.' or a NUL character)",
            field=str(bad_keys[0]),
        )
    nul = _nul_key(doc)
    if nul is not None:
        raise ValidationError(f"{nul}: field names may not contain a NUL character", field=nul)
    too_big = _oversized_int(doc)
    if too_big is not None:
        where, value = too_big
        raise ValidationError(
            f"{where}: integer {value} is too large to store (MongoDB keeps integers of at most 64 bits)",
            field=where,
        )
    passthrough = {k: doc[k] for k in (*TRAINING_FIELDS, *SERVER_FIELDS) if k in doc}
    user = {k: v for k, v in doc.items() if k not in passthrough}
    lookalikes = lookalike_field_errors(user)
    if lookalikes:
        raise ValidationError(
            "invalid config: " + "; ".join(f"{e['field']}: {e['message']}" for e in lookalikes), errors=lookalikes
        )
    try:
        model = ModelConfig.model_validate(user, context={"limits": limits})
    except PydanticValidationError as exc:
        errors: list[dict[str, str]] = []
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _CrossFieldError):
                errors.extend({"field": f, "message": m} for f, m in ctx_err.problems)
                continue
            field = _loc(err["loc"]) or "config"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required field is missing"
            errors.append({"field": field, "message": msg})
        raise ValidationError(
            "invalid config: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        ) from None
    out = model.model_dump()
    for key in ("feature_types", "imputation"):  # absent, not null: documents stay as they were
        if not out.get(key):
            out.pop(key, None)
    if out["split"] == "random":  # the default leaves no trace: documents and definitions stay as they were
        for key in SPLIT_FIELDS:
            out.pop(key, None)
    else:
        for key in SPLIT_FIELDS:
            if out.get(key) is None or (key == "gap" and out["split"] != "time"):
                out.pop(key, None)
    out.update(passthrough)
    for key, value in out.items():  # fields passed through (and extras) must be storable as they are
        try:
            bson.encode({key: value})
        except (InvalidDocument, TypeError, OverflowError) as exc:
            raise ValidationError(
                f"{key}: a value of type {type(value).__name__} cannot be stored in MongoDB "
                f"({str(exc).split(', of type')[0]})",
                field=key,
            ) from None
    return out


def definition(config: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide what a training produces (used for versioning and compatibility). The split
    fields count only when they say something else than the default random split, so that runs trained
    before splits existed keep their definitions."""
    fields = [k for k in INPUT_FIELDS if k not in ("name", "description", "tags")]
    if config.get("split", "random") == "random":
        fields = [k for k in fields if k not in SPLIT_FIELDS]
    # all-numeric types and the default imputation train what configs without them trained
    types = config.get("feature_types") or {}
    if all(kind == "numeric" for kind in types.values()):
        fields = [k for k in fields if k != "feature_types"]
    if not config.get("imputation"):
        fields = [k for k in fields if k != "imputation"]
    return {k: config.get(k) for k in fields}


KNOWN_FIELDS = (*INPUT_FIELDS, *TRAINING_FIELDS, *SERVER_FIELDS)


def lookalike_field_errors(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Unknown fields that look like known ones (a typo, another case, another tool's name for a setting):
    kept as extras they would be silently ignored, so each is refused with the field to use. Other
    user-defined extras stay allowed."""
    import difflib

    errors = []
    lowered = {k.lower(): k for k in KNOWN_FIELDS}
    for key in doc:
        if not isinstance(key, str) or key in KNOWN_FIELDS:
            continue
        meant = MISLEADING_FIELDS.get(key.lower()) or lowered.get(key.lower())
        if meant is None:
            close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.8)
            meant = lowered[close[0]] if close else None
        if meant is not None:
            how = f"; {_SPLIT_HINT}" if meant in SPLIT_FIELDS else ""
            errors.append({"field": key, "message": f"unknown field {key!r}: did you mean {meant!r}?{how}"})
    return errors


_SPLIT_HINT = (
    "the validation scheme is split: random (shuffled folds, the default), time (with time_column and an "
    "optional gap: walk-forward folds, the last rows held out) or group (with group_column: no group split)"
)
