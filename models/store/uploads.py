"""Training files uploaded from the web (the config form, ``POST /api/data/upload``): into a data root,
whole or not at all.

:func:`save_upload` stores the file as ``<root>/uploads/<name>``: in the ``uploads/`` folder of the first
data root (``DATA_DIR``, the root named ``data``) unless another root of ``DATA_DIR``/``DATA_ROOTS`` is
chosen, so uploaded files never mix with the files put into a root by hand, and a config names it as
``@<root>/uploads/<name>``. The file is written to a temporary file in that same folder (``.tmp-upload-*``,
a hidden name no config can use), counted while it streams in (over ``MAX_TRAINING_CSV_BYTES``: refused),
flushed and fsynced, checked (a CSV with a header line and rows pandas can read, or a Parquet file), and
only then moved into place (``os.link``, which refuses an existing name, or ``os.replace`` when asked to
replace). Whatever goes wrong, the temporary file is removed and an existing file stays as it was.

Only foundation modules and ``models.store`` below it are imported (``models.artifacts.atomic`` lies in a
room above).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import IO

from models.errors import ConflictError, ValidationError
from models.settings import Settings
from models.store.columns import describe_columns
from models.store.data_roots import check_data_root
from models.store.datarefs import to_stored

UPLOAD_DIR = "uploads"
SUFFIXES = (".csv", ".parquet", ".pq")
TMP_PREFIX = ".tmp-upload-"
CHUNK = 1 << 20
MAX_NAME = 200
_PLAIN = re.compile(r"[\w][\w .,()+-]*")


def human_bytes(size: int) -> str:
    """``536870912`` -> ``512 MiB``; small sizes in bytes."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def limit_text(size: int) -> str:
    """A limit as messages name it: ``100 bytes``, ``512 MiB (536870912 bytes)``."""
    short = human_bytes(size)
    return short if short.endswith(" bytes") else f"{short} ({size} bytes)"


def check_upload_name(filename: str | None) -> str:
    """The file name when it is a plain name ending in ``.csv``, ``.parquet`` or ``.pq``; else
    :class:`ValidationError` (field ``file``) naming what is wrong with it."""
    name = unicodedata.normalize("NFC", filename or "").strip()
    if not name:
        raise ValidationError("the upload needs a file name (e.g. games.csv)", field="file")
    if "/" in name or "\\" in name:
        raise ValidationError(
            f"file name {name!r} must be a plain name, without folders ('/' or '\\')", field="file"
        )
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValidationError(f"file name {name!r} must not contain control characters", field="file")
    if name.startswith("."):
        raise ValidationError(
            f"file name {name!r} must not start with '.' (hidden files are not accepted)", field="file"
        )
    if not name.lower().endswith(SUFFIXES):
        suffix = Path(name).suffix or "none"
        raise ValidationError(
            f"file name {name!r} must end in .csv, .parquet or .pq (its ending is {suffix!r})", field="file"
        )
    if len(name) > MAX_NAME:
        raise ValidationError(f"file name {name[:40]!r}... is longer than {MAX_NAME} characters", field="file")
    if not _PLAIN.fullmatch(name):
        raise ValidationError(
            f"file name {name!r} may hold only letters, digits, spaces and . _ - , ( ) +", field="file"
        )
    return name


def upload_root(settings: Settings, root: str | Path | None = None) -> tuple[str, Path]:
    """``(name, folder)`` of the data root an upload goes to: the first one (``data`` = ``DATA_DIR``) by
    default, else ``root`` given by its name (or as its folder); a root that is not configured is refused
    naming the configured ones."""
    roots = settings.named_data_roots
    if root is None or root == "":
        name = next(iter(roots))
        return name, roots[name]
    if isinstance(root, str) and root in roots:
        return root, roots[root]
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        wanted = Path(root).expanduser().resolve()
        for name, folder in roots.items():
            if folder.expanduser().resolve() == wanted:
                return name, folder
    listed = ", ".join(f"{name}={path}" for name, path in roots.items())
    raise ValidationError(
        f"root {str(root)!r} is not one of the data roots (DATA_DIR and setting DATA_ROOTS: {listed})",
        field="root",
    )


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, dest: Path, replace: bool, shown: str) -> None:
    """Move the finished temporary file to ``dest``; without ``replace`` an existing ``dest`` is refused
    (``os.link`` fails on an existing name: no window between the check and the move)."""
    if replace:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise ConflictError(
            f"{shown} already exists; it was not replaced (upload again with replace to overwrite it)",
            field="file",
        ) from None
    except OSError:  # a file system without hard links
        if dest.exists():
            raise ConflictError(
                f"{shown} already exists; it was not replaced (upload again with replace to overwrite it)",
                field="file",
            ) from None
        os.replace(tmp, dest)


def save_upload(
    settings: Settings,
    filename: str | None,
    stream: IO[bytes],
    root: str | Path | None = None,
    *,
    replace: bool = False,
) -> Path:
    """Store the uploaded file ``filename`` read from ``stream`` as ``<root>/uploads/<filename>`` (see the
    module docstring) and return its path. :class:`ValidationError` for a bad name, an unknown root, a file
    over ``MAX_TRAINING_CSV_BYTES`` or one that is not a readable CSV/Parquet file with a header;
    :class:`ConflictError` when the name exists and ``replace`` is not set. Nothing is left behind on
    failure."""
    name = check_upload_name(filename)
    root_name, root_dir = upload_root(settings, root)
    folder = Path(root_dir) / UPLOAD_DIR
    dest = folder / name
    shown = f"@{root_name}/{UPLOAD_DIR}/{name}"
    limit = settings.max_training_csv_bytes
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(
            f"the upload folder of data root {root_name!r} cannot be made: {exc.strerror or exc}", field="file"
        ) from None
    check_data_root(str(dest), settings)  # ``uploads`` must not be a link out of the root
    if dest.is_dir():
        raise ConflictError(f"{shown} is a folder; choose another file name", field="file")
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=Path(name).suffix.lower(), dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            size = 0
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ValidationError(
                        f"{name!r} is larger than the upload limit of {limit_text(limit)} "
                        "(setting MAX_TRAINING_CSV_BYTES); nothing was stored",
                        field="file",
                    )
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            describe_columns(tmp)  # a header and rows pandas can read (or a Parquet footer)
        except ValueError as exc:
            raise ValidationError(f"{name!r} {exc}; nothing was stored", field="file") from None
        os.chmod(tmp, 0o644)
        _publish(tmp, dest, replace, shown)
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)  # after os.link the name in place keeps the data
    return dest


def stored_name(path: Path, settings: Settings) -> str:
    """How a config names an uploaded file (``@data/uploads/games.csv``)."""
    return to_stored(str(path), settings)
