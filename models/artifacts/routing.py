"""The configured store: writes to the primary backend, reads wherever a stored path points."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from models.artifacts.base import ArtifactInfo, ArtifactStore
from models.artifacts.local import LocalArtifactStore
from models.artifacts.signing import get_signer
from models.settings import Settings

log = logging.getLogger(__name__)


class RoutingStore(ArtifactStore):
    """Writes go to the configured backend; reads, stats and deletes go where the stored path says.

    So documents that point at the local folder keep loading after a switch to
    GridFS (and during ``artifacts migrate``), and the other way round.
    """

    def __init__(
        self,
        primary: ArtifactStore,
        local: LocalArtifactStore,
        gridfs_factory: Callable[[], ArtifactStore],
        signer: Any = None,
    ) -> None:
        self.signer = signer
        self.primary = primary
        self.local = local
        self._gridfs_factory = gridfs_factory
        self._gridfs: ArtifactStore | None = primary if primary is not local else None

    @property
    def gridfs(self) -> ArtifactStore:
        if self._gridfs is None:
            self._gridfs = self._gridfs_factory()
        return self._gridfs

    def backend_for(self, stored_path: str) -> ArtifactStore:
        from models.artifacts.gridfs import is_gridfs_path

        return self.gridfs if is_gridfs_path(stored_path) else self.local

    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        info = self.primary.write(name, writer)
        return self.signer.sign_info(info) if self.signer is not None else info

    def read_bytes(self, stored_path: str, sha256: str | None = None) -> bytes:
        return self.backend_for(stored_path).read_bytes(stored_path, sha256)

    def open_stream(self, stored_path: str, sha256: str | None = None) -> IO[bytes]:
        return self.backend_for(stored_path).open_stream(stored_path, sha256)

    def delete(self, stored_path: str) -> bool:
        return self.backend_for(stored_path).delete(stored_path)

    def stat(self, stored_path: str) -> dict[str, Any]:
        return self.backend_for(stored_path).stat(stored_path)

    def list_paths(self) -> list[str]:
        paths = self.local.list_paths()
        if self._gridfs is not None or self.primary is not self.local:
            paths += self.gridfs.list_paths()
        return sorted(paths)

    def temp_files(self) -> list[Path]:
        return self.local.temp_files()


def canonical_path(stored_path: str) -> str:
    """The identity of a stored path on every machine: ``gridfs:<name>`` as it is, a local path by its file
    name (paths written before bare names carried the writer's folder, e.g. ``cli/models/<name>``)."""
    from models.artifacts.gridfs import is_gridfs_path

    if is_gridfs_path(stored_path):
        return stored_path
    return PurePosixPath(stored_path).name


def get_store(settings: Settings) -> RoutingStore:
    """The configured artifact store (``ARTIFACT_STORE``: ``local`` or ``gridfs``), signing what it writes."""
    local = LocalArtifactStore(settings.artifact_dir)

    def make_gridfs() -> ArtifactStore:
        from models.artifacts.gridfs import DiskCache, GridFSArtifactStore
        from models.store.db import shared_client

        cache = DiskCache(settings.artifact_cache_dir, settings.artifact_cache_bytes)
        return GridFSArtifactStore(shared_client(settings)[settings.mongo_db], cache)

    primary = make_gridfs() if settings.artifact_store == "gridfs" else local
    return RoutingStore(primary, local, make_gridfs, get_signer(settings))
