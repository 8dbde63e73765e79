"""Reading a training file (CSV or Parquet) into a pandas frame once, with its SHA-256 computed on the way.

CSV: pandas' own parser reads the file by its path while a second thread streams it through SHA-256
(:func:`read_csv_hashed`): the file is never held whole as bytes or text, and the hash costs a second core
rather than time. The frame must be exactly what ``pandas.read_csv(text, low_memory=False)`` gave before
(the column types, the values, the blanks, the row count: runs compare them); the one case where the
chunked read could differ, and a file that changes while it is read, are detected and answered with
``None``: the caller then reads the file the old way (:func:`read_csv_hashed` says why in the log).

Parquet (``.parquet``/``.pq``): the file's bytes are read once into memory, hashed in a second thread while
pyarrow decodes them, and the columns are given the types a CSV of the same data would have
(:func:`parquet_frame`). :func:`parquet_columns`, :func:`parquet_sample`, :func:`parquet_column` and
:func:`parquet_rows` read only what the config checks and the estimates need (the footer, or a few columns).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and pyarrow are imported when a file is read: the CLI starts faster without
    import pandas as pd

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
READ_BLOCK = 1 << 20  # bytes per read of the hashing thread


def is_parquet(path: str | Path) -> bool:
    """Whether a training file is Parquet (by its name: ``.parquet`` or ``.pq``), else it is read as CSV."""
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def file_label(training_file: str | Path) -> str:
    """How messages name a training file: ``training CSV`` or ``training Parquet file``."""
    return "training Parquet file" if is_parquet(training_file) else "training CSV"


def _arrow_to_frame(table: Any) -> pd.DataFrame:
    """The pandas frame of a pyarrow table as ``pandas.read_csv`` types it: all-blank columns as float NaN,
    booleans with blanks as objects holding NaN (not None)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    nulls = [f.name for f in table.schema if pa.types.is_null(f.type)]
    for name in nulls:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.nulls(table.num_rows, pa.float64()))
    blank_bools = [f.name for f in table.schema if pa.types.is_boolean(f.type) and table.column(f.name).null_count]
    frame = table.to_pandas(self_destruct=True, split_blocks=True, ignore_metadata=True)
    del table
    for name in blank_bools:
        values = frame[name].to_numpy(dtype=object, copy=True)
        values[frame[name].isna().to_numpy()] = np.nan
        frame[name] = pd.Series(values, dtype=object)
    return frame


def _sha256_of_file(path: Path, out: dict[str, Any]) -> None:
    """The file's SHA-256 and byte count into ``out`` (run on a thread beside the parser: hashlib lets go of
    the GIL, and the file is in the page cache the parser is reading it into)."""
    digest, count = hashlib.sha256(), 0
    try:
        with open(path, "rb") as fh:
            while block := fh.read(READ_BLOCK):
                digest.update(block)
                count += len(block)
    except OSError as exc:
        out["error"] = exc
        return
    out.update(sha256=digest.hexdigest(), count=count)


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def read_csv_hashed(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The frame ``pandas.read_csv`` gives for this CSV and the file's SHA-256, the two side by side.

    pandas parses the file by its path (its C reader, the fastest way pandas has, in its default chunked
    mode) while a thread streams the same file through SHA-256; if the file's size, modification time or
    inode differ after both from before them, the file changed meanwhile and is read again. The frame is
    the one the whole-text read gave (``pandas.read_csv(text, low_memory=False)``: runs compare the types,
    values, blanks and row count) unless a column's type changes between chunks, which pandas reports with a
    ``DtypeWarning``: then, and for any file pandas cannot parse, ``(None, None)``, and the caller reads the
    file the old way (which also gives the error messages for bad files).
    """
    import pandas as pd

    before = _identity(path)
    hashed: dict[str, Any] = {}
    hasher = threading.Thread(target=_sha256_of_file, args=(path, hashed), name="csv-sha256", daemon=True)
    hasher.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.DtypeWarning)
            frame = pd.read_csv(path)  # UTF-8; the C parser drops a byte order mark itself
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        return _fallback(path, _reason(exc))
    finally:
        hasher.join()
    if any(issubclass(w.category, pd.errors.DtypeWarning) for w in caught):
        return _fallback(path, "a column's type changes along the file (pandas decides on the whole column)")
    if "error" in hashed or hashed.get("count") != before[0] or _identity(path) != before:
        return _fallback(path, "the file changed while it was read")
    return frame, hashed["sha256"]


def _fallback(path: Path, reason: str) -> tuple[None, None]:
    log.info("%s is read again, as a whole (%s)", path.name, reason)
    return None, None


# --- Parquet ------------------------------------------------------------------------------------------


def _csv_like(table: Any) -> Any:
    """A Parquet table with the column types a CSV of the same data gets: integers as int64 (uint64 kept),
    floats as float64, categories decoded, decimals as floats, dates and times as ISO text."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        kind, target = field.type, None
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
            target = kind
        if pa.types.is_integer(kind) and kind not in (pa.int64(), pa.uint64()):
            target = pa.int64()
        elif (pa.types.is_floating(kind) and kind != pa.float64()) or pa.types.is_decimal(kind):
            target = pa.float64()
        elif pa.types.is_temporal(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            target = pa.string()
        if target is not None:
            table = table.set_column(index, field.name, table.column(index).cast(target))
    return table


def parquet_frame(table: Any) -> pd.DataFrame:
    """The pandas frame of (part of) a Parquet table, typed as a CSV of the same data would be."""
    return _arrow_to_frame(_csv_like(table))


def read_parquet_hashed(path: Path) -> tuple[pd.DataFrame, str]:
    """A Parquet file's frame and the SHA-256 of its bytes (read once; hashed while pyarrow decodes them).
    ``ValueError`` saying why when it is no readable Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = path.read_bytes()
    digest = hashlib.sha256()
    hasher = threading.Thread(target=digest.update, args=(raw,), name="parquet-sha256")
    hasher.start()
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"is not a readable Parquet file ({_reason(exc)})") from None
    finally:
        hasher.join()
    del raw
    return parquet_frame(table), digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file (its footer only). ``ValueError`` saying why not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"is not a readable Parquet file ({_reason(exc)})") from None


def parquet_sample(path: Path, columns: list[str], rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of some columns of a Parquet file, typed as in training."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        batch = next(source.iter_batches(batch_size=rows, columns=columns), None)
        table = pa.Table.from_batches([batch]) if batch is not None else source.schema_arrow.empty_table()
        table = table.select(columns)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise ValueError(f"is not a readable Parquet file ({_reason(exc)})") from None
    return parquet_frame(table)


def parquet_column(path: Path, column: str) -> pd.Series:
    """One whole column of a Parquet file, typed as in training."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[column])
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"is not a readable Parquet file ({_reason(exc)})") from None
    return parquet_frame(table)[column]


def parquet_rows(path: Path) -> int:
    """The number of rows of a Parquet file (from its footer)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"is not a readable Parquet file ({_reason(exc)})") from None
