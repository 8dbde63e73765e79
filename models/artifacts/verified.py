"""Artifact I/O: where run files live, how they are written, and how they are verified before loading.

A pickle runs code when it is loaded, so :func:`load_verified` reads the
file's bytes once, checks their SHA-256 against the value recorded in
MongoDB, and only then unpickles those same bytes. A path from a document is
accepted only if it resolves inside the artifact folder.

``ArtifactStore`` is the small interface behind which storage lives (the
local folder today; other backends can implement the same four methods).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import IO, Any

import joblib
import numpy as np

from models.errors import ArtifactError

log = logging.getLogger(__name__)

from models.artifacts.base import ArtifactInfo, ArtifactStore

Ref = dict[str, Any]


def as_ref(ref_or_path: Ref | str | None, sha256: str | None = None) -> Ref:
    """A document's artifact ref (``{"path", "sha256", "size", ..., "signature"}``) from a ref or a path."""
    if isinstance(ref_or_path, dict):
        return ref_or_path
    return {"path": ref_or_path, "sha256": sha256}


def check_signature(store: ArtifactStore, ref: Ref) -> None:
    """Refuse (``signature_invalid`` / ``signature_missing``) an artifact whose signature does not verify.

    Runs before the file is opened, so a forged document never gets a byte of its file read.
    """
    if store.signer is not None and ref.get("path"):
        store.signer.check_ref(ref)


def read_verified(store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None) -> bytes:
    """The file's bytes, only if its signature verifies and they hash to the recorded SHA-256.

    Give the document's whole ref (with ``signature``); a bare path has no signature.
    Never unpickles anything.
    """
    ref = as_ref(ref_or_path, sha256)
    check_signature(store, ref)
    return read_checksummed(store, ref.get("path"), ref.get("sha256"))


