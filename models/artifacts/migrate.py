"""Moving artifacts between the local folder and GridFS: ``python -m cli artifacts migrate --to gridfs|local``.

For every run, ensemble and config document that points at files in the
other backend, per document:

1. copy each file it references to the target backend: the source bytes are
   checked against the SHA-256 in the document before they are copied, and
   the copy is read back from the target and checked again (a copy that is
   already there and verifies, e.g. from an interrupted earlier migration,
   is reused, never duplicated: a GridFS rewrite of a name replaces it);
2. switch the document's paths to the copies in one update (runs and
   ensembles: ``artifacts.<kind>.path``; configs: ``model_artifact_path``,
   ``scaler_artifact_path``, ``features_path`` and the ``artifacts`` map),
   conditional on the old paths, so a document changed meanwhile is left
   for the next run.

Only when no document references an old file any more, and its copy
verifies, is the old file deleted. Each step can be interrupted (even by
kill -9) and the command run again: documents still pointing at old files
are migrated, copies already made are reused, and old files whose documents
all moved (but that were not yet deleted) are found by name and deleted.
File names are the same in both backends (``<run_id>_<kind>``), only the
stored path differs (``gridfs:<name>`` vs ``<artifact folder>/<name>``).

``--to local`` writes into ``ARTIFACT_DIR``, the folder adoption and loading trust, so it writes only
names it derives from the document's run id and artifact kind (``<run_id>_model.pkl`` etc.), never a
name from the database: a document whose GridFS file name differs (another run's model, any other
name) is reported and left as it is, and an existing local file is reused only when it holds exactly
the recorded bytes, never overwritten.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from models.artifacts.base import SUFFIXES, ArtifactStore, artifact_name
from models.artifacts.gridfs import GridFSArtifactStore, is_gridfs_path
from models.artifacts.loading import PATH_FIELDS
from models.artifacts.maintenance import referenced_paths
from models.artifacts.routing import RoutingStore, get_store
from models.errors import ArtifactError, ValidationError
from models.progress import Progress, no_progress
from models.store.db import Database
from models.store.documents import artifact_holders

log = logging.getLogger(__name__)

BACKENDS = ("local", "gridfs")
# a run id that can name a file (trainings write 20240101_120000_0123abcd; legacy documents similar ids)
SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
COLLECTIONS = ("runs", "ensembles", "configs")


@dataclass(frozen=True)
class Slot:
    """One place in a document that holds an artifact path: the field, the path and its recorded SHA-256."""

    field: str
    path: str
    sha256: str | None
    kind: str | None = None
    derived: str | None = None  # the file name its document's run id and kind give (None: they give none)


@dataclass
class DocumentPlan:
    """The paths of one document that must move to the target backend."""

    collection: str
    doc_id: Any
    label: str
    slots: list[Slot]


@dataclass
class MigrationReport:
    """What a migration did (or, with ``dry_run``, would do)."""

    to: str
    dry_run: bool
    documents: dict[str, int] = field(default_factory=lambda: {c: 0 for c in COLLECTIONS})
    files_copied: list[str] = field(default_factory=list)
    files_reused: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    files_kept: list[dict[str, str]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing is left to migrate (no error, no document that changed meanwhile)."""
        return not (self.errors or self.changed or self.files_kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "dry_run": self.dry_run,
            "complete": self.complete,
            "documents": dict(self.documents),
            "files_copied": list(self.files_copied),
            "files_reused": list(self.files_reused),
            "files_deleted": list(self.files_deleted),
            "files_kept": list(self.files_kept),
            "changed": list(self.changed),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def in_backend(path: str, backend: str) -> bool:
    """Whether a stored path lives in ``backend`` (``gridfs`` or ``local``)."""
    return is_gridfs_path(path) == (backend == "gridfs")


def file_name(path: str) -> str:
    """The artifact's file name, the same in both backends."""
    return GridFSArtifactStore.name_of(path) if is_gridfs_path(path) else PurePosixPath(path).name


def _derived(doc: dict[str, Any], kind: str) -> str | None:
    """``<run_id><suffix of kind>`` for a document with a well-formed run id and a known kind, else None."""
    run_id = doc.get("run_id")
    if not isinstance(run_id, str) or not SAFE_RUN_ID.fullmatch(run_id) or kind not in SUFFIXES:
        return None
    return artifact_name(run_id, kind)


def document_slots(collection: str, doc: dict[str, Any]) -> Iterator[Slot]:
    """Every artifact path a document holds, with the checksum recorded for it and the name it should have."""
    arts = doc.get("artifacts") or {}
    for kind, ref in arts.items():
        if isinstance(ref, dict) and ref.get("path"):
            yield Slot(f"artifacts.{kind}.path", ref["path"], ref.get("sha256"), kind, _derived(doc, kind))
    if collection == "configs":
        checksums = doc.get("checksums") or {}
        for kind, name in PATH_FIELDS.items():
            if doc.get(name):
                sha = checksums.get(kind) or (arts.get(kind) or {}).get("sha256")
                yield Slot(name, doc[name], sha, kind, _derived(doc, kind))


def _label(collection: str, doc: dict[str, Any]) -> str:
    if collection == "configs":
        return f"config {doc.get('name')}"
    return f"{collection[:-1]} {doc.get('run_id') or doc.get('name')}"


def plan_migration(database: Database, to: str) -> list[DocumentPlan]:
    """The documents with at least one path outside ``to``, and those paths."""
    plans = []
    holders = artifact_holders(database)
    for collection in COLLECTIONS:
        for doc in holders[collection].artifact_documents():
            slots = [s for s in document_slots(collection, doc) if not in_backend(s.path, to)]
            if slots:
                plans.append(DocumentPlan(collection, doc["_id"], _label(collection, doc), slots))
    return plans


def _sha_of(store: ArtifactStore, path: str) -> str | None:
    """SHA-256 of the file as the backend holds it now (no cache in between), None if it is missing."""
    try:
        return hashlib.sha256(store.read_bytes(path)).hexdigest()
    except ArtifactError as exc:
        if exc.reason == "file_missing":
            return None
        raise


class _Migration:
    def __init__(self, database: Database, to: str, dry_run: bool, progress: Progress) -> None:
        self.database = database
        self.to = to
        self.source_backend = "local" if to == "gridfs" else "gridfs"
        self.routing: RoutingStore = get_store(database.settings)
        self.target: ArtifactStore = self.routing.gridfs if to == "gridfs" else self.routing.local
        self.report = MigrationReport(to, dry_run)
        self.progress = progress
        self.copies: dict[tuple[str, str], str] = {}  # (old path, sha256) -> verified new path
        self.moved: set[str] = set()  # dry run: old paths of the documents that would move
        self.stuck: set[str] = set()  # old paths of documents that cannot move

    def target_path(self, path: str) -> str:
        return self.target.stored_path(file_name(path))  # type: ignore[attr-defined]

    def source_path(self, name: str) -> str:
        source = self.routing.local if self.to == "gridfs" else self.routing.gridfs
        return source.stored_path(name)  # type: ignore[attr-defined]

    def copy(self, slot: Slot) -> str:
        """The verified copy of ``slot``'s file in the target backend (made now unless it is there)."""
        if not slot.sha256:
            raise ArtifactError(
                f"no checksum is recorded for {slot.path}; it cannot be verified, so it is not migrated",
                reason="checksum_missing",
                path=slot.path,
            )
        key = (slot.path, slot.sha256)
        if key in self.copies:
            return self.copies[key]
        if self.to == "local":
            return self.copy_to_local(slot, key)
        new = self.target_path(slot.path)
        if _sha_of(self.target, new) == slot.sha256:  # an earlier, interrupted migration made it
            self.report.files_reused.append(new)
        else:
            self.copy_verified(slot, file_name(slot.path), new)
        self.copies[key] = new
        return new

    def copy_to_local(self, slot: Slot, key: tuple[str, str]) -> str:
        """The verified copy in ``ARTIFACT_DIR`` under the name the document's run id and kind give, never a
        name the database chose (a GridFS file name is whatever its writer wanted); an existing file there is
        reused when it holds the same bytes and never overwritten when it does not."""
        name = slot.derived
        if name is None or file_name(slot.path) != name:
            expected = f"its run id and kind give {name}" if name else "it has no run id and kind to name it by"
            raise ArtifactError(
                f"{slot.path}: the database names this file {file_name(slot.path)!r}, but {expected}; "
                "migrate --to local writes only names it derives itself, so it was not migrated",
                reason="path_refused",
                path=slot.path,
            )
        new = self.target.stored_path(name)  # type: ignore[attr-defined]
        there = _sha_of(self.target, new)
        if there == slot.sha256:  # an earlier, interrupted migration made it
            self.report.files_reused.append(new)
        elif there is not None:
            raise ArtifactError(
                f"{name} already exists in ARTIFACT_DIR with other content (SHA-256 {there[:12]}..., the "
                f"document says {str(slot.sha256)[:12]}...); an existing file is never overwritten, so "
                f"{slot.path} was not migrated",
                reason="path_refused",
                path=slot.path,
            )
        else:
            self.copy_verified(slot, name, new)
        self.copies[key] = new
        return new

    def copy_verified(self, slot: Slot, name: str, new: str) -> None:
        """Write ``slot``'s verified bytes to the target as ``name`` (stored as ``new``) and check the copy."""
        data = self.read_source(slot)  # before copying
        if not self.report.dry_run:
            info = self.target.write(name, lambda fh: fh.write(data))
            if info.sha256 != slot.sha256 or _sha_of(self.target, new) != slot.sha256:  # after writing
                raise ArtifactError(
                    f"the copy of {slot.path} at {new} does not verify after writing",
                    reason="write_error",
                    path=new,
                )
        self.report.files_copied.append(new)

    def read_source(self, slot: Slot) -> bytes:
        """The source file's bytes from its backend itself, never from a cache: a corrupt GridFS copy is
        reported, not silently replaced by this machine's cached good copy."""
        data = self.routing.read_bytes(slot.path)  # no checksum hint: no cache in between
        actual = hashlib.sha256(data).hexdigest()
        if actual != slot.sha256:
            raise ArtifactError(
                f"artifact file {slot.path} fails verification at its source: SHA-256 is "
                f"{actual[:12]}..., expected {slot.sha256[:12]}... (changed or corrupted); it was "
                "not migrated (a cached copy is not used to replace it)",
                reason="checksum_mismatch",
                path=slot.path,
            )
        return data

    def migrate_document(self, plan: DocumentPlan) -> None:
        new_paths = {slot.field: self.copy(slot) for slot in plan.slots}
        if self.report.dry_run:
            self.report.documents[plan.collection] += 1
            self.moved.update(slot.path for slot in plan.slots)
            return
        holder = artifact_holders(self.database)[plan.collection]
        if holder.replace_paths(plan.doc_id, {slot.field: slot.path for slot in plan.slots}, new_paths):
            self.report.documents[plan.collection] += 1
        else:
            self.report.changed.append(plan.label)
            log.warning("%s changed during the migration; run the migration again", plan.label)

    def old_files(self) -> list[tuple[str, str, str | None]]:
        """``(old path, new path, sha256)`` for old files no document references any more."""
        referenced = referenced_paths(self.database)
        found: dict[str, tuple[str, str | None]] = {}
        holders = artifact_holders(self.database)
        for collection in COLLECTIONS:
            for doc in holders[collection].artifact_documents():
                for slot in document_slots(collection, doc):
                    if in_backend(slot.path, self.to):
                        old = self.source_path(file_name(slot.path))
                        if old not in referenced:
                            found.setdefault(old, (slot.path, slot.sha256))
        return [(old, new, sha) for old, (new, sha) in sorted(found.items()) if self.routing.stat(old)["exists"]]

    def delete_old(self) -> None:
        """Delete the old files whose copies every document now uses, once the copies verify."""
        verified = {new: sha for (_, sha), new in self.copies.items()}
        for old, new, sha in self.old_files():
            if self.report.dry_run:
                self.report.files_deleted.append(old)
                continue
            if not sha or (verified.get(new) != sha and _sha_of(self.target, new) != sha):
                self.report.files_kept.append({"path": old, "reason": f"its copy {new} does not verify"})
                continue
            if old not in {p for p, _ in self.copies} and _sha_of(self.routing, old) not in (sha, None):
                self.report.files_kept.append({"path": old, "reason": f"its content differs from {new}"})
                continue
            self.routing.delete(old)
            self.report.files_deleted.append(old)

    def run(self) -> MigrationReport:
        settings = self.database.settings
        if settings.artifact_store != self.to:
            self.report.warnings.append(
                f"ARTIFACT_STORE is {settings.artifact_store}: new trainings still write "
                f"to {settings.artifact_store}; set ARTIFACT_STORE={self.to}"
            )
        plans = plan_migration(self.database, self.to)
        for i, plan in enumerate(plans):
            self.progress(i / max(len(plans), 1), plan.label)
            try:
                self.migrate_document(plan)
            except ArtifactError as exc:
                self.stuck.update(slot.path for slot in plan.slots)
                self.report.errors.append({"document": plan.label, "path": exc.path or "", "message": exc.message})
                log.error("%s not migrated: %s", plan.label, exc.message)
        self.progress(0.99, "deleting old files")
        if self.report.dry_run:  # what would be unreferenced once every planned document moved
            self.report.files_deleted = sorted((self.moved - self.stuck) | {old for old, _, _ in self.old_files()})
        else:
            self.delete_old()
        self.progress(1.0, "done")
        return self.report


def migrate_artifacts(
    database: Database, to: str, *, dry_run: bool = False, progress: Progress = no_progress
) -> MigrationReport:
    """Move every referenced artifact to backend ``to`` (``gridfs`` or ``local``); see the module docstring.

    Safe to run again after an interruption, and a no-op when everything is
    already in ``to``. A document whose file is missing or fails verification
    is reported in ``errors`` and left as it was.
    """
    if to not in BACKENDS:
        raise ValidationError(f"to must be one of {', '.join(BACKENDS)}; got {to!r}", field="to")
    if not isinstance(dry_run, bool):
        raise ValidationError(f"dry_run must be true or false; got {dry_run!r}", field="dry_run")
    report = _Migration(database, to, dry_run, progress).run()
    log.info(
        "artifact migration to %s%s: %s documents, %d files copied, %d reused, %d old files deleted",
        to,
        " (dry run)" if dry_run else "",
        report.documents,
        len(report.files_copied),
        len(report.files_reused),
        len(report.files_deleted),
    )
    return report
