"""Keeping artifacts honest: per-run info, a scan of every config, and removal of unreferenced files."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from models.artifacts import blocks
from models.artifacts.atomic import TMP_PREFIX
from models.artifacts.base import ArtifactStore
from models.artifacts.cache import get_model_cache
from models.artifacts.gridfs import is_gridfs_path
from models.artifacts.lease import leased_names, server_now
from models.artifacts.loading import artifact_refs
from models.artifacts.routing import RoutingStore, canonical_path, get_store
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.documents import artifact_holders
from models.store.ensembles import EnsembleStore
from models.store.runs import RunStore
from models.store.schema import definition

log = logging.getLogger(__name__)

# A margin on top of the leases (models.artifacts.lease), which are what protects a running training's files.
ORPHAN_MIN_AGE_S = 15 * 60


def _check(store: ArtifactStore, ref: dict[str, Any]) -> dict[str, Any]:
    """State of one file: ``ok``, ``missing``, ``corrupt`` (bytes differ, or the signature does not verify),
    ``unsigned`` (no signature, unless ``REQUIRE_SIGNED=0``) or ``refused`` (bad path). Never unpickles."""
    out = _check_bytes(store, ref["path"], ref.get("sha256"))
    if store.signer is None:
        return out
    signature = store.signer.artifact_state(ref)
    out["signature"] = signature
    if out["state"] == "ok" and signature == "invalid":
        out.update(
            state="corrupt",
            verified=False,
            reason="signature does not verify (the recorded checksums were changed, or it was signed "
            "by an unknown key)",
        )
    elif out["state"] == "ok" and signature == "unsigned" and store.signer.require_signed:
        out.update(
            state="unsigned",
            verified=False,
            reason="not signed, so it is refused (check it, then run `artifacts sign --all`)",
        )
    return out


def _check_bytes(store: ArtifactStore, path: str, sha256: str | None) -> dict[str, Any]:
    """State of one file at its source (GridFS itself, never the disk cache): ``ok``, ``missing``,
    ``corrupt`` (bytes differ) or ``refused`` (bad path)."""
    try:
        data = store.read_bytes(path)
    except ArtifactError as exc:
        return {
            "path": path,
            "state": "missing" if exc.reason == "file_missing" else "refused",
            "exists": False,
            "verified": False,
            "reason": exc.message,
        }
    actual = hashlib.sha256(data).hexdigest()
    ok = sha256 is not None and actual == sha256
    return {
        "path": path,
        "state": "ok" if ok else "corrupt",
        "exists": True,
        "verified": ok,
        "size": len(data),
        "sha256": sha256,
        "actual_sha256": actual,
        **({} if ok else {"reason": "no checksum recorded" if sha256 is None else "checksum mismatch"}),
    }


def invalidate_caches(database: Database, store: Any, run_id: str | None, refs: dict[str, Any]) -> None:
    """A file whose source failed verification is no longer served from this machine's caches: its disk
    cache entry (GridFS, by SHA-256) and the loaded models of its run in the in-memory LRU are dropped."""
    cache = getattr(store.gridfs, "cache", None) if isinstance(store, RoutingStore) else None
    for ref in refs.values():
        if (
            cache is not None
            and ref.get("sha256")
            and is_gridfs_path(ref.get("path"))
            and cache.discard(ref["sha256"])
        ):
            log.warning("dropped the disk-cache copy of %s: its source fails verification", ref["path"])
    if run_id:
        get_model_cache(database.settings).discard(lambda key: isinstance(key, tuple) and key[0] == run_id)


def run_artifacts_info(database: Database, run_id: str, *, verify: bool = True) -> dict[str, Any]:
    """Paths, sizes, checksums, and whether each file exists and verifies, for one run (or ensemble)."""
    run = RunStore(database).find(run_id) or EnsembleStore(database).find_by_run(run_id)
    if run is None:
        RunStore(database).get(run_id)  # raises NotFoundError naming the id
    store = get_store(database.settings)
    files = {}
    for kind, ref in (run.get("artifacts") or {}).items():
        if verify:
            files[kind] = {"kind": kind, **_check(store, ref)}
            if files[kind]["state"] != "ok":
                invalidate_caches(database, store, run_id, {kind: ref})
        else:
            stat = store.stat(ref["path"])
            files[kind] = {
                "kind": kind,
                "path": ref["path"],
                "sha256": ref.get("sha256"),
                "size": stat.get("size"),
                "exists": stat["exists"],
            }
    return {
        "run_id": run_id,
        "name": run.get("name"),
        "version": run.get("version"),
        "all_verified": all(f.get("verified", f.get("exists")) for f in files.values()),
        "files": files,
    }


def scan_configs(database: Database) -> list[dict[str, Any]]:
    """Every config's artifact state: ``ok``, ``untrained``, ``missing``, ``corrupt`` or ``stale``.

    ``stale`` means the config's definition changed after its current run was trained.
    """
    store = get_store(database.settings)
    report = []
    for config in ConfigStore(database).list():
        entry: dict[str, Any] = {"name": config["name"], "run_id": config.get("run_id"), "problems": []}
        try:
            refs = artifact_refs(config)
        except ArtifactError as exc:
            entry.update(state="untrained", problems=[exc.message])
            report.append(entry)
            continue
        states = {kind: _check(store, ref) for kind, ref in refs.items()}
        bad = {k: v for k, v in states.items() if v["state"] != "ok"}
        if bad:
            invalidate_caches(database, store, config.get("run_id"), {k: refs[k] for k in bad})
            entry["state"] = "missing" if all(v["state"] == "missing" for v in bad.values()) else "corrupt"
            entry["problems"] = [f"{k}: {v['path']}: {v.get('reason')}" for k, v in bad.items()]
        else:
            run = RunStore(database).find_fields(config["run_id"], ["definition"])
            if run is not None and run.get("definition") != definition(config):
                entry["state"] = "stale"
                entry["problems"] = ["the config changed after this run was trained"]
            else:
                entry["state"] = "ok"
        report.append(entry)
    return report


def referenced_paths(database: Database) -> set[str]:
    """Every artifact path a config, run or ensemble document points at (as :func:`canonical_path`)."""
    paths: set[str] = set()
    for holder in artifact_holders(database).values():
        for doc in holder.artifact_documents():
            paths.update(
                canonical_path(ref["path"]) for ref in (doc.get("artifacts") or {}).values() if ref.get("path")
            )
            paths.update(
                canonical_path(doc[f])
                for f in ("model_artifact_path", "scaler_artifact_path", "features_path")
                if doc.get(f)
            )
    return paths


def _temp_target(tmp: Path) -> str:
    """The artifact name a temp file of :func:`atomic_write` was going to become (``.tmp-<name>.<random>``)."""
    return tmp.name[len(TMP_PREFIX) :].rsplit(".", 1)[0]


def _file_name(path: str) -> str:
    return canonical_path(path).removeprefix("gridfs:")


def orphan_files(database: Database, *, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[str]:
    """Artifact files no document references (e.g. left by a crash before the commit point) and no live
    lease protects (a training between writing and committing), older than ``min_age_s``.

    Order matters: the files are listed first, then the leases, then the references, so a file a training
    writes under its lease and commits meanwhile is seen as leased or as referenced. Ages of GridFS files
    are measured with the MongoDB server's clock, of local files with this machine's (their own disk)."""
    store = get_store(database.settings)
    listed = store.list_paths()
    leased = leased_names(database)
    referenced = referenced_paths(database)
    local_cutoff = time.time() - min_age_s
    server_cutoff = server_now(database).timestamp() - min_age_s
    out = []
    for path in listed:
        if canonical_path(path) in referenced or _file_name(path) in leased:
            continue
        mtime = store.stat(path).get("mtime")
        cutoff = server_cutoff if is_gridfs_path(path) else local_cutoff
        if mtime is None or mtime <= cutoff:
            out.append(path)
    return out


def collect_orphans(
    database: Database, *, dry_run: bool = False, min_age_s: float = ORPHAN_MIN_AGE_S
) -> dict[str, Any]:
    """Delete unreferenced, unleased artifact files and temp files of interrupted writes (both older than
    ``min_age_s``), and GridFS chunks whose files document is missing (a killed upload; see
    :meth:`GridFSArtifactStore.orphan_chunks`: decided by upload records and the server's clock, not by age)."""
    store = get_store(database.settings)
    orphans = orphan_files(database, min_age_s=min_age_s)
    leased = leased_names(database)
    cutoff = time.time() - min_age_s
    temps = [p for p in store.temp_files() if p.stat().st_mtime <= cutoff and _temp_target(p) not in leased]
    gridfs = store.gridfs
    chunks = gridfs.orphan_chunks(server_now(database))  # type: ignore[attr-defined]
    if not dry_run:
        for path in orphans:
            store.delete(path)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        gridfs.delete_chunks(list(chunks))  # type: ignore[attr-defined]
        if orphans or temps or chunks:
            log.info(
                "removed %d unreferenced artifact files, %d temp files and %d orphan GridFS chunks",
                len(orphans),
                len(temps),
                sum(chunks.values()),
            )
    return {
        "orphan_files": orphans,
        "temp_files": [t.name for t in temps],
        "orphan_chunks": {"files": [str(f) for f in chunks], "chunks": sum(chunks.values())},
        "dry_run": dry_run,
    }


def _bytes_match(data: bytes, ref: dict[str, Any]) -> str | None:
    """Why ``data`` does not match the ref's SHA-256, size and per-block checksums; None when it does."""
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        return "checksum mismatch"
    if ref.get("size") is not None and ref["size"] != len(data):
        return f"size is {len(data)} bytes, the document says {ref['size']}"
    return blocks.check_blocks(data, ref)


def _new_digests(store: ArtifactStore, ref: dict[str, Any]) -> str | list[str] | None:
    """The file's format-2 block digests if its bytes match the ref; else why not (None: no checksum)."""
    if not ref.get("sha256"):
        return None
    try:
        data = store.read_bytes(ref["path"])
    except ArtifactError as exc:
        return exc.message
    return _bytes_match(data, ref) or blocks.digests_of(data)


def sign_unsigned(database: Database, *, dry_run: bool = False) -> dict[str, Any]:
    """Sign every artifact ref (runs, ensembles, configs) that has no signature yet, and bring refs of artifact
    format 1 (SHA-256 blocks) to format 2 (BLAKE3 blocks, :mod:`models.artifacts.blocks`), after re-verifying
    each file against its recorded checksums. Refs whose signature is invalid are reported, never re-signed.

    Returns ``{"signed": [...], "upgraded": [...], "already_signed": n, "failed": [{"document", "kind",
    "path", "reason"}], "invalid": [...], "dry_run"}``. For unsigned refs the database is trusted for this
    one step: run it once, when upgrading an installation whose artifacts predate signing. A signed
    format-1 ref is converted only because its signature verifies and its bytes match what it signed.
    """
    store = get_store(database.settings)
    signer = store.signer
    report: dict[str, Any] = {
        "signed": [],
        "upgraded": [],
        "already_signed": 0,
        "failed": [],
        "invalid": [],
        "dry_run": dry_run,
    }
    verified: dict[tuple[str, str], str | list[str] | None] = {}  # (path, sha256) -> problem or new digests
    for collection in ("runs", "ensembles", "configs"):
        col = getattr(database, collection)
        for doc in col.find({}, {"artifacts": 1, "name": 1, "run_id": 1}):
            label = f"{collection[:-1]} {doc.get('run_id') if collection == 'runs' else doc.get('name')}"
            updates: dict[str, Any] = {}
            for kind, ref in sorted((doc.get("artifacts") or {}).items()):
                if not isinstance(ref, dict) or not ref.get("path"):
                    continue
                state = signer.artifact_state(ref)
                where = {"document": label, "kind": kind, "path": ref["path"]}
                old_format = blocks.artifact_format(ref) == 1
                if state == "signed" and not old_format:
                    report["already_signed"] += 1
                    continue
                if state == "invalid":
                    report["invalid"].append({**where, "reason": "signature does not verify; not re-signed"})
                    continue
                key = (ref["path"], str(ref.get("sha256")))
                if key not in verified:
                    verified[key] = _new_digests(store, ref)
                outcome = verified[key]
                if not isinstance(outcome, list):
                    report["failed"].append({**where, "reason": outcome or "no checksum recorded"})
                    continue
                new_ref = {k: v for k, v in ref.items() if k not in ("chunk_sha256", "signature")}
                if outcome:  # files of one block or more; an empty list only for files too small to matter
                    new_ref.update(chunk_size=blocks.CHUNK_SIZE, chunk_blake3=outcome, format=blocks.FORMAT)
                new_ref["signature"] = signer.sign_ref(new_ref)
                updates[f"artifacts.{kind}"] = new_ref
                report["upgraded" if state == "signed" else "signed"].append(where)
            if updates and not dry_run:
                # only if the refs are still the ones verified (a training may have moved the config on)
                guard = {}
                for field in updates:
                    old = doc["artifacts"][field.split(".")[1]]
                    guard[f"{field}.sha256"] = old.get("sha256")
                    guard[f"{field}.signature"] = old.get("signature")
                if not col.update_one({"_id": doc["_id"], **guard}, {"$set": updates}).matched_count:
                    report["failed"].append(
                        {"document": label, "kind": "*", "path": "", "reason": "changed meanwhile; run again"}
                    )
    if report["upgraded"] and not dry_run:
        log.info("converted %d artifact refs to artifact format %d", len(report["upgraded"]), blocks.FORMAT)
    if report["signed"] and not dry_run:
        log.info("signed %d artifact refs", len(report["signed"]))
    return report
