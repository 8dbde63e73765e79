"""The artifact store interface: names, infos, the ``ArtifactStore`` ABC and the writers of each format."""

from __future__ import annotations

import io
import json
import logging
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from models.artifacts import blocks

log = logging.getLogger(__name__)


ARTIFACT_KINDS = ("model", "scaler", "features", "metrics", "oof")
SUFFIXES = {
    "model": "_model.pkl",
    "scaler": "_scaler.pkl",
    "features": "_features.json",
    "metrics": "_metrics.json",
    "oof": "_oof.npz",
    # ensembles (models/ensembles/): the fitted meta-model and the ensemble's JSON spec
    "ensemble": "_ensemble.pkl",
    "ensemble_spec": "_ensemble.json",
}


@dataclass(frozen=True)
class ArtifactInfo:
    """One written artifact: its stored (relative, ``/``-separated) path, checksums and size.

    ``block_digests`` holds a digest of each ``chunk_size`` block, so a large pickle can be verified block
    by block while it loads (:class:`VerifiedReader`); ``block_hash`` says which hash (``blake3`` for
    artifact format 2, ``sha256`` for format 1: :mod:`models.artifacts.blocks`).
    """

    path: str
    sha256: str
    size: int
    chunk_size: int | None = None
    block_digests: tuple[str, ...] | None = None
    signature: str | None = None  # models/artifacts/signing.py: over the name, SHA-256, size and blocks
    block_hash: str = blocks.BLOCK_HASH

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.block_digests is not None:
            out["chunk_size"] = self.chunk_size
            out[blocks.FIELDS[self.block_hash]] = list(self.block_digests)
            if self.block_hash == "blake3":
                out["format"] = blocks.FORMAT
        if self.signature:
            out["signature"] = self.signature
        return out

    @classmethod
    def from_ref(cls, ref: dict[str, Any]) -> ArtifactInfo:
        found = blocks.block_digests(ref)
        return cls(
            path=ref.get("path") or "",
            sha256=ref.get("sha256") or "",
            size=ref.get("size") or 0,
            chunk_size=ref.get("chunk_size"),
            block_digests=tuple(found[1]) if found else None,
            signature=ref.get("signature"),
            block_hash=found[0] if found else blocks.BLOCK_HASH,
        )


def artifact_name(run_id: str, kind: str) -> str:
    return f"{run_id}{SUFFIXES[kind]}"


class ArtifactStore(ABC):
    """Where artifact bytes live. Paths given and returned are the ones stored in documents.

    ``signer`` (set on the store :func:`models.artifacts.routing.get_store` returns): signs what is
    written and checks signatures before reading; a bare backend (None) checks checksums only.
    """

    signer: Any = None

    @abstractmethod
    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        """Write ``name`` atomically (complete or absent) and return its info."""

    @abstractmethod
    def read_bytes(self, stored_path: str, sha256: str | None = None) -> bytes:
        """The file's bytes; :class:`ArtifactError` if the path is refused or the file is missing.

        ``sha256`` is a hint for caching stores (content-addressed caches); callers still verify.
        """

    def open_stream(self, stored_path: str, sha256: str | None = None) -> IO[bytes]:
        """A binary stream of the file, for readers that verify as they go (default: its bytes in memory)."""
        return io.BytesIO(self.read_bytes(stored_path, sha256))

    @abstractmethod
    def delete(self, stored_path: str) -> bool:
        """Remove the file; False when it was not there."""

    @abstractmethod
    def stat(self, stored_path: str) -> dict[str, Any]:
        """``{"exists": bool, "size": int | None, "mtime": float | None}`` without reading the file."""

    @abstractmethod
    def list_paths(self) -> list[str]:
        """Stored paths of every artifact present (temp files excluded)."""


PICKLE_PROTOCOL = 5


def pickle_writer(obj: Any) -> Callable[[IO[bytes]], None]:
    """A plain pickle (protocol 5): ``pickle.load`` and ``joblib.load`` both open it, and the loader reads
    it with the C unpickler (numpy arrays come back without copies, straight from the verified stream)."""
    return lambda fh: pickle.dump(obj, fh, protocol=PICKLE_PROTOCOL)


def json_writer(obj: Any) -> Callable[[IO[bytes]], None]:
    return lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def npz_writer(arrays: dict[str, np.ndarray]) -> Callable[[IO[bytes]], None]:
    def write(fh: IO[bytes]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fh.write(buf.getvalue())

    return write
