"""Artifacts in one local folder, refusing any stored path that could leave it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from models.artifacts.atomic import CHUNK_SIZE, TMP_PREFIX, atomic_write
from models.artifacts.base import ArtifactInfo, ArtifactStore
from models.errors import ArtifactError

log = logging.getLogger(__name__)


class LocalArtifactStore(ArtifactStore):
    """Artifacts in one local folder (``ARTIFACT_DIR``)."""

    def __init__(self, root: Path, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = Path(root)
        self.chunk_size = chunk_size
        self._real_root = Path(os.path.realpath(self.root))

    @staticmethod
    def stored_path(name: str) -> str:
        """Documents hold the bare file name: each machine finds it in its own ``ARTIFACT_DIR``."""
        return name

    def resolve(self, stored_path: str) -> Path:
        """The real file for a stored path, refusing anything that could leave the artifact folder.

        Paths written before artifact paths became bare names carry the writer's folder relative
        to its checkout (``cli/models/<name>``); that folder means nothing on another machine, so
        such a path is read by its file name in this machine's ``ARTIFACT_DIR``.
        """
        if not isinstance(stored_path, str) or not stored_path:
            raise ArtifactError("artifact path is empty", reason="path_refused", path=str(stored_path))
        if "\x00" in stored_path or "\\" in stored_path:
            raise ArtifactError(
                f"artifact path {stored_path!r} has forbidden characters", reason="path_refused", path=stored_path
            )
        pure = PurePosixPath(stored_path)
        if pure.is_absolute() or stored_path.startswith("~"):
            raise ArtifactError(
                f"artifact path {stored_path!r} is absolute; only paths inside the artifact folder are loaded",
                reason="path_refused",
                path=stored_path,
            )
        if ".." in pure.parts:
            raise ArtifactError(
                f"artifact path {stored_path!r} contains '..'; only paths inside the artifact folder are loaded",
                reason="path_refused",
                path=stored_path,
            )
        if pure.name.startswith(".") or not pure.name:
            raise ArtifactError(
                f"artifact path {stored_path!r} does not name an artifact file",
                reason="path_refused",
                path=stored_path,
            )
        candidate = self._real_root / pure.name
        real = Path(os.path.realpath(candidate))
        if real.parent != self._real_root:
            raise ArtifactError(
                f"artifact path {stored_path!r} resolves outside the artifact folder (symbolic link?); refused",
                reason="path_refused",
                path=stored_path,
            )
        return real

    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        if "/" in name or name.startswith("."):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        try:
            res = atomic_write(self.root / name, writer, self.chunk_size)
        except OSError as exc:
            raise ArtifactError(
                f"could not write artifact {name} in {self.root}: {exc.strerror or exc}",
                reason="write_error",
                path=name,
            ) from exc
        return ArtifactInfo(
            self.stored_path(name),
            res.sha256,
            res.size,
            res.chunk_size,
            block_digests=tuple(res.block_digests),
            block_hash=res.block_hash,
        )

    def read_bytes(self, stored_path: str, sha256: str | None = None) -> bytes:
        with self.open_stream(stored_path, sha256) as fh:
            return fh.read()

    def open_stream(self, stored_path: str, sha256: str | None = None) -> IO[bytes]:
        path = self.resolve(stored_path)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact file {stored_path} is missing", reason="file_missing", path=stored_path
            ) from None
        except IsADirectoryError:
            raise ArtifactError(
                f"artifact path {stored_path} is a folder", reason="path_refused", path=stored_path
            ) from None
        except OSError as exc:
            raise ArtifactError(
                f"artifact file {stored_path} cannot be read: {exc.strerror}",
                reason="file_unreadable",
                path=stored_path,
            ) from None

    def delete(self, stored_path: str) -> bool:
        try:
            self.resolve(stored_path).unlink()
            return True
        except FileNotFoundError:
            return False

    def stat(self, stored_path: str) -> dict[str, Any]:
        path = self.resolve(stored_path)
        try:
            st = path.stat()
        except FileNotFoundError:
            return {"exists": False, "size": None, "mtime": None}
        return {"exists": path.is_file(), "size": st.st_size, "mtime": st.st_mtime}

    def list_paths(self) -> list[str]:
        if not self.root.is_dir():
            return []
        # hidden files are never artifacts (e.g. the repository's tracked cli/models/.gitkeep); temp files
        # of interrupted writes are listed by temp_files()
        return sorted(
            self.stored_path(p.name) for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".")
        )

    def temp_files(self) -> list[Path]:
        """Leftover temp files of interrupted writes (safe to delete when no write runs)."""
        return sorted(p for p in self.root.glob(TMP_PREFIX + "*")) if self.root.is_dir() else []
