"""Keeping artifacts honest: per-run info, a scan of every config, and removal of unreferenced files."""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from models.artifacts.base import ArtifactStore
from models.artifacts.loading import artifact_refs
from models.artifacts.local import LocalArtifactStore
from models.artifacts.routing import RoutingStore, get_store
from models.errors import ArtifactError
from models.store.db import Database
from models.store.runs import RunStore
from models.store.schema import definition

log = logging.getLogger(__name__)

# A file written moments ago may belong to a training that has not reached its commit point yet.
ORPHAN_MIN_AGE_S = 15 * 60


def _check(store: ArtifactStore, ref: dict[str, Any]) -> dict[str, Any]:
    """State of one file: ``ok``, ``missing``, ``corrupt`` (bytes differ, or the signature does not verify),
    ``unsigned`` (no signature while ``REQUIRE_SIGNED`` is set) or ``refused`` (bad path). Never unpickles."""
    out = _check_bytes(store, ref["path"], ref.get("sha256"))
    if store.signer is None:
        return out
    signature = store.signer.artifact_state(ref)
    out["signature"] = signature
    if out["state"] == "ok" and signature == "invalid":
        out.update(state="corrupt", verified=False,
                   reason="signature does not verify (the recorded checksums were changed, or it was signed "
                          "by an unknown key)")
    elif out["state"] == "ok" and signature == "unsigned" and store.signer.require_signed:
        out.update(state="unsigned", verified=False,
                   reason="not signed (REQUIRE_SIGNED is set; run `artifacts sign --all`)")
    return out


def _check_bytes(store: ArtifactStore, path: str, sha256: str | None) -> dict[str, Any]:
    try:
        data = store.read_bytes(path)
    except ArtifactError as exc:
        return {"path": path, "state": "missing" if exc.reason == "file_missing" else "refused",
                "exists": False, "verified": False, "reason": exc.message}
    actual = hashlib.sha256(data).hexdigest()
    ok = sha256 is not None and actual == sha256
    return {"path": path, "state": "ok" if ok else "corrupt", "exists": True, "verified": ok,
            "size": len(data), "sha256": sha256, "actual_sha256": actual,
            **({} if ok else {"reason": "no checksum recorded" if sha256 is None else "checksum mismatch"})}


def run_artifacts_info(database: Database, run_id: str, *, verify: bool = True) -> dict[str, Any]:
    """Paths, sizes, checksums, and whether each file exists and verifies, for one run (or ensemble)."""
    run = database.runs.find_one({"run_id": run_id}) or database.ensembles.find_one({"run_id": run_id})
    if run is None:
        RunStore(database).get(run_id)  # raises NotFoundError naming the id
    store = get_store(database.settings)
    files = {}
    for kind, ref in (run.get("artifacts") or {}).items():
        if verify:
            files[kind] = {"kind": kind, **_check(store, ref)}
        else:
            stat = store.stat(ref["path"])
            files[kind] = {"kind": kind, "path": ref["path"], "sha256": ref.get("sha256"),
                           "size": stat.get("size"), "exists": stat["exists"]}
    return {"run_id": run_id, "name": run.get("name"), "version": run.get("version"),
            "all_verified": all(f.get("verified", f.get("exists")) for f in files.values()), "files": files}


def scan_configs(database: Database) -> list[dict[str, Any]]:
    """Every config's artifact state: ``ok``, ``untrained``, ``missing``, ``corrupt`` or ``stale``.

    ``stale`` means the config's definition changed after its current run was trained.
    """
    store = get_store(database.settings)
    report = []
    for config in database.configs.find({}).sort("name", 1):
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
            entry["state"] = "missing" if all(v["state"] == "missing" for v in bad.values()) else "corrupt"
            entry["problems"] = [f"{k}: {v['path']}: {v.get('reason')}" for k, v in bad.items()]
        else:
            run = database.runs.find_one({"run_id": config["run_id"]}, {"definition": 1})
            if run is not None and run.get("definition") != definition(config):
                entry["state"] = "stale"
                entry["problems"] = ["the config changed after this run was trained"]
            else:
                entry["state"] = "ok"
        report.append(entry)
    return report


def referenced_paths(database: Database) -> set[str]:
    """Every artifact path a config, run or ensemble document points at."""
    paths: set[str] = set()
    for col in (database.runs, database.ensembles, database.configs):
        for doc in col.find({}, {"artifacts": 1, "model_artifact_path": 1, "scaler_artifact_path": 1,
                                 "features_path": 1}):
            paths.update(ref["path"] for ref in (doc.get("artifacts") or {}).values() if ref.get("path"))
            paths.update(doc[f] for f in ("model_artifact_path", "scaler_artifact_path", "features_path")
                         if doc.get(f))
    return paths


