"""Crash-safe file writes: temp file in the same folder, flush + fsync, ``os.replace``, fsync the folder.

A reader sees either the old file or the complete new one, never a partial
write. Temp files start with ``.tmp-`` so cleanup can recognise leftovers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from models.artifacts import blocks
from models.artifacts.blocks import CHUNK_SIZE

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
    """A file wrapper that hashes what passes through it, so no second read is needed.

    Besides the SHA-256 of the whole file it keeps a digest of every ``chunk_size`` block (BLAKE3: artifact
    format 2, :mod:`models.artifacts.blocks`), which lets a reader verify and consume a large file block by
    block (see ``models.artifacts.verified.VerifiedReader``).
    """

    def __init__(self, fh: IO[bytes], chunk_size: int = CHUNK_SIZE, block_hash: str = blocks.BLOCK_HASH) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0
        self.chunk_size = chunk_size
        self.block_hash = block_hash
        self.chunks: list[str] = []
        self._chunk = blocks.new_hasher(block_hash)
        self._in_chunk = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += view.nbytes
        pos = 0
        while pos < view.nbytes:
            take = min(self.chunk_size - self._in_chunk, view.nbytes - pos)
            self._chunk.update(view[pos : pos + take])
            self._in_chunk += take
            pos += take
            if self._in_chunk == self.chunk_size:
                self._close_chunk()
        return self.fh.write(data)

    def _close_chunk(self) -> None:
        self.chunks.append(self._chunk.hexdigest())
        self._chunk = blocks.new_hasher(self.block_hash)
        self._in_chunk = 0

    def finish(self) -> list[str]:
        if self._in_chunk:
            self._close_chunk()
        return self.chunks

    def flush(self) -> None:
        self.fh.flush()

    def tell(self) -> int:  # joblib aligns numpy arrays on the current position
        return self.size


@dataclass(frozen=True)
class WriteResult:
    sha256: str
    size: int
    chunk_size: int
    block_digests: list[str]
    block_hash: str = blocks.BLOCK_HASH


def atomic_write(path: Path, writer: Callable[[IO[bytes]], None], chunk_size: int = CHUNK_SIZE) -> WriteResult:
    """Write ``path`` atomically via ``writer(fileobj)`` and return its checksums and size.

    On any error the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            hw = _HashingWriter(fh, chunk_size)
            writer(hw)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return WriteResult(hw.sha.hexdigest(), hw.size, chunk_size, hw.finish(), hw.block_hash)


def atomic_write_bytes(path: Path, data: bytes) -> WriteResult:
    return atomic_write(path, lambda fh: fh.write(data))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
