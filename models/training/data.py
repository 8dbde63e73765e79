"""Reading a config's training file (CSV, or Parquet: ``.parquet``/``.pq``) into features and target, with
clear errors.

The file is read once, its SHA-256 computed from the same bytes (:mod:`models.tabular`: pandas' parser in
one streaming pass, the hash fed beside it; a CSV whose column types change along the file is read again
as a whole, as before).

Missing-value policy: only rows with a missing target are dropped (how many is recorded in the run:
``data.rows_dropped``); blank feature cells are kept and imputed inside the run's pipeline (see
:mod:`models.preprocess`; the run records how many per column: ``data.blank_cells``). Infinite
feature values are refused. Training refuses to go on if fewer than ``MIN_ROWS`` rows remain.

Features are a float array when all are numeric, else a DataFrame typed by ``feature_types``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import DataError, ValidationError
from models.preprocess import detect_types, is_mixed, type_problems, typed_frame
from models.settings import Settings, get_settings
from models.splits import group_values, order_values
from models.store.data_roots import check_data_root
from models.store.datarefs import to_stored
from models.tabular import file_label, is_parquet, read_csv_hashed, read_parquet_hashed

MIN_ROWS = 20


@dataclass
class TrainingData:
    X: Any  # float array (all features numeric) or DataFrame (typed columns)
    y: np.ndarray
    path: Path
    file_sha256: str
    rows_read: int
    rows_dropped: int
    kept_rows: np.ndarray  # positions in the CSV (0-based, header excluded) of the rows used
    split_values: np.ndarray | None = None  # per row used: its time (split "time") or group (split "group")
    split_labels: np.ndarray | None = None  # per row used: its time as the CSV writes it (split "time")
    feature_types: dict[str, str] = field(default_factory=dict)  # feature -> numeric | categorical | text
    blank_cells: dict[str, int] = field(default_factory=dict)  # feature -> blank cells imputed (rows used)

    @property
    def rows_used(self) -> int:
        return len(self.y)

    def fingerprint(self, target: str) -> str:
        """Identifies the exact rows and target: runs with the same fingerprint can be stacked."""
        h = hashlib.sha256()
        h.update(self.file_sha256.encode())
        h.update(target.encode())
        h.update(np.ascontiguousarray(self.kept_rows, dtype=np.int64).tobytes())
        if self.split_values is not None:  # the order or the groups decide the folds too
            h.update(b"split")
            h.update("\x1f".join(map(str, self.split_values.tolist())).encode())
        return h.hexdigest()


def resolve_csv(training_csv: str, settings: Settings | None = None) -> Path:
    """The CSV's real path, only inside ``DATA_ROOTS`` (absolute paths stay as they are; relative ones are
    taken from the project root); :class:`DataError` naming the setting otherwise."""
    try:
        return check_data_root(training_csv, settings or get_settings())
    except ValidationError as exc:
        raise DataError(exc.message, field="training_csv") from None


def _read_csv(path: Path, training_csv: str, max_bytes: int, shown: str = "") -> tuple[pd.DataFrame, str]:
    """The training file's frame and SHA-256 (one read), or a :class:`DataError` naming the file."""
    label = file_label(training_csv)
    if not path.exists():
        raise DataError(
            f"{label} {training_csv!r} not found (looked at {shown or path.name} in the data roots)",
            field="training_csv",
        )
    if not path.is_file():
        raise DataError(f"{label} {training_csv!r} is not a file", field="training_csv")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"{label} {training_csv!r} is {size} bytes, more than MAX_TRAINING_CSV_BYTES "
            f"({max_bytes}); it was not read",
            field="training_csv",
        )
    if is_parquet(path) or is_parquet(training_csv):
        return _read_parquet(path, training_csv, label)
    try:
        frame, sha = read_csv_hashed(path) if size else (None, None)
    except OSError:
        frame, sha = None, None  # the pandas path below says what is wrong
    if frame is not None and sha is not None:
        return frame, sha
    return _read_csv_pandas(path, training_csv)


def _read_parquet(path: Path, training_csv: str, label: str) -> tuple[pd.DataFrame, str]:
    try:
        frame, sha = read_parquet_hashed(path)
    except ValueError as exc:
        raise DataError(f"{label} {training_csv!r} {exc}", field="training_csv") from None
    except OSError as exc:
        raise DataError(
            f"{label} {training_csv!r} cannot be read: {exc.strerror or exc}", field="training_csv"
        ) from None
    if not len(frame.columns):
        raise DataError(f"{label} {training_csv!r} has no columns", field="training_csv")
    return frame, sha