def read_checksummed(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> bytes:
    """The file's bytes, only if they hash to ``sha256`` (no signature check: for copying bytes, never
    for bytes that are unpickled). Never unpickles anything."""
    if not stored_path:
        raise ArtifactError("artifact path is not set", reason="field_missing")
    if not sha256:
        raise ArtifactError(f"no checksum is recorded for {stored_path}; it cannot be verified",
                            reason="checksum_missing", path=stored_path)
    data = store.read_bytes(stored_path, sha256)
    if not data:
        raise ArtifactError(f"artifact file {stored_path} is empty", reason="empty_file", path=stored_path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"artifact file {stored_path} fails verification: SHA-256 is {actual[:12]}..., "
                            f"expected {sha256[:12]}... (changed or corrupted); it was not loaded",
                            reason="checksum_mismatch", path=stored_path)
    return data


def load_verified(store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None
                  ) -> tuple[Any, list[str]]:
    """Unpickle an artifact after verifying its signature and checksum; return ``(object, warnings)``.

    Version-mismatch warnings from scikit-learn are returned, not raised.
    """
    ref = as_ref(ref_or_path, sha256)
    return unpickle_bytes(read_verified(store, ref), ref.get("path") or "")


def unpickle_bytes(data: bytes, stored_path: str) -> tuple[Any, list[str]]:
    """Unpickle bytes that :func:`read_verified` returned. Never call it on unverified bytes."""
    return _unpickle(io.BytesIO(data), stored_path)


def _unpickle(source: IO[bytes], stored_path: str) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = joblib.load(source)
        except ArtifactError:
            raise
        except Exception as exc:  # verified bytes that still fail to load: version skew, missing class
            raise ArtifactError(f"artifact file {stored_path} passed verification but could not be "
                                f"loaded: {exc.__class__.__name__}: {exc}", reason="unpickle_error",
                                path=stored_path) from None
    notes = [str(w.message) for w in caught if "version" in str(w.message).lower()]
    return obj, notes


def load_json_verified(store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None) -> Any:
    ref = as_ref(ref_or_path, sha256)
    return parse_json_bytes(read_verified(store, ref), ref.get("path") or "")


def parse_json_bytes(data: bytes, stored_path: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact file {stored_path} is not valid JSON: {exc}", reason="unpickle_error",
                            path=stored_path) from None


def load_npz_verified(store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None
                      ) -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` artifact, loaded with ``allow_pickle=False`` (no code can run)."""
    ref = as_ref(ref_or_path, sha256)
    stored_path = ref.get("path")
    data = read_verified(store, ref)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise ArtifactError(f"artifact file {stored_path} is not a valid array archive: {exc}",
                            reason="unpickle_error", path=stored_path) from None


def _mismatch(path: str, what: str) -> ArtifactError:
    return ArtifactError(f"artifact file {path} fails verification: {what} (changed or corrupted); "
                         "it was not loaded", reason="checksum_mismatch", path=path)


# One hashing thread: measured on 2 cores it keeps ahead of the (pure-Python) unpickler, while more
# threads only take CPU time from it (bench/bench_training.py: 1 thread 1.38x a bare load, 4 threads 1.6x).
class VerifiedReader(io.RawIOBase):
    """A file object that hands out only bytes whose block has passed SHA-256.

    A background thread reads the source block by block into a private
    buffer and hashes each block there (file reads and hashlib release the
    GIL), so reading and verifying run alongside unpickling instead of before
    it, while the unpickler can never get a byte that has not been checked
    against the checksum recorded in MongoDB. The bytes served are the very
    bytes hashed, so changing the file meanwhile achieves nothing. Block 0 is
    checked before the reader is returned: a replaced or early-corrupted file
    never reaches the unpickler.
    """

    def __init__(self, source: bytes | IO[bytes], info: ArtifactInfo) -> None:
        super().__init__()
        if not info.chunk_size or not info.chunk_sha256:
            raise ValueError("VerifiedReader needs per-chunk checksums")
        self._src = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        self._info = info
        self._size = info.size
        self._buf = bytearray(info.size)
        self._data = memoryview(self._buf)
        self._pos = 0
        self._verified = 0  # every byte before this offset has been read and verified
        self._failed: str | None = None
        self._cond = threading.Condition()
        actual_size = _stream_size(self._src)
        expected = -(-info.size // info.chunk_size)
        if actual_size != info.size or len(info.chunk_sha256) != expected:
            self._src.close()
            raise _mismatch(info.path, f"size is {actual_size} bytes, expected {info.size}")
        self._verify_block(0)
        if self._failed:
            self._src.close()
            raise _mismatch(info.path, self._failed)
        if expected > 1:
            threading.Thread(target=self._verify_rest, args=(expected,), name="artifact-verify",
                             daemon=True).start()
        else:
            self._src.close()

    def _verify_block(self, index: int) -> None:
        size = self._info.chunk_size or 0
        start, end = index * size, min((index + 1) * size, self._size)
        view = self._data[start:end]
        got = 0
        while got < len(view):
            n = self._src.readinto(view[got:])
            if not n:
                break
            got += n
        actual = hashlib.sha256(view).hexdigest() if got == len(view) else "(file ended early)"
        with self._cond:
            if got == len(view) and actual == self._info.chunk_sha256[index]:  # type: ignore[index]
                self._verified = end
            else:
                self._failed = f"block {index} (bytes {start}-{end}) has SHA-256 {actual[:12]}..."
            self._cond.notify_all()

    def _verify_rest(self, blocks: int) -> None:
        try:
            for index in range(1, blocks):
                if self._failed or self.closed:
                    return
                self._verify_block(index)
            if not self._failed and self._src.read(1):
                with self._cond:
                    self._failed = "the file grew while it was read"
                    self._verified = min(self._verified, self._size - 1)
                    self._cond.notify_all()
        except Exception as exc:  # an I/O error: readers waiting on later blocks must not hang
            with self._cond:
                self._failed = self._failed or f"read error: {exc}"
                self._cond.notify_all()
        finally:
            self._src.close()

    def _wait_for(self, end: int) -> None:
        if end <= self._verified:
            return
        with self._cond:
            while self._verified < end and self._failed is None:
                self._cond.wait()
            if self._verified < end:
                raise _mismatch(self._info.path, self._failed or "not verified")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = max(0, min(len(out), self._size - self._pos))
        self._wait_for(self._pos + n)
        out[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        self._wait_for(end)
        chunk = self._data[self._pos:end].tobytes()
        self._pos = end
        return chunk

    def readline(self, size: int = -1) -> bytes:
        limit = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        self._wait_for(limit)
        newline = self._buf.find(b"\n", self._pos, limit)
        return self.read((newline + 1 - self._pos) if newline >= 0 else limit - self._pos)


def _stream_size(fh: IO[bytes]) -> int:
    try:
        return os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        here = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        fh.seek(here)
        return size


def fetch_pickle(store: ArtifactStore, ref: dict[str, Any]) -> "PendingPickle":
    """Open a pickle artifact and run every check that can run before unpickling starts.

    With per-block checksums block 0 is checked here (the rest while it
    loads); without them the whole file is verified here.
    """
    info = ArtifactInfo.from_ref(ref)
    check_signature(store, ref)
    if info.chunk_sha256 and info.chunk_size:
        if not info.path:
            raise ArtifactError("artifact path is not set", reason="field_missing")
        stream = store.open_stream(info.path, info.sha256)
        if _stream_size(stream) == 0:
            stream.close()
            raise ArtifactError(f"artifact file {info.path} is empty", reason="empty_file", path=info.path)
        return PendingPickle(info, None, VerifiedReader(stream, info))
    return PendingPickle(info, read_checksummed(store, info.path, info.sha256), None)


@dataclass
class PendingPickle:
    """A pickle artifact that passed the up-front checks; :meth:`load` unpickles it."""

    info: ArtifactInfo
    data: bytes | None
    reader: VerifiedReader | None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.info.size

    def load(self) -> tuple[Any, list[str]]:
        if self.reader is None:
            return unpickle_bytes(self.data or b"", self.info.path)
        try:
            return _unpickle(self.reader, self.info.path)
        finally:
            self.reader.close()


