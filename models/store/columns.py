"""A config's training data, checked when the config is saved: the CSV exists and names the columns.

Only the header line is read (cheap even for a large file); for a Parquet file (``.parquet``/``.pq``), its
footer. A feature or target that is not a column gets a "did you mean" with the closest column. ``ConfigStore.create``/``update`` call
:func:`check_training_columns`, so the web form, ``configs add`` and the API refuse the same configs.
"""

from __future__ import annotations

import csv
import difflib
from pathlib import Path
from typing import Any

from models.errors import DataError, ServiceError, ValidationError
from models.settings import Settings, get_settings
from models.store.data_roots import check_data_root
from models.store.datarefs import to_stored
from models.tabular import file_label, is_parquet, parquet_column, parquet_columns, parquet_sample

# the config fields whose change means the data must be checked again
DATA_FIELDS = (
    "feature_types",
    "training_csv",
    "features",
    "target",
    "split",
    "time_column",
    "group_column",
    "gap",
    "cv_folds",
    "test_size",
)
HEADER_BYTES = 1 << 20


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first line only) or of a Parquet file (its footer). Raises
    ``ValueError`` saying why not."""
    if is_parquet(path):
        return parquet_columns(path)
    with path.open("rb") as fh:
        first = fh.readline(HEADER_BYTES)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start} is invalid)") from None
    if not text.strip():
        raise ValueError("is empty (no header line)")
    return [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]))]


def closest_column(name: str, columns: list[str]) -> str | None:
    """The column ``name`` most likely meant, ignoring case (``BMI`` -> ``bmi``): a column differing
    only in case comes first, else the closest by ``difflib`` over the case-folded names; None when
    nothing is close."""
    folded = name.casefold()
    same = [c for c in columns if c.casefold() == folded]
    if same:
        return same[0]
    by_fold: dict[str, str] = {}
    for column in columns:
        by_fold.setdefault(column.casefold(), column)
    close = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=0.6)
    return by_fold[close[0]] if close else None


def _not_a_column(what: str, name: str, columns: list[str], training_csv: str) -> str:
    message = f"{what} {name!r} is not a column of {training_csv}"
    close = [c for c in (closest_column(name, columns),) if c is not None]
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if len(columns) == 1 and any(d in columns[0] for d in ";\t|"):
        return f"{message} (the file seems to use another delimiter than ',')"
    return message


def data_problems(config: dict[str, Any], settings: Settings | None = None) -> list[dict[str, str]]:
    """Every problem of a (schema-valid) config's training CSV, one ``{"field", "message"}`` each."""
    training_csv = str(config["training_csv"])
    label = file_label(training_csv)
    try:
        path = check_data_root(training_csv, settings or get_settings())  # only ever inside DATA_ROOTS
    except ValidationError as exc:
        return [{"field": "training_csv", "message": exc.message}]
    if not path.exists():
        return [
            {
                "field": "training_csv",
                "message": f"{label} {training_csv!r} does not exist (looked at {to_stored(str(path), settings or get_settings())} "
                "in the data roots)",
            }
        ]
    if not path.is_file():
        return [{"field": "training_csv", "message": f"{label} {training_csv!r} is not a file"}]
    try:
        columns = parquet_columns(path) if is_parquet(training_csv) else read_header(path)
    except ValueError as exc:
        return [{"field": "training_csv", "message": f"{label} {training_csv!r} {exc}"}]
    except OSError as exc:
        return [
            {
                "field": "training_csv",
                "message": f"{label} {training_csv!r} cannot be read: {exc.strerror or exc}",
            }
        ]
    known = set(columns)
    problems = [
        {"field": "features", "message": _not_a_column("feature", f, columns, training_csv)}
        for f in config["features"]
        if f not in known
    ]
    if config["target"] not in known:
        problems.append(
            {"field": "target", "message": _not_a_column("target", config["target"], columns, training_csv)}
        )
    if not problems:
        problems += feature_type_problems(config, path)
    split = config.get("split", "random")
    if split != "random":
        field = "time_column" if split == "time" else "group_column"
        column = config[field]
        if column not in known:
            problems.append({"field": field, "message": _not_a_column(field, column, columns, training_csv)})
        elif not problems:
            problems += split_problems(config, path, field)
    return problems


TYPE_SAMPLE_ROWS = 20_000  # rows read at save time to detect the feature types (training reads them all)


def read_feature_sample(config: dict[str, Any], path: Path) -> Any:
    """The first ``TYPE_SAMPLE_ROWS`` rows of the config's features (CSV or Parquet), typed as in training."""
    if is_parquet(path) or is_parquet(str(config["training_csv"])):
        return parquet_sample(path, list(config["features"]), TYPE_SAMPLE_ROWS)
    import pandas as pd  # only when a config is saved (the CLI starts faster without)

    return pd.read_csv(path, usecols=list(config["features"]), nrows=TYPE_SAMPLE_ROWS, low_memory=False)


