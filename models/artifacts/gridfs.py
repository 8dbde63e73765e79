"""Artifacts in GridFS (``ARTIFACT_STORE=gridfs``), so every machine that reaches MongoDB reaches every artifact.

Stored paths look like ``gridfs:<file name>``; names are the same as in the
local folder. A GridFS file becomes visible only when its ``files`` document
is inserted, after all its chunks: a reader sees a complete file or none.

In front of GridFS sits a bounded, content-addressed disk cache (files named
by their SHA-256), so a second process on the same machine reads local disk,
and a corrupt cache entry is dropped and fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import gridfs
from bson import ObjectId
from pymongo.database import Database as MongoDatabase
from pymongo.errors import PyMongoError

from models.artifacts.atomic import CHUNK_SIZE, TMP_PREFIX, _HashingWriter, atomic_write_bytes
from models.artifacts.base import ArtifactInfo, ArtifactStore
from models.errors import ArtifactError
from models.processes import current_owner, owner_is_dead

log = logging.getLogger(__name__)

PREFIX = "gridfs:"
BUCKET = "artifacts"
UPLOAD_TTL_MS = 3600 * 1000  # an upload record older than this (by the server's clock) protects nothing


def is_gridfs_path(stored_path: str | None) -> bool:
    return bool(stored_path) and str(stored_path).startswith(PREFIX)


class DiskCache:
    """A bounded folder of artifact bytes named by SHA-256; least recently used files go first."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256

    def get(self, sha256: str) -> bytes | None:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.warning("disk cache entry %s is corrupt; dropping it", sha256[:12])
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        os.utime(path)  # mark as recently used
        self.hits += 1
        return data

    def discard(self, sha256: str) -> bool:
        """Drop the entry for ``sha256`` (its source failed verification); True if there was one."""
        try:
            self._path(sha256).unlink()
            return True
        except (FileNotFoundError, ValueError):
            return False

    def put(self, sha256: str, data: bytes) -> None:
        if self.max_bytes <= 0 or len(data) > self.max_bytes:
            return
        with self._lock:
            atomic_write_bytes(self._path(sha256), data)
            self._evict()

    def _evict(self) -> None:
        entries = [
            (p.stat().st_mtime, p.stat().st_size, p)
            for p in self.root.iterdir()
            if p.is_file() and not p.name.startswith(TMP_PREFIX)
        ]
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.iterdir() if p.is_file()) if self.root.is_dir() else 0


