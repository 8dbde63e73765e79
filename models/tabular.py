"""Reading a training file (CSV or Parquet) into a pandas frame once, with its SHA-256 computed on the way.

CSV: pyarrow's multi-threaded reader parses the file while the SHA-256 is fed from the very bytes it reads
(:func:`read_csv_hashed`), so the file is read from disk once and never held whole as text. The frame must be
exactly what ``pandas.read_csv(text, low_memory=False)`` gave before (the column types, the values, the
blanks, the row count: runs compare them), so pyarrow is told pandas' blank words and booleans, and the
cases where its reader would not give the same frame are detected and answered with ``None``: the caller
then reads the file the old way (:func:`read_csv_hashed` says why in the log). Those cases are listed in
:func:`_pandas_would_differ`.

Parquet (``.parquet``/``.pq``): the file's bytes are read once into memory, hashed in a second thread while
pyarrow decodes them, and the columns are given the types a CSV of the same data would have
(:func:`parquet_frame`). :func:`parquet_columns`, :func:`parquet_sample`, :func:`parquet_column` and
:func:`parquet_rows` read only what the config checks and the estimates need (the footer, or a few columns).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and pyarrow are imported when a file is read: the CLI starts faster without
    import pandas as pd

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
READ_BLOCK = 1 << 20  # bytes per read from the disk (each is hashed, then parsed)
# the blank words of pandas.read_csv (its default na_values): the same cells must be blank
PANDAS_BLANKS = sorted(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
PANDAS_TRUE = ["True", "TRUE", "true"]  # pandas.read_csv's booleans (pyarrow's defaults add 1 and 0)
PANDAS_FALSE = ["False", "FALSE", "false"]
INT64_LIMIT = 2.0**63  # integers beyond int64: pandas reads them as uint64 or objects, pyarrow as floats


def is_parquet(path: str | Path) -> bool:
    """Whether a training file is Parquet (by its name: ``.parquet`` or ``.pq``), else it is read as CSV."""
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def file_label(training_file: str | Path) -> str:
    """How messages name a training file: ``training CSV`` or ``training Parquet file``."""
    return "training Parquet file" if is_parquet(training_file) else "training CSV"


class _Hasher:
    """Sees every block pyarrow reads from the file, in order and once (a transform of pyarrow's own file
    stream, so the reads stay native): feeds it into the SHA-256, counts it, and notes the bytes after
    which pyarrow's numbers could differ from pandas' (see :func:`_recheck`)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0
        self.hex = False  # "0x" seen: pyarrow reads 0x1F as an integer, pandas as text
        self.plus = False  # "+" seen: pyarrow reads +1 as a float, pandas as an integer
        self._last = b""

    def __call__(self, block: Any) -> Any:
        self.digest.update(block)  # hashlib lets go of the GIL: pyarrow's threads parse meanwhile
        self.count += block.size
        if block.size and not (self.hex and self.plus):
            data = block.to_pybytes()
            self.plus = self.plus or b"+" in data
            if not self.hex:
                self.hex = b"0x" in data or b"0X" in data or (self._last == b"0" and data[:1] in (b"x", b"X"))
            self._last = data[-1:]
        return block


def _csv_options() -> tuple[Any, Any, Any]:
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(use_threads=True, block_size=READ_BLOCK, encoding="utf8")
    # newlines_in_values: pandas accepts line breaks inside quoted fields, so must this reader
    parse = pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        check_utf8=True,
        null_values=PANDAS_BLANKS,
        true_values=PANDAS_TRUE,
        false_values=PANDAS_FALSE,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    return read, parse, convert


