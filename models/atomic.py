"""Crash-safe file writes: temp file in the same folder, flush + fsync, ``os.replace``, fsync the folder.

A reader sees either the old file or the complete new one, never a partial
write. Temp files start with ``.tmp-`` so cleanup can recognise leftovers.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, IO

TMP_PREFIX = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _HashingWriter:
    """A file wrapper that hashes what passes through it, so no second read is needed."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def tell(self) -> int:  # joblib aligns numpy arrays on the current position
        return self.size


def atomic_write(path: Path, writer: Callable[[IO[bytes]], None]) -> tuple[str, int]:
    """Write ``path`` atomically via ``writer(fileobj)``; return ``(sha256 hex, size)``.

    On any error the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            hw = _HashingWriter(fh)
            writer(hw)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return hw.sha.hexdigest(), hw.size


def atomic_write_bytes(path: Path, data: bytes) -> tuple[str, int]:
    return atomic_write(path, lambda fh: fh.write(data))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