class GridFSArtifactStore(ArtifactStore):
    """Artifacts in a GridFS bucket of the service's database, with a local read-through disk cache."""

    def __init__(self, db: MongoDatabase, cache: DiskCache | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self.bucket = gridfs.GridFSBucket(db, bucket_name=BUCKET)
        self.files = db[f"{BUCKET}.files"]
        self.chunks = db[f"{BUCKET}.chunks"]
        # one record per upload in progress, written before its first chunk and removed after its files
        # document: chunks without a files document are an upload in progress only while their record lives
        self.uploads = db[f"{BUCKET}.uploads"]
        self.cache = cache
        self.chunk_size = chunk_size

    @staticmethod
    def stored_path(name: str) -> str:
        return PREFIX + name

    @staticmethod
    def name_of(stored_path: str) -> str:
        if not is_gridfs_path(stored_path):
            raise ArtifactError(
                f"artifact path {stored_path!r} is not a GridFS path", reason="path_refused", path=stored_path
            )
        name = stored_path[len(PREFIX) :]
        if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
            raise ArtifactError(
                f"artifact path {stored_path!r} is not a plain file name", reason="path_refused", path=stored_path
            )
        return name

    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> ArtifactInfo:
        if "/" in name or name.startswith("."):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        buf = io.BytesIO()
        hw = _HashingWriter(buf, self.chunk_size)
        writer(hw)  # type: ignore[arg-type]
        chunks = hw.finish()
        data = buf.getvalue()
        sha = hw.sha.hexdigest()
        new_id = ObjectId()
        try:
            self.uploads.update_one(
                {"_id": new_id},
                [
                    {
                        "$set": {
                            "filename": name,
                            "owner": {"$literal": current_owner()},
                            "expires_at": {"$add": ["$$NOW", UPLOAD_TTL_MS]},
                        }
                    }
                ],
                upsert=True,
            )
            try:
                self.bucket.upload_from_stream_with_id(new_id, name, data, metadata={"sha256": sha})
                self._delete_all(name, keep=new_id)  # a rewrite of a name replaces the older copy
            finally:
                self.uploads.delete_one({"_id": new_id})
        except PyMongoError as exc:
            raise ArtifactError(
                f"could not write artifact {name} to GridFS: {exc.__class__.__name__}",
                reason="write_error",
                path=name,
            ) from exc
        if self.cache is not None:
            self.cache.put(sha, data)
        return ArtifactInfo(
            self.stored_path(name),
            sha,
            len(data),
            self.chunk_size,
            block_digests=tuple(chunks),
            block_hash=hw.block_hash,
        )

    def read_bytes(self, stored_path: str, sha256: str | None = None) -> bytes:
        name = self.name_of(stored_path)
        if sha256 and self.cache is not None:
            cached = self.cache.get(sha256)
            if cached is not None:
                return cached
        try:
            data = self.bucket.open_download_stream_by_name(name).read()
        except gridfs.errors.NoFile:
            raise ArtifactError(
                f"artifact file {stored_path} is missing", reason="file_missing", path=stored_path
            ) from None
        if sha256 and self.cache is not None and hashlib.sha256(data).hexdigest() == sha256:
            self.cache.put(sha256, data)
        return data

    def _delete_all(self, name: str, keep: Any = None) -> int:
        ids = [f["_id"] for f in self.files.find({"filename": name}, {"_id": 1}) if f["_id"] != keep]
        for file_id in ids:
            with contextlib.suppress(gridfs.errors.NoFile):
                self.bucket.delete(file_id)
        return len(ids)

    def delete(self, stored_path: str) -> bool:
        return self._delete_all(self.name_of(stored_path)) > 0

    def stat(self, stored_path: str) -> dict[str, Any]:
        doc = self.files.find_one({"filename": self.name_of(stored_path)}, sort=[("uploadDate", -1)])
        if doc is None:
            return {"exists": False, "size": None, "mtime": None}
        return {"exists": True, "size": doc["length"], "mtime": doc["uploadDate"].timestamp()}

    def list_paths(self) -> list[str]:
        return sorted(self.stored_path(n) for n in self.files.distinct("filename"))

    def orphan_chunks(self, server_time: Any) -> dict[Any, int]:
        """``files_id -> chunk count`` of chunks whose files document is missing and whose upload is not in
        progress: left by a killed upload. In progress means an upload record that has not expired by the
        server's clock (``server_time``) and whose writer is not a dead process on this host."""
        chunk_ids = set(self.chunks.distinct("files_id"))  # first the chunks, then the uploads, then the files
        if not chunk_ids:
            return {}
        live = {
            u["_id"]
            for u in self.uploads.find({"expires_at": {"$gt": server_time}}, {"owner": 1})
            if not owner_is_dead(u.get("owner") or {})
        }
        orphans = chunk_ids - live - set(self.files.distinct("_id"))
        return {fid: self.chunks.count_documents({"files_id": fid}) for fid in orphans}

    def delete_chunks(self, files_ids: list[Any]) -> int:
        """Remove the chunks of ``files_ids`` (orphans found by :meth:`orphan_chunks`); returns how many."""
        if not files_ids:
            return 0
        deleted = self.chunks.delete_many({"files_id": {"$in": list(files_ids)}}).deleted_count
        self.uploads.delete_many({"_id": {"$in": list(files_ids)}})  # records of writers that died
        return deleted
