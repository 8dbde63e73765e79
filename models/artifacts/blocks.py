"""Per-block digests of artifact files: what lets a large pickle be verified while it loads.

Every artifact ref records the SHA-256 of the whole file (``sha256``: content addressing, copies, checks)
and, for the fast verified load (:class:`~models.artifacts.verified.VerifiedReader`), a digest of every
``chunk_size`` block. Which hash the blocks use is the artifact's *format*:

- format 1 (older artifacts): ``chunk_sha256``, SHA-256 of 256 KiB blocks;
- format 2 (written now, ``"format": 2`` in the ref): ``chunk_blake3``, BLAKE3 of 128 KiB blocks. BLAKE3 hashes
  about 4x faster than SHA-256 here and releases the GIL, so a load hashes each byte once, in the
  buffer the unpickler receives it in, at a cost close to reading the file.

Both formats load and verify as they are; ``python -m cli artifacts sign --all`` converts format-1 refs to
format 2 after checking their files against the recorded checksums (and their signatures, when signed).
The signature covers whichever digests a ref holds (:func:`models.artifacts.signing.artifact_message`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import blake3

FORMAT = 2
BLOCK_HASH = "blake3"
CHUNK_SIZE = 128 * 1024  # a numpy array of a few blocks goes straight into its own buffer (VerifiedReader)
FIELDS = {"sha256": "chunk_sha256", "blake3": "chunk_blake3"}  # block hash -> the ref field holding its digests


class Hasher(Protocol):
    def update(self, data: Any, /) -> Any: ...

    def hexdigest(self) -> str: ...

    def digest(self) -> bytes: ...


def new_hasher(name: str = BLOCK_HASH) -> Hasher:
    """An incremental hasher for blocks of the named hash (``blake3`` or ``sha256``)."""
    if name == "blake3":
        return blake3.blake3(max_threads=1)  # one thread: the reader already overlaps hashing with unpickling
    if name == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown block hash {name!r}; known: {', '.join(FIELDS)}")


def hexdigest(name: str, data: Any) -> str:
    """The named hash of one block (any buffer: bytes, bytearray, memoryview)."""
    hasher = new_hasher(name)
    hasher.update(data)
    return hasher.hexdigest()


def digest(name: str, data: Any) -> bytes:
    """The named hash of one block, as bytes."""
    hasher = new_hasher(name)
    hasher.update(data)
    return hasher.digest()


def digests_of(data: bytes | memoryview, chunk_size: int = CHUNK_SIZE, name: str = BLOCK_HASH) -> list[str]:
    """The per-block digests of bytes held in memory (what the writer computes as they stream past)."""
    view = memoryview(data).cast("B")
    return [hexdigest(name, view[i : i + chunk_size]) for i in range(0, len(view), chunk_size)]


def block_digests(ref: dict[str, Any]) -> tuple[str, Sequence[str]] | None:
    """``(hash name, digests)`` of a ref's per-block checksums (format 2 first), None when it has none."""
    for name in ("blake3", "sha256"):
        digests = ref.get(FIELDS[name])
        if digests:
            return name, digests
    return None


def artifact_format(ref: dict[str, Any]) -> int:
    """1 for refs whose blocks (if any) are SHA-256, 2 for BLAKE3 blocks."""
    found = block_digests(ref)
    return FORMAT if found and found[0] == "blake3" else 1


def check_blocks(data: bytes | memoryview, ref: dict[str, Any]) -> str | None:
    """Why ``data`` does not match the ref's per-block digests; None when it does (or the ref has none)."""
    found = block_digests(ref)
    if found is None:
        return None
    size = ref.get("chunk_size")
    if not isinstance(size, int) or size <= 0:
        return "per-block checksums without a block size"
    if digests_of(data, size, found[0]) != list(found[1]):
        return "per-block checksums do not match"
    return None
