"""Column types and the one preprocessing step of a run: imputers, the scaler, encoders, a text vectorizer.

A config's features may be numeric (numbers and booleans), categorical (strings, or numbers the user
declares categorical) or free text. The types are detected from the CSV when the config is saved
(:func:`detect_types`; a ``feature_types`` entry given by the user wins) and stored in the document:

- a numeric or boolean column is ``numeric``, and so is a string column whose values are at least 95%
  numbers (the others are then refused at save, naming the line: declare the column categorical if
  they are meant);
- a string column whose values are short (on average fewer than :data:`TEXT_MIN_WORDS` words) is
  ``categorical``; with more than :data:`HIGH_CARDINALITY` distinct values (and more than half its rows
  distinct) it gets a hint at save time: one-hot encoding a near-unique column learns little;
- a string column with longer values (on average at least :data:`TEXT_MIN_WORDS` words) is ``text``.

The preprocessing step (:func:`make_preprocessor`) is what a run saves as ``<run_id>_scaler.pkl``, and it
is fitted inside each CV fold with the model (one scikit-learn ``Pipeline``), so nothing leaks from the
validation rows:

- all features numeric: ``SimpleImputer`` (``imputation.numeric``, default ``median``) then the config's
  ``scaler``; with ``imputation.numeric: none`` (models that take blanks as they are: HistGradientBoosting,
  XGBoost, LightGBM) the blanks reach the model;
- otherwise a ``ColumnTransformer``: numeric columns as above; categorical ones ``SimpleImputer``
  (``imputation.categorical``: ``most_frequent``, the default, or ``constant``: blanks become their own
  category ``"missing"``) then ``OneHotEncoder(handle_unknown="ignore")``: a category never seen in training
  is encoded as all zeros (unknown), not an error; each text column ``SimpleImputer`` (blanks become ``""``)
  then ``TfidfVectorizer(max_features=TEXT_MAX_FEATURES)``.

Only rows with a missing target are dropped; blanks in features are imputed and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FEATURE_TYPES = ("numeric", "categorical", "text")
NUMERIC_IMPUTATIONS = ("median", "mean", "most_frequent", "none")
CATEGORICAL_IMPUTATIONS = ("most_frequent", "constant")
DEFAULT_IMPUTATION = {"numeric": "median", "categorical": "most_frequent"}
NATIVE_MISSING = ("hist_gradient_boosting", "xgboost", "lightgbm")  # model types that take blanks as they are
TEXT_MIN_WORDS = 4.0
MOSTLY_NUMBERS = 0.95
HIGH_CARDINALITY = 50
TEXT_MAX_FEATURES = 500
MISSING_CATEGORY = "missing"


def is_numeric_column(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))


def detect_type(values: pd.Series) -> str:
    """The type of one column as read from the CSV (rules in the module docstring)."""
    if is_numeric_column(values):
        return "numeric"
    text = values.dropna().astype(str)
    if text.empty:
        return "categorical"
    if pd.to_numeric(text, errors="coerce").notna().mean() >= MOSTLY_NUMBERS:
        return "numeric"  # numbers with a stray word: refused at save with the line, not one-hot encoded
    words = text.str.split().str.len().mean()
    return "text" if words >= TEXT_MIN_WORDS else "categorical"


def detect_types(frame: pd.DataFrame, features: list[str], given: dict[str, str] | None = None) -> dict[str, str]:
    """Every feature's type: the user's ``given`` entries win, the others are detected from ``frame``."""
    given = given or {}
    return {f: given.get(f) or detect_type(frame[f]) for f in features}


def type_problems(frame: pd.DataFrame, types: dict[str, str], given: dict[str, str] | None = None) -> list[dict]:
    """Types that cannot work with the column's values, and all-blank columns: ``{"field", "message"}`` each."""
    problems = []
    given = given or {}
    for column, kind in types.items():
        values = frame[column]
        if values.isna().all():
            problems.append(
                {
                    "field": "features",
                    "message": f"feature {column!r} is blank in every row; there is nothing to learn",
                }
            )
            continue
        if kind == "numeric" and not is_numeric_column(values):
            bad = non_numbers(values)
            if len(bad):
                line = int(bad.index[0]) + 2
                problems.append(
                    {
                        "field": "feature_types" if column in given else "features",
                        "message": f"feature {column!r} is numeric but line {line} holds {str(bad.iloc[0])!r}: "
                        "not a number (declare it categorical or text in feature_types)",
                    }
                )
        if kind == "text" and column in given and is_numeric_column(values):
            problems.append(
                {
                    "field": "feature_types",
                    "message": f"feature_types says {column!r} is text, but it holds numbers only; "
                    "use numeric or categorical",
                }
            )
    return problems