def _read_arrow_csv(path: Path, include: list[str] | None = None) -> tuple[Any, str, _Hasher]:
    """The pyarrow table of a CSV, the SHA-256 of the bytes read and the reader (what it counted and saw);
    ``include``: only those columns, as text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read, parse, convert = _csv_options()
    if include is not None:
        convert.include_columns = include
        convert.column_types = {name: pa.string() for name in include}
    hasher = _Hasher()
    with pa.OSFile(str(path)) as raw, pa.TransformInputStream(raw, hasher) as stream:
        table = pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    return table, hasher.digest.hexdigest(), hasher


def _pandas_would_differ(table: Any) -> str | None:
    """Why ``pandas.read_csv`` would not give the frame this pyarrow table converts to, or None.

    Each case here is one where pyarrow's reader reads the cells differently; the caller then reads the file
    with pandas as before: duplicate or empty column names (pandas renames them ``a.1``, ``Unnamed: 2``), a
    second byte order mark (pandas drops it too), a header without rows, bytes that are not UTF-8 (pyarrow
    makes a binary column; pandas' path names the byte), a single column with lines of spaces (pandas skips
    them), a text column whose every value pandas would read as a number, ``nan``/``inf`` spellings in a
    number column (pandas and pyarrow do not accept the same ones), integers beyond int64 (pandas makes them
    uint64 or objects).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    if len(set(names)) != len(names) or any(name == "" for name in names):
        return "duplicate or empty column names"
    if names and names[0].startswith("\ufeff"):
        return "a second byte order mark"
    if table.num_rows == 0:
        return "a header without rows"
    for name, column in zip(names, table.columns):
        kind = column.type
        if pa.types.is_floating(kind):
            if pc.any(pc.is_nan(column)).as_py() or pc.any(pc.is_inf(column)).as_py():
                return f"nan or inf spelled out in number column {name!r}"
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            if low is not None and max(abs(low), abs(high)) >= INT64_LIMIT:
                return f"numbers beyond int64 in column {name!r}"
        elif pa.types.is_string(kind):
            present = pc.drop_null(column)
            if len(present) == 0:
                continue
            trimmed = pc.utf8_trim_whitespace(present)
            if table.num_columns == 1 and pc.any(pc.equal(trimmed, "")).as_py():
                return "lines of spaces in a single column"
            try:
                pc.cast(trimmed, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # some value is no number: a text column for pandas too
            return f"text column {name!r} whose values all look like numbers"
        elif not (pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
            return f"column {name!r} read as {kind}"  # binary: not UTF-8
    return None


INTEGER_TEXT = r"^\s*[+-]?[0-9]+\s*$"  # what pandas reads as an integer
HEX_TEXT = r"^\s*[+-]?0[xX]"  # what pyarrow reads as an integer and pandas as text


def _recheck(table: Any, reader: _Hasher) -> tuple[list[str], list[str], list[str]]:
    """The columns to read again as text: dates and times (pyarrow converts them, pandas does not), integer
    columns when the file holds ``0x`` (is it hexadecimal?), whole-number float columns without blanks when
    it holds ``+`` (are they integers written ``+1``?)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    temporal, ints, floats = [], [], []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_temporal(field.type):
            temporal.append(field.name)
        elif reader.hex and pa.types.is_integer(field.type):
            ints.append(field.name)
        elif (
            reader.plus
            and pa.types.is_floating(field.type)
            and column.null_count == 0
            and len(column)
            and pc.all(pc.equal(column, pc.floor(column))).as_py()
        ):
            floats.append(field.name)
    return temporal, ints, floats


def _temporal_columns(table: Any) -> list[str]:
    import pyarrow as pa

    return [field.name for field in table.schema if pa.types.is_temporal(field.type)]


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


def read_csv_hashed(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The frame ``pandas.read_csv`` would give for this CSV and the file's SHA-256, from one read of it.

    ``(None, None)`` when pyarrow cannot give exactly that frame (a parsing error, or a case of
    :func:`_pandas_would_differ`): the caller then reads the file with pandas, which also gives the error
    messages for bad files. Columns :func:`_recheck` names are read again as text (a second read, only for
    files that have them); the SHA-256 of both reads must agree.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    size = path.stat().st_size
    try:
        table, sha, reader = _read_arrow_csv(path)
        if reader.count != size:
            return _fallback(path, "the file changed while it was read")
        temporal, ints, floats = _recheck(table, reader)
        if temporal or ints or floats:
            texts, again, _ = _read_arrow_csv(path, include=[*temporal, *ints, *floats])
            if again != sha:
                return _fallback(path, "the file changed while it was read")
            for name in ints:
                if pc.any(pc.match_substring_regex(texts.column(name), HEX_TEXT)).as_py():
                    return _fallback(path, f"hexadecimal text in column {name!r}")
            for name in floats:
                if pc.all(pc.match_substring_regex(texts.column(name), INTEGER_TEXT)).as_py():
                    return _fallback(path, f"integers written with a + sign in column {name!r}")
            for name in temporal:
                table = table.set_column(table.schema.get_field_index(name), name, texts.column(name))
            del texts
        reason = _pandas_would_differ(table)
        if reason:
            return _fallback(path, reason)
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # column names that are not UTF-8: a decode error
        return _fallback(path, _reason(exc))
    return _arrow_to_frame(table), sha


def _fallback(path: Path, reason: str) -> tuple[None, None]:
    log.info("%s is read with pandas (pyarrow would not read it the same: %s)", path.name, reason)
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