def feature_type_problems(config: dict[str, Any], path: Path) -> list[dict[str, str]]:
    """Detect the feature types (the config's own entries win) into ``config["feature_types"]``, hints into
    ``config["type_hints"]``; the types that cannot work with the column's values, as problems."""
    from models.preprocess import detect_types, type_hints, type_problems

    try:
        sample = read_feature_sample(config, path)
    except (ValueError, OSError) as exc:
        return [
            {
                "field": "training_csv",
                "message": f"{file_label(config['training_csv'])} {config['training_csv']!r} cannot be read: {exc}",
            }
        ]
    given = dict(config.get("feature_types") or {})
    if sample.empty:  # a header without rows: nothing to detect (training says what is wrong)
        if given:
            config["feature_types"] = given
        return []
    types = detect_types(sample, list(config["features"]), given)
    problems = type_problems(sample, types, given)
    config["feature_types"] = types
    config["type_hints"] = type_hints(sample, types)
    return problems


def split_problems(config: dict[str, Any], path: Path, field: str) -> list[dict[str, str]]:
    """The time or group column is read (that column only) and checked: every row has a time that can be
    ordered (or a group), and the folds and the held-out rows all get rows (``gap``, ``cv_folds``)."""
    import pandas as pd  # only for configs with a time or group split (the CLI starts faster without)

    from models.splits import check_split_sizes, fold_spec, group_values, order_values

    column, training_csv = config[field], str(config["training_csv"])
    try:
        if is_parquet(path) or is_parquet(training_csv):
            values = parquet_column(path, column)
        else:
            values = pd.read_csv(path, usecols=[column])[column]
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        return [{"field": field, "message": f"{field} {column!r} of {training_csv!r} cannot be read: {exc}"}]
    read = order_values if field == "time_column" else group_values
    try:
        read(values, column, training_csv)
        spec = fold_spec(config)
        if field == "group_column":
            check_group_count(values, spec, column)
        else:
            check_split_sizes(spec, len(values))
    except ServiceError as exc:
        return [{"field": exc.field or field, "message": exc.message}]
    return []


def check_group_count(values: Any, spec: dict[str, Any], column: str) -> None:
    """A group split needs at least ``cv_folds`` groups besides the held-out ones."""
    groups = values.nunique()
    if groups < spec["n_splits"] + 1:
        raise DataError(
            f"group_column {column!r} has {groups} distinct group(s): a group split with cv_folds="
            f"{spec['n_splits']} needs at least {spec['n_splits'] + 1} (one or more held out, one per fold)",
            field="group_column",
        )


def check_training_columns(config: dict[str, Any], settings: Settings | None = None) -> None:
    """Refuse a config whose training CSV is missing or lacks a named column (header only)."""
    problems = data_problems(config, settings)
    if problems:
        raise ValidationError("invalid config: " + "; ".join(p["message"] for p in problems), errors=problems)


ESTIMATE_BYTES = 1 << 20  # bytes of a large CSV read to estimate its row count from its size


def describe_columns(path: Path) -> dict[str, Any]:
    """A CSV or Parquet file's columns with the type each would get as a feature (``numeric`` /
    ``categorical`` / ``text``, detected on its first ``TYPE_SAMPLE_ROWS`` rows as at save; ``None`` for
    a file without rows), and its row count: exact for Parquet (footer) and for a CSV the sample covers,
    else estimated from the file's size (``rows_exact`` False). The feature picker of the config form
    and the upload answer show this. ``ValueError`` saying why the file cannot be read."""
    from models.preprocess import detect_type
    from models.tabular import parquet_rows

    header = read_header(path)
    if not any(header):
        raise ValueError("has no column names in its first line")
    if is_parquet(path):
        sample = parquet_sample(path, header, TYPE_SAMPLE_ROWS)
        rows, exact = parquet_rows(path), True
    else:
        import pandas as pd

        try:
            sample = pd.read_csv(path, nrows=TYPE_SAMPLE_ROWS, low_memory=False)
        except UnicodeDecodeError as exc:
            raise ValueError(f"is not UTF-8 text (byte {exc.start} is invalid)") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"cannot be read as CSV ({reason})") from None
        rows, exact = len(sample), len(sample) < TYPE_SAMPLE_ROWS
        if not exact:
            rows = _estimate_rows(path, rows)
    columns = []
    for i, name in enumerate(header):  # by position: a blank or repeated name still gets its own column
        values = sample.iloc[:, i] if i < sample.shape[1] else None
        kind = detect_type(values) if values is not None and not sample.empty else None
        columns.append({"name": name, "type": kind})
    return {"columns": columns, "rows": rows, "rows_exact": exact}


def _estimate_rows(path: Path, at_least: int) -> int:
    """Rows of a large CSV from its size and the line length of its first ``ESTIMATE_BYTES`` (no less than
    the rows already read)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(ESTIMATE_BYTES)
    lines = head.count(b"\n")
    if not lines:
        return at_least
    return max(at_least, round(size / (len(head) / lines)) - 1)