def non_numbers(values: pd.Series) -> pd.Series:
    """The non-blank values of ``values`` that are not numbers."""
    present = values.dropna()
    return present[pd.to_numeric(present, errors="coerce").isna()]


def type_hints(frame: pd.DataFrame, types: dict[str, str]) -> list[str]:
    """Advice for the user at save time (not errors): near-unique categorical columns."""
    hints = []
    for column, kind in types.items():
        if kind != "categorical":
            continue
        distinct = frame[column].nunique(dropna=True)
        if distinct > HIGH_CARDINALITY and distinct > 0.5 * frame[column].notna().sum():
            hints.append(
                f"feature {column!r} has {distinct} distinct values in {len(frame)} rows: one-hot encoding a "
                "near-unique column learns little (drop it, or declare it text if it is free text)"
            )
    return hints


def feature_types_of(config: dict[str, Any]) -> dict[str, str]:
    """The config's types for its features (numeric where none is recorded: documents from before types)."""
    given = config.get("feature_types") or {}
    return {f: given.get(f, "numeric") for f in config["features"]}


def is_mixed(types: dict[str, str]) -> bool:
    """Whether the features need the column transformer (any that is not numeric)."""
    return any(kind != "numeric" for kind in types.values())


def imputation_of(config: dict[str, Any]) -> dict[str, str]:
    return {**DEFAULT_IMPUTATION, **(config.get("imputation") or {})}


def make_preprocessor(config: dict[str, Any], scaler: Any) -> Any:
    """The unfitted preprocessing step of ``config`` (see the module docstring), around ``scaler``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    how = imputation_of(config)
    types = feature_types_of(config)

    def numeric() -> Any:
        if how["numeric"] == "none":
            return scaler
        return Pipeline([("impute", SimpleImputer(strategy=how["numeric"])), ("scale", scaler)])

    if not is_mixed(types):
        return numeric()
    numbers = [f for f, k in types.items() if k == "numeric"]
    categories = [f for f, k in types.items() if k == "categorical"]
    texts = [f for f, k in types.items() if k == "text"]
    parts: list[tuple[str, Any, Any]] = []
    if numbers:
        parts.append(("numeric", numeric(), numbers))
    if categories:
        fill = (
            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
            if how["categorical"] == "constant"
            else SimpleImputer(strategy="most_frequent")
        )
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", Pipeline([("impute", fill), ("encode", encoder)]), categories))
    for column in texts:
        steps = [
            ("impute", SimpleImputer(strategy="constant", fill_value="")),
            ("flatten", FunctionTransformer(np.ravel)),
            ("tfidf", TfidfVectorizer(max_features=TEXT_MAX_FEATURES)),
        ]
        parts.append((f"text_{column}", Pipeline(steps), [column]))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _category_text(value: Any) -> Any:
    """One categorical value as text (``3`` and ``3.0`` are the same category); blanks stay blank."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() else str(number)
    return str(value)


def typed_frame(frame: pd.DataFrame, types: dict[str, str], *, what: str = "row") -> pd.DataFrame:
    """``frame``'s feature columns as the preprocessor expects them: numbers as floats (blanks as NaN),
    categories and text as strings (blanks as NaN). A numeric column with a value that is not a number
    raises ValueError naming the row and column (``what`` says how rows are counted)."""
    out = {}
    for column, kind in types.items():
        values = frame[column]
        if kind == "numeric":
            if is_numeric_column(values):
                out[column] = values.astype(float).to_numpy()
                continue
            bad = non_numbers(values)
            if len(bad):
                raise ValueError(
                    f"feature {column!r} is numeric, but {what} {bad.index[0]} holds {str(bad.iloc[0])!r}",
                    column,
                )
            out[column] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
        else:
            out[column] = np.array([_category_text(v) for v in values], dtype=object)
    return pd.DataFrame(out, index=range(len(frame)))


def original_columns(preprocessor: Any, features: list[str], n_outputs: int) -> list[str]:
    """For each output column of a fitted preprocessor, the feature it came from (importance per column)."""
    transformers = getattr(preprocessor, "transformers_", None)
    if transformers is None:
        return list(features)[:n_outputs]
    owners: list[str] = [""] * n_outputs
    for name, fitted, columns in transformers:
        span = preprocessor.output_indices_.get(name)
        if span is None or fitted == "drop" or span.stop == span.start:
            continue
        if name == "categorical":
            encoder = fitted.named_steps["encode"]
            start = span.start
            for column, cats in zip(columns, encoder.categories_):
                owners[start : start + len(cats)] = [column] * len(cats)
                start += len(cats)
        elif name == "numeric":
            owners[span] = list(columns)
        else:
            owners[span] = [columns[0]] * (span.stop - span.start)
    return owners