def orphan_files(database: Database, *, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[str]:
    """Artifact files no document references (e.g. left by a crash before the commit point),
    older than ``min_age_s`` so a training in progress keeps its files."""
    store = get_store(database.settings)
    referenced = referenced_paths(database)
    cutoff = time.time() - min_age_s
    out = []
    for path in store.list_paths():
        if path in referenced:
            continue
        mtime = store.stat(path).get("mtime")
        if mtime is None or mtime <= cutoff:
            out.append(path)
    return out


def collect_orphans(database: Database, *, dry_run: bool = False,
                    min_age_s: float = ORPHAN_MIN_AGE_S) -> dict[str, Any]:
    """Delete unreferenced artifact files and temp files of interrupted writes (both older than ``min_age_s``)."""
    store = get_store(database.settings)
    orphans = orphan_files(database, min_age_s=min_age_s)
    temps = []
    if isinstance(store, (LocalArtifactStore, RoutingStore)):  # get_store() gives a RoutingStore
        cutoff = time.time() - min_age_s
        temps = [p for p in store.temp_files() if p.stat().st_mtime <= cutoff]
    if not dry_run:
        for path in orphans:
            store.delete(path)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if orphans or temps:
            log.info("removed %d unreferenced artifact files and %d temp files", len(orphans), len(temps))
    return {"orphan_files": orphans, "temp_files": [t.name for t in temps], "dry_run": dry_run}


def _bytes_match(data: bytes, ref: dict[str, Any]) -> str | None:
    """Why ``data`` does not match the ref's SHA-256, size and per-block checksums; None when it does."""
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        return "checksum mismatch"
    if ref.get("size") is not None and ref["size"] != len(data):
        return f"size is {len(data)} bytes, the document says {ref['size']}"
    chunks, size = ref.get("chunk_sha256"), ref.get("chunk_size")
    if chunks:
        if not isinstance(size, int) or size <= 0:
            return "per-block checksums without a block size"
        actual = [hashlib.sha256(data[i:i + size]).hexdigest() for i in range(0, len(data), size)]
        if actual != list(chunks):
            return "per-block checksums do not match"
    return None


def sign_unsigned(database: Database, *, dry_run: bool = False) -> dict[str, Any]:
    """Sign every artifact ref (runs, ensembles, configs) that has no signature yet, after re-verifying its
    file against the recorded checksums. Refs whose signature is invalid are reported, never re-signed.

    Returns ``{"signed": [...], "already_signed": n, "failed": [{"document", "kind", "path", "reason"}],
    "invalid": [...], "dry_run"}``. The database is trusted for this one step: run it once, when
    upgrading an installation whose artifacts predate signing.
    """
    store = get_store(database.settings)
    signer = store.signer
    report: dict[str, Any] = {"signed": [], "already_signed": 0, "failed": [], "invalid": [], "dry_run": dry_run}
    verified: dict[tuple[str, str], str | None] = {}  # (path, sha256) -> problem, so shared files are read once
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
                if state == "signed":
                    report["already_signed"] += 1
                    continue
                if state == "invalid":
                    report["invalid"].append({**where, "reason": "signature does not verify; not re-signed"})
                    continue
                key = (ref["path"], str(ref.get("sha256")))
                if key not in verified:
                    try:
                        verified[key] = _bytes_match(store.read_bytes(ref["path"]), ref) if ref.get("sha256") \
                            else "no checksum recorded"
                    except ArtifactError as exc:
                        verified[key] = exc.message
                if verified[key] is not None:
                    report["failed"].append({**where, "reason": verified[key]})
                    continue
                updates[f"artifacts.{kind}.signature"] = signer.sign_ref(ref)
                report["signed"].append(where)
            if updates and not dry_run:
                # only if the refs are still the ones verified (a training may have moved the config on)
                guard = {f"artifacts.{k.split('.')[1]}.sha256": doc["artifacts"][k.split(".")[1]].get("sha256")
                         for k in updates}
                if not col.update_one({"_id": doc["_id"], **guard}, {"$set": updates}).matched_count:
                    report["failed"].append({"document": label, "kind": "*", "path": "",
                                             "reason": "changed meanwhile; run again"})
    if report["signed"] and not dry_run:
        log.info("signed %d artifact refs", len(report["signed"]))
    return report