def _read_csv_pandas(path: Path, training_csv: str) -> tuple[pd.DataFrame, str]:
    """The CSV read as a whole text: for the files :func:`models.tabular.read_csv_hashed` cannot read in one
    pass exactly as this does, and for the bad ones (its errors are the messages users get)."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"training CSV {training_csv!r} is empty", field="training_csv")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"training CSV {training_csv!r} is not UTF-8 text (byte {exc.start} is invalid)", field="training_csv"
        ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), low_memory=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DataError(
            f"training CSV {training_csv!r} cannot be parsed: {str(exc).strip()}", field="training_csv"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"training CSV {training_csv!r} has no columns", field="training_csv") from None
    return frame, hashlib.sha256(raw).hexdigest()


def load_training_data(config: dict[str, Any], settings: Settings | None = None) -> TrainingData:
    """Features and target of a validated config, or a :class:`DataError` that says exactly what is wrong."""
    training_csv = config["training_csv"]
    settings = settings or get_settings()
    path = resolve_csv(training_csv, settings)
    frame, sha = _read_csv(path, training_csv, settings.max_training_csv_bytes, to_stored(str(path), settings))
    label = file_label(training_csv)
    features, target = list(config["features"]), config["target"]
    split_column = config.get("time_column") if config.get("split") == "time" else None
    split_column = config.get("group_column") if config.get("split") == "group" else split_column
    wanted = (*features, target, *([split_column] if split_column else []))
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        hint = ""
        if len(frame.columns) == 1 and any(d in frame.columns[0] for d in ";\t|"):
            hint = " (the file seems to use another delimiter than ',')"
        raise DataError(
            f"{label} {training_csv!r} lacks columns: {', '.join(missing)}{hint}",
            field="target"
            if target in missing
            else (
                "features"
                if set(missing) & set(features)
                else ("time_column" if config.get("split") == "time" else "group_column")
            ),
        )
    if frame.empty:
        raise DataError(f"{label} {training_csv!r} has a header but no rows", field="training_csv")
    types = detect_types(frame, features, config.get("feature_types"))
    problems = type_problems(frame, types, config.get("feature_types"))
    if problems:
        raise DataError(problems[0]["message"], field=problems[0]["field"])
    try:
        X_frame = typed_frame(frame, types, what="line")
    except ValueError as exc:
        raise DataError(str(exc.args[0]), field="features") from None
    numeric = [c for c, kind in types.items() if kind == "numeric"]
    with np.errstate(invalid="ignore"):
        infinite = [c for c in numeric if np.isinf(X_frame[c].to_numpy()).any()]
    if infinite:
        column = infinite[0]
        line = int(np.flatnonzero(np.isinf(X_frame[column].to_numpy()))[0]) + 2
        raise DataError(
            f"feature {column!r} is infinite on line {line}; blanks are imputed, infinite values are refused",
            field="features",
        )
    y_series = frame[target]
    if config["task"] == "regression":
        if not pd.api.types.is_numeric_dtype(y_series):
            raise DataError(f"target {target!r} must be numeric for regression", field="target")
        y_series = y_series.astype(float)
    ok = y_series.notna().to_numpy()
    if config["task"] == "regression":
        ok = ok & np.isfinite(y_series.to_numpy(dtype=float))
    kept = np.flatnonzero(ok)
    dropped = int(len(frame) - len(kept))
    if len(kept) < MIN_ROWS:
        raise DataError(
            f"only {len(kept)} usable rows in {training_csv!r} after dropping {dropped} with "
            f"a missing target; at least {MIN_ROWS} are needed",
            field="training_csv",
        )
    X_frame = X_frame.iloc[kept].reset_index(drop=True)
    blanks = {c: int(n) for c, n in X_frame.isna().sum().items() if n}
    X: Any = X_frame if is_mixed(types) else X_frame.to_numpy(dtype=float)
    y = y_series.to_numpy()[kept]
    if config["task"] == "classification" and y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)  # integer labels read as floats because the column had a blank: 3, not 3.0
    if numeric and np.nanmax(np.abs(X_frame[numeric].to_numpy(dtype=float)), initial=0.0) > 1e300:
        raise DataError("feature values are too large to train on (beyond 1e300)", field="features")
    if config["task"] == "classification":
        classes, counts = np.unique(y.astype(str) if y.dtype == object else y, return_counts=True)
        classes = classes.tolist()  # plain Python values: messages say 1, not np.int64(1)
        if len(classes) < 2:
            raise DataError(
                f"target {target!r} has a single class ({classes[0]!r}); classification needs at least two",
                field="target",
            )
        folds = int(config.get("cv_folds", 5))
        if counts.min() < folds + 1:
            raise DataError(
                f"class {classes[int(counts.argmin())]!r} of target {target!r} has only "
                f"{int(counts.min())} rows; cv_folds={folds} needs at least {folds + 1}",
                field="cv_folds",
            )
    elif np.unique(y).size < 2:
        raise DataError(f"target {target!r} is constant; nothing to learn", field="target")
    split_values = split_labels = None
    if split_column:
        read = order_values if config["split"] == "time" else group_values
        split_values = read(frame[split_column], split_column, training_csv)[kept]
        if config["split"] == "time":
            split_labels = frame[split_column].astype(str).to_numpy()[kept]
    return TrainingData(
        X=X,
        y=y,
        path=path,
        file_sha256=sha,
        rows_read=len(frame),
        rows_dropped=dropped,
        kept_rows=kept,
        split_values=split_values,
        split_labels=split_labels,
        feature_types=types,
        blank_cells=blanks,
    )
