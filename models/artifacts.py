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
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable

import joblib
import numpy as np

from .atomic import TMP_PREFIX, atomic_write
from .errors import ArtifactError
from .settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

ARTIFACT_KINDS = ("model", "scaler", "features", "metrics", "oof")
SUFFIXES = {"model": "_model.pkl", "scaler": "_scaler.pkl", "features": "_features.json",
            "metrics": "_metrics.json", "oof": "_oof.npz"}


@dataclass(frozen=True)
class ArtifactInfo:
    """One written artifact: its stored (relative, ``/``-separated) path, checksum and size."""

    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def artifact_name(run_id: str, kind: str) -> str:
    return f"{run_id}{SUFFIXES[kind]}"


class ArtifactStore(ABC):
    """Where artifact bytes live. Paths given and returned are the ones stored in documents."""

    @abstractmethod
    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        """Write ``name`` atomically (complete or absent) and return its info."""

    @abstractmethod
    def read_bytes(self, stored_path: str) -> bytes:
        """The file's bytes; :class:`ArtifactError` if the path is refused or the file is missing."""

    @abstractmethod
    def delete(self, stored_path: str) -> bool:
        """Remove the file; False when it was not there."""

    @abstractmethod
    def stat(self, stored_path: str) -> dict[str, Any]:
        """``{"exists": bool, "size": int | None}`` without reading the file."""

    @abstractmethod
    def list_paths(self) -> list[str]:
        """Stored paths of every artifact present (temp files excluded)."""


class LocalArtifactStore(ArtifactStore):
    """Artifacts in one local folder (``ARTIFACT_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root = Path(os.path.realpath(self.root))
        try:
            self.prefix = self._real_root.relative_to(Path(os.path.realpath(PROJECT_ROOT))).as_posix()
        except ValueError:
            self.prefix = ""

    def stored_path(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def resolve(self, stored_path: str) -> Path:
        """The real file for a stored path, refusing anything that could leave the artifact folder."""
        if not isinstance(stored_path, str) or not stored_path:
            raise ArtifactError("artifact path is empty", reason="path_refused", path=str(stored_path))
        if "\x00" in stored_path or "\\" in stored_path:
            raise ArtifactError(f"artifact path {stored_path!r} has forbidden characters",
                                reason="path_refused", path=stored_path)
        pure = PurePosixPath(stored_path)
        if pure.is_absolute() or stored_path.startswith("~"):
            raise ArtifactError(f"artifact path {stored_path!r} is absolute; only paths inside the "
                                "artifact folder are loaded", reason="path_refused", path=stored_path)
        if ".." in pure.parts:
            raise ArtifactError(f"artifact path {stored_path!r} contains '..'; only paths inside the "
                                "artifact folder are loaded", reason="path_refused", path=stored_path)
        rel = pure
        if self.prefix and stored_path.startswith(self.prefix + "/"):
            rel = PurePosixPath(stored_path[len(self.prefix) + 1:])
        elif len(pure.parts) > 1:
            raise ArtifactError(f"artifact path {stored_path!r} is not inside the artifact folder "
                                f"{self.prefix or str(self.root)!r}", reason="path_refused", path=stored_path)
        candidate = self._real_root.joinpath(*rel.parts)
        real = Path(os.path.realpath(candidate))
        if real.parent != self._real_root:
            raise ArtifactError(f"artifact path {stored_path!r} resolves outside the artifact folder "
                                "(symbolic link?); refused", reason="path_refused", path=stored_path)
        return real

    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        if "/" in name or name.startswith("."):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        try:
            sha, size = atomic_write(self.root / name, writer)
        except OSError as exc:
            raise ArtifactError(f"could not write artifact {name} in {self.root}: {exc.strerror or exc}",
                                reason="write_error", path=name) from exc
        return ArtifactInfo(self.stored_path(name), sha, size)

    def read_bytes(self, stored_path: str) -> bytes:
        path = self.resolve(stored_path)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise ArtifactError(f"artifact file {stored_path} is missing", reason="file_missing",
                                path=stored_path) from None
        except IsADirectoryError:
            raise ArtifactError(f"artifact path {stored_path} is a folder", reason="path_refused",
                                path=stored_path) from None
        except OSError as exc:
            raise ArtifactError(f"artifact file {stored_path} cannot be read: {exc.strerror}",
                                reason="file_unreadable", path=stored_path) from None

    def delete(self, stored_path: str) -> bool:
        try:
            self.resolve(stored_path).unlink()
            return True
        except FileNotFoundError:
            return False

    def stat(self, stored_path: str) -> dict[str, Any]:
        path = self.resolve(stored_path)
        try:
            return {"exists": path.is_file(), "size": path.stat().st_size}
        except FileNotFoundError:
            return {"exists": False, "size": None}

    def list_paths(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(self.stored_path(p.name) for p in self.root.iterdir()
                      if p.is_file() and not p.name.startswith(TMP_PREFIX))

    def temp_files(self) -> list[Path]:
        """Leftover temp files of interrupted writes (safe to delete when no write runs)."""
        return sorted(p for p in self.root.glob(TMP_PREFIX + "*")) if self.root.is_dir() else []


def get_store(settings: Settings) -> ArtifactStore:
    """The configured artifact store."""
    return LocalArtifactStore(settings.artifact_dir)


def read_verified(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> bytes:
    """The file's bytes, only if they hash to ``sha256``. Never unpickles anything."""
    if not stored_path:
        raise ArtifactError("artifact path is not set", reason="field_missing")
    if not sha256:
        raise ArtifactError(f"no checksum is recorded for {stored_path}; it cannot be verified",
                            reason="checksum_missing", path=stored_path)
    data = store.read_bytes(stored_path)
    if not data:
        raise ArtifactError(f"artifact file {stored_path} is empty", reason="empty_file", path=stored_path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"artifact file {stored_path} fails verification: SHA-256 is {actual[:12]}..., "
                            f"expected {sha256[:12]}... (changed or corrupted); it was not loaded",
                            reason="checksum_mismatch", path=stored_path)
    return data


