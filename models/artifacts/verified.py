"""Verified artifact reads: nothing is unpickled unless its signature and its checksum verify first.

A pickle runs code when it is loaded, so every read here goes through the same checks, in this order:
the document's signature (:func:`check_signature`, before a byte of the file is read), the path (inside
the artifact folder, or the deployment's GridFS: the :class:`~models.artifacts.base.ArtifactStore`
decides), a recorded SHA-256, and the bytes hashing to it. Then, and only then:

- :func:`read_verified`: the verified bytes (never unpickled); :func:`load_verified` unpickles those same
  bytes, :func:`load_npz_verified` reads arrays from them with ``allow_pickle=False``;
- :func:`verify_file`: the checksum of a file as it streams past (what a check or a copy needs);
- :func:`fetch_pickle` + :class:`PendingPickle`: the fast path for large models with per-block checksums:
  :class:`VerifiedReader` hands the unpickler only blocks whose hash matched.

Errors are :class:`~models.errors.ArtifactError` with a ``reason`` (``checksum_mismatch``,
``checksum_missing``, ``file_missing``, ``empty_file``, ``signature_invalid``, ...) that says what failed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import joblib
import numpy as np

from models.artifacts import blocks
from models.artifacts.base import ArtifactInfo, ArtifactStore
from models.errors import ArtifactError

log = logging.getLogger(__name__)

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
    if store.signer is None or not ref.get("path"):
        return
    state = store.signer.artifact_state(ref)
    if state != "signed":
        _name_a_plainer_problem_first(store, ref)
    store.signer.check_ref(ref, state)


def _name_a_plainer_problem_first(store: ArtifactStore, ref: Ref) -> None:
    """Before refusing an artifact on its signature, say so if its path is refused, its file is gone or no checksum
    is recorded: those say more about the document than "not signed". Reads no byte of the file."""
    store.stat(ref["path"])  # raises path_refused for a path outside the artifact folder
    _require_checksum(store, ref["path"], ref.get("sha256"))


def _require_checksum(store: ArtifactStore, stored_path: str, sha256: str | None) -> None:
    if sha256:
        return
    if not store.stat(stored_path)["exists"]:  # a legacy document naming a file that is gone: say so first
        raise ArtifactError(
            f"artifact file {stored_path} is missing (and no checksum is recorded for it)",
            reason="file_missing",
            path=stored_path,
        )
    raise ArtifactError(
        f"no checksum is recorded for {stored_path}; it cannot be verified",
        reason="checksum_missing",
        path=stored_path,
    )


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
    stored_path = _checkable(store, stored_path, sha256)
    data = store.read_bytes(stored_path, sha256)
    _check_digest(stored_path, sha256, hashlib.sha256(data).hexdigest(), len(data))
    return data


def verify_file(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> int:
    """Check a file against its SHA-256 as it streams past, holding 1 MiB of it at a time; its size.
    Never unpickles anything (what creating an ensemble needs of the base models' files)."""
    stored_path = _checkable(store, stored_path, sha256)
    digest, size = hashlib.sha256(), 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with store.open_stream(stored_path, sha256) as fh:
        while n := fh.readinto(view):
            digest.update(view[:n])
            size += n
    _check_digest(stored_path, sha256, digest.hexdigest(), size)
    return size


# verify_ref reads and checks VERIFY_UNIT_BYTES at a time, the second half of each unit's blocks hashed on a helper
# thread (BLAKE3 releases the GIL): 200 MB in 30 ms instead of 41 ms. The loading reader does not do this: with the
# unpickler holding the GIL between reads, handing halves to a helper measured no faster for any read size.
PARALLEL_HASH_BYTES = 1 << 20
VERIFY_UNIT_BYTES = 8 << 20
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _hash_pool() -> ThreadPoolExecutor | None:
    """The one helper thread that hashes half of a large read, or None on a one-core machine."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None and _usable_cores() > 1:
                _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verified-hash")
    return _pool


def _usable_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the cores this process may run on
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _forget_pool() -> None:  # a forked child has no helper thread: it starts its own when it needs one
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def first_bad_block(
    name: str, chunk: int, view: memoryview, digests: Sequence[bytes], first: int, *, parallel: bool = False
) -> int | None:
    """The index of the first block of ``view`` (blocks ``first``... of ``chunk`` bytes) whose ``name`` digest
    is not ``digests[index]``, or None. With ``parallel``, a view of ``PARALLEL_HASH_BYTES`` or more has its
    second half hashed on the helper thread meanwhile."""

    def bad_in(starts: Sequence[int]) -> int | None:
        for start in starts:
            if blocks.digest(name, view[start : start + chunk]) != digests[first + start // chunk]:
                return first + start // chunk
        return None

    starts = range(0, len(view), chunk)
    pool = _hash_pool() if parallel and len(view) >= PARALLEL_HASH_BYTES else None
    if pool is None:
        return bad_in(starts)
    half = len(starts) // 2
    later = pool.submit(bad_in, starts[half:])
    early = bad_in(starts[:half])
    late = later.result()
    return early if early is not None else late


def verify_ref(store: ArtifactStore, ref: Ref) -> int:
    """Check a file against its ref as it streams past, never unpickling it; its size.

    With per-block digests (covered by the ref's signature, which the caller checked) the blocks are
    checked, with their own hash: BLAKE3 for artifact format 2, 4x faster than the whole file's SHA-256
    that :func:`verify_file` checks for refs without them."""
    info = ArtifactInfo.from_ref(ref)
    if not info.block_digests or not info.chunk_size:
        return verify_file(store, ref.get("path"), ref.get("sha256"))
    stored_path = _checkable(store, info.path, info.sha256)
    chunk = info.chunk_size
    digests = [bytes.fromhex(d) for d in info.block_digests]
    buffer = memoryview(bytearray(chunk * max(1, VERIFY_UNIT_BYTES // chunk)))  # whole blocks per read
    size = index = 0
    with store.open_stream(stored_path, info.sha256) as fh:
        while True:
            n = 0
            while n < len(buffer) and (got := fh.readinto(buffer[n:])):
                n += got
            count = -(-n // chunk)
            if index + count > len(digests):
                raise _mismatch(stored_path, f"the file is longer than the {info.size} bytes recorded")
            bad = first_bad_block(info.block_hash, chunk, buffer[:n], digests, index, parallel=True)
            if bad is not None:
                raise _mismatch(stored_path, f"block {bad} has the wrong {info.block_hash} digest")
            size, index = size + n, index + count
            if n < len(buffer):
                break
    if size != info.size:
        raise _mismatch(stored_path, f"size is {size} bytes, expected {info.size}")
    if not size:
        raise ArtifactError(f"artifact file {stored_path} is empty", reason="empty_file", path=stored_path)
    return size


def _checkable(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> str:
    """The path, if there is one and a checksum to verify it against (else the error saying which is missing)."""
    if not stored_path:
        raise ArtifactError("artifact path is not set", reason="field_missing")
    _require_checksum(store, stored_path, sha256)
    return stored_path


def _check_digest(stored_path: str, expected: str | None, actual: str, size: int) -> None:
    if not size:
        raise ArtifactError(f"artifact file {stored_path} is empty", reason="empty_file", path=stored_path)
    if actual != expected:
        raise _mismatch(stored_path, f"SHA-256 is {actual[:12]}..., expected {(expected or '')[:12]}...")


def load_verified(
    store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None
) -> tuple[Any, list[str]]:
    """Unpickle an artifact after verifying it; return ``(object, warnings)``.

    Version-mismatch warnings from scikit-learn are returned, not raised.
    """
    ref = as_ref(ref_or_path, sha256)
    return unpickle_bytes(read_verified(store, ref), ref.get("path") or "")


def unpickle_bytes(data: bytes, stored_path: str) -> tuple[Any, list[str]]:
    """Unpickle bytes that :func:`read_verified` returned. Never call it on unverified bytes."""
    return _unpickle(io.BytesIO(data), stored_path, lambda: io.BytesIO(data))


class _JoblibStream(Exception):
    """The pickle holds joblib's numpy wrappers (written by ``joblib.dump``): only joblib's reader reads it."""


class _Unpickler(pickle.Unpickler):
    """The C unpickler, which stops at the first sign of joblib's format (older artifacts)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "joblib.numpy_pickle" or module.startswith("joblib.numpy_pickle."):
            raise _JoblibStream(name)
        return super().find_class(module, name)


def load_stream(source: IO[bytes], reopen: Callable[[], IO[bytes]]) -> Any:
    """Unpickle a verified stream with the C unpickler; a file that ``joblib.dump`` wrote (numpy arrays in
    joblib's own layout) is read again from ``reopen()`` - again verified - by ``joblib.load``."""
    try:
        return _Unpickler(source).load()
    except _JoblibStream:
        again = reopen()
        try:  # joblib seeks in its file: the whole (verified) stream, in memory; older artifacts only
            data = again.read()
        finally:
            again.close()
        return joblib.load(io.BytesIO(data))


def _unpickle(source: IO[bytes], stored_path: str, reopen: Callable[[], IO[bytes]]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = load_stream(source, reopen)
        except ArtifactError:
            raise
        except Exception as exc:  # verified bytes that still fail to load: version skew, missing class
            raise ArtifactError(
                f"artifact file {stored_path} passed verification but could not be "
                f"loaded: {exc.__class__.__name__}: {exc}",
                reason="unpickle_error",
                path=stored_path,
            ) from None
    notes = [str(w.message) for w in caught if "version" in str(w.message).lower()]
    return obj, notes


def parse_json_bytes(data: bytes, stored_path: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"artifact file {stored_path} is not valid JSON: {exc}", reason="unpickle_error", path=stored_path
        ) from None


def load_npz_verified(
    store: ArtifactStore, ref_or_path: Ref | str | None, sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` artifact, loaded with ``allow_pickle=False`` (no code can run)."""
    ref = as_ref(ref_or_path, sha256)
    stored_path = ref.get("path")
    data = read_verified(store, ref)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise ArtifactError(
            f"artifact file {stored_path} is not a valid array archive: {exc}",
            reason="unpickle_error",
            path=stored_path,
        ) from None


def _mismatch(path: str, what: str) -> ArtifactError:
    return ArtifactError(
        f"artifact file {path} fails verification: {what} (changed or corrupted); it was not loaded",
        reason="checksum_mismatch",
        path=path,
    )


class VerifiedReader(io.RawIOBase):
    """A forward-only file object that hands out only bytes whose block digest matched.

    Per-block digests are BLAKE3 (artifact format 2) or SHA-256 (format 1): :mod:`models.artifacts.blocks`.
    The file is read once, in order, in the reading thread:

    - a request that covers whole blocks (a numpy array's bytes, say) has them read straight into the
      caller's buffer and checks each one's digest there before returning: those bytes are copied once,
      as ``pickle.load`` from a plain file copies them;
    - any other block is read into the reader's one private buffer, checked, and served from it.

    Either way no byte is returned before its whole block verified, and the bytes returned are the very
    bytes hashed, so changing the file during the load achieves nothing; a block that fails is zeroed in
    the caller's buffer and the read raises ``checksum_mismatch``. Block 0 is checked before the reader is
    returned: a replaced or early-corrupted file never reaches the unpickler. Memory: one block.

    (An earlier reader verified blocks on a helper thread ahead of the unpickler; with BLAKE3 the hashing
    costs less than handing blocks between threads under the GIL did, and handing halves of large reads to a
    helper measured no faster either: bench/bench_cold_load.py.)
    """

    def __init__(self, source: bytes | IO[bytes], info: ArtifactInfo) -> None:
        super().__init__()
        if not info.chunk_size or not info.block_digests:
            raise ValueError("VerifiedReader needs per-block checksums")
        self._src = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        self._info = info
        self._size = info.size
        self._chunk = info.chunk_size
        self._blocks = -(-info.size // info.chunk_size)
        self._digests = [bytes.fromhex(d) for d in info.block_digests]
        self._buf = bytearray(min(self._chunk, max(info.size, 1)))
        self._block = memoryview(b"")  # the verified block being served from the private buffer
        self._off = 0  # position in that block
        self._pos = 0  # position in the file (bytes handed out)
        self._next = 0  # the next block to read from the source
        self._failed: str | None = None
        self.buffered_bytes = 0  # bytes served from the private buffer (the rest went straight to the caller)
        actual_size = _stream_size(self._src)
        if actual_size != info.size or len(self._digests) != self._blocks or not info.size:
            self._src.close()
            raise _mismatch(info.path, f"size is {actual_size} bytes, expected {info.size}")
        try:
            self._fill()
        except ArtifactError:
            self._src.close()
            raise

    def _read_blocks(self, view: memoryview, first: int) -> None:
        """Read ``view``'s bytes (blocks ``first``... in order) from the source and check each block's digest;
        on any failure zero ``view`` and raise. Afterwards ``view`` holds only verified bytes."""
        if self._failed:
            raise _mismatch(self._info.path, self._failed)
        got, problem = 0, None
        try:
            while got < len(view):
                n = self._src.readinto(view[got:])
                if not n:
                    break
                got += n
            if got != len(view):
                problem = f"block {first + got // self._chunk} ended early"
            self._next = first + -(-len(view) // self._chunk)
            if problem is None and self._next >= self._blocks:
                if self._src.read(1):
                    problem = "the file grew while it was read"
                self._src.close()
        except OSError as exc:
            problem = f"read error: {exc}"
        name = self._info.block_hash
        bad = first_bad_block(name, self._chunk, view[:got], self._digests, first) if problem is None else None
        if bad is not None:
            end = min((bad + 1) * self._chunk, self._size)
            problem = f"block {bad} (bytes {bad * self._chunk}-{end}) has the wrong {name} digest"
        if problem is not None:
            view[:] = bytes(len(view))
            self._failed = problem
            self._block, self._off = memoryview(b""), 0
            raise _mismatch(self._info.path, problem)

    def _fill(self) -> bool:
        """Read and verify the next block into the private buffer; False at the end of the file."""
        if self._next >= self._blocks:
            return False
        index = self._next
        length = min(self._chunk, self._size - index * self._chunk)
        view = memoryview(self._buf)[:length]
        self._read_blocks(view, index)
        self._block, self._off = view, 0
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out):
            left = len(self._block) - self._off
            if left:
                n = min(left, len(out) - done)
                out[done : done + n] = self._block[self._off : self._off + n]
                self._off += n
                self.buffered_bytes += n
                done += n
                continue
            if self._next >= self._blocks:
                break
            whole = min((len(out) - done) // self._chunk, (self._size - self._next * self._chunk) // self._chunk)
            if whole > 0:  # whole blocks: read and checked in the caller's buffer
                length = whole * self._chunk
                self._read_blocks(out[done : done + length], self._next)
                done += length
            elif not self._fill():
                break
        self._pos += done
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        if self._off + size <= len(self._block):  # the common case: within the current block, one copy
            chunk = self._block[self._off : self._off + size].tobytes()
            self._off += size
            self._pos += size
            self.buffered_bytes += size
            return chunk
        out = bytearray(min(size, self._size - self._pos))
        return bytes(out[: self.readinto(out)])

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._size - self._pos if size is None or size < 0 else size
        line = bytearray()
        while len(line) < limit:
            if self._off >= len(self._block):
                if not self._fill():
                    break
                continue
            block = self._block
            end = min(len(block), self._off + limit - len(line))
            newline = self._buf.find(b"\n", self._off, end)
            stop = newline + 1 if newline >= 0 else end
            line += block[self._off : stop]
            self.buffered_bytes += stop - self._off
            self._pos += stop - self._off
            self._off = stop
            if newline >= 0:
                break
        return bytes(line)

    def close(self) -> None:
        if not self.closed:
            self._src.close()
        super().close()


def _stream_size(fh: IO[bytes]) -> int:
    try:
        return os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        here = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        fh.seek(here)
        return size


def fetch_pickle(store: ArtifactStore, ref: dict[str, Any]) -> PendingPickle:
    """Open a pickle artifact and run every check that can run before unpickling starts.

    With per-block checksums block 0 is checked here (the rest while it
    loads); without them the whole file is verified here (SHA-256).
    """
    info = ArtifactInfo.from_ref(ref)
    check_signature(store, ref)
    if info.block_digests and info.chunk_size:
        if not info.path:
            raise ArtifactError("artifact path is not set", reason="field_missing")
        stream = store.open_stream(info.path, info.sha256)
        if _stream_size(stream) == 0:
            stream.close()
            raise ArtifactError(f"artifact file {info.path} is empty", reason="empty_file", path=info.path)
        return PendingPickle(
            info,
            None,
            VerifiedReader(stream, info),
            lambda: VerifiedReader(store.open_stream(info.path, info.sha256), info),
        )
    return PendingPickle(info, read_checksummed(store, info.path, info.sha256), None)


SMALL_READ_BUFFER = 64 * 1024


@dataclass
class PendingPickle:
    """A pickle artifact that passed the up-front checks; :meth:`load` unpickles it."""

    info: ArtifactInfo
    data: bytes | None
    reader: VerifiedReader | None
    reopen: Callable[[], VerifiedReader] | None = None  # for files joblib wrote (read twice)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.info.size

    def load(self) -> tuple[Any, list[str]]:
        if self.reader is None:
            return unpickle_bytes(self.data or b"", self.info.path)
        # the C unpickler reads a pickle's many small opcodes and frames one call each: a C-level buffer in
        # front of the (Python) verified reader serves those, and large reads go straight through it
        source = io.BufferedReader(self.reader, buffer_size=SMALL_READ_BUFFER)
        try:
            return _unpickle(source, self.info.path, self.reopen or (lambda: VerifiedReader(b"", self.info)))
        finally:
            self.reader.close()