def load_verified(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> tuple[Any, list[str]]:
    """Unpickle an artifact after verifying it; return ``(object, warnings)``.

    Version-mismatch warnings from scikit-learn are returned, not raised.
    """
    return unpickle_bytes(read_verified(store, stored_path, sha256), stored_path or "")


def unpickle_bytes(data: bytes, stored_path: str) -> tuple[Any, list[str]]:
    """Unpickle bytes that :func:`read_verified` returned. Never call it on unverified bytes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = joblib.load(io.BytesIO(data))
        except Exception as exc:  # verified bytes that still fail to load: version skew, missing class
            raise ArtifactError(f"artifact file {stored_path} passed verification but could not be "
                                f"loaded: {exc.__class__.__name__}: {exc}", reason="unpickle_error",
                                path=stored_path) from None
    notes = [str(w.message) for w in caught if "version" in str(w.message).lower()]
    return obj, notes


def load_json_verified(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> Any:
    return parse_json_bytes(read_verified(store, stored_path, sha256), stored_path or "")


def parse_json_bytes(data: bytes, stored_path: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact file {stored_path} is not valid JSON: {exc}", reason="unpickle_error",
                            path=stored_path) from None


def load_npz_verified(store: ArtifactStore, stored_path: str | None, sha256: str | None) -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` artifact, loaded with ``allow_pickle=False`` (no code can run)."""
    data = read_verified(store, stored_path, sha256)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise ArtifactError(f"artifact file {stored_path} is not a valid array archive: {exc}",
                            reason="unpickle_error", path=stored_path) from None


def joblib_writer(obj: Any) -> Callable[[IO[bytes]], None]:
    return lambda fh: joblib.dump(obj, fh)


def json_writer(obj: Any) -> Callable[[IO[bytes]], None]:
    return lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def npz_writer(arrays: dict[str, np.ndarray]) -> Callable[[IO[bytes]], None]:
    def write(fh: IO[bytes]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fh.write(buf.getvalue())
    return write
