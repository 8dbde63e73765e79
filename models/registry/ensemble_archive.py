"""An ensemble with its base runs as one signed archive, to move it between installations.

Export (``models export ENSEMBLE --out F``, :func:`export_ensemble`): one ``.tar.gz`` holding
``ensemble.json`` (the ensemble version's document, MongoDB Extended JSON), ``ensemble/<file>`` (its
meta-model and spec files, read verified), and every base run as a run export of its own under
``runs/<run_id>/`` (``manifest.json``, ``run.json``, ``config.json``, ``artifacts/<file>``: what
:func:`models.registry.archive.export_run` writes). The top ``manifest.json`` lists every member's SHA-256 and
size and ``manifest.sig`` signs it, so one signature covers the ensemble and all its base runs.

Import (``models import F``, :func:`import_archive`, which takes run archives too): the same trust rule as a
run archive (this installation's key or ``TRUSTED_KEYS``, else refused unless ``trust``), every member checked
against the manifest and every base run against its own, before anything is written. A base run whose id
exists here is reused when its files are the archive's (same SHA-256), refused otherwise; the others are
imported as :func:`models.registry.archive.import_run` imports them. The base runs keep their ids, so the
ensemble is pinned to exactly the runs it was built on. The ensemble comes in at stage ``none`` (promote it
here), as version N of its name when N is free, else as the name's next version. On any failure the runs
imported so far and every file written are removed: nothing remains.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from models.artifacts.base import SUFFIXES, ArtifactInfo, ArtifactStore, artifact_name
from models.artifacts.lease import ArtifactLease
from models.artifacts.routing import get_store
from models.artifacts.verified import read_verified
from models.errors import ConflictError, NotFoundError, ValidationError
from models.registry.archive import (
    ENSEMBLE_DIR,
    ENSEMBLE_MEMBER,
    MANIFEST,
    RUNS_DIR,
    check_import_options,
    check_out_file,
    check_trust,
    checked_manifest,
    dump_document,
    ensemble_reference,
    export_run,
    import_checked,
    import_run_members,
    listing,
    load_member_json,
    read_archive,
    run_members,
    stored_name,
    verify_archive,
    write_signed_archive,
    write_verified,
)
from models.registry.lifecycle import delete_run
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.references import RUN_ID_RE, resolve_ensemble
from models.store.runs import RunStore
from models.store.schema import NAME_RE
from models.timeutil import iso, now
from models.training.train import environment_versions

log = logging.getLogger(__name__)

FORMAT = "ensemble-model-cache/ensemble-export"
FORMAT_VERSION = 1
DROPPED = ("_id", "version", "stage", "stage_history")  # what this installation decides for itself


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, field="archive")


def _base_run_ids(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(doc.get("base_run_ids") or [b.get("run_id") for b in doc.get("base_models") or []]))


# ---------------------------------------------------------------- export


def export_archive(
    database: Database, ref: str, out: str | Path, *, store: ArtifactStore | None = None
) -> dict[str, Any]:
    """``models export REF``: an ensemble reference (its name, NAME@3, a version's run id; unless a model or
    config has that name) gives an ensemble archive (:func:`export_ensemble`), anything else a run archive
    (:func:`models.registry.archive.export_run`, ``kind`` ``"run"``)."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError("ref must be a model reference or an ensemble name", field="ref")
    ensemble = ensemble_reference(database, ref)
    if ensemble is not None:
        return export_ensemble(database, ensemble, out, store=store)
    return {"kind": "run", **export_run(database, ref, out, store=store)}


def export_ensemble(
    database: Database, ref: str, out: str | Path, *, store: ArtifactStore | None = None
) -> dict[str, Any]:
    """Write the ensemble version ``ref`` serves (NAME: production, else highest; NAME@3; a run id) and all its
    base runs to one signed ``.tar.gz`` archive.

    Returns ``{"path", "sha256", "size", "kind": "ensemble", "name", "version", "run_id", "base_runs":
    [run ids], "members": {name: {sha256, size}}, "signed_by"}``.
    """
    out = check_out_file(out)
    doc = resolve_ensemble(database, ref, field="ref").doc
    store = store or get_store(database.settings)
    members: dict[str, bytes] = {}
    ensemble_artifacts: dict[str, str] = {}
    for kind, info in sorted((doc.get("artifacts") or {}).items()):
        member = ENSEMBLE_DIR + PurePosixPath(info["path"]).name
        members[member] = read_verified(store, info)
        ensemble_artifacts[kind] = member
    members[ENSEMBLE_MEMBER] = dump_document({k: v for k, v in doc.items() if k != "_id"})
    base_ids = _base_run_ids(doc)
    found = RunStore(database).find_many(base_ids)
    for run_id in base_ids:
        if run_id not in found:
            raise NotFoundError(
                f"base run {run_id} of ensemble {doc['name']!r} version {doc.get('version')} is not in the "
                "registry any more; the ensemble cannot be exported",
                field="ref",
            )
        for name, data in run_members(database, found[run_id], store).items():
            members[f"{RUNS_DIR}{run_id}/{name}"] = data
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": iso(),
        "ensemble": {
            "name": doc["name"],
            "version": doc.get("version"),
            "run_id": doc["run_id"],
            "stage": doc.get("stage") or "none",
        },
        "base_runs": base_ids,
        "ensemble_artifacts": ensemble_artifacts,
        "versions": environment_versions(),
        "members": listing(members),
    }
    members[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    written, signed_by = write_signed_archive(database, members, out)
    log.info(
        "exported ensemble %s version %s with %d base run(s) to %s (%d bytes)",
        doc["name"],
        doc.get("version"),
        len(base_ids),
        out,
        written.size,
    )
    return {
        "path": str(out),
        "sha256": written.sha256,
        "size": written.size,
        "kind": "ensemble",
        "name": doc["name"],
        "version": doc.get("version"),
        "run_id": doc["run_id"],
        "base_runs": base_ids,
        "members": manifest["members"],
        "signed_by": signed_by,
    }


# ---------------------------------------------------------------- import


def import_archive(
    database: Database,
    archive: str | Path,
    *,
    on_conflict: str = "refuse",
    by: str | None = None,
    store: ArtifactStore | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """Import a run archive (:func:`models.registry.archive.import_run`, ``on_conflict`` applies) or an
    ensemble archive (:func:`export_ensemble`); the result's ``kind`` says which (``"run"``/``"ensemble"``)."""
    check_import_options(on_conflict, trust)
    store = store or get_store(database.settings)
    path = Path(archive) if isinstance(archive, (str, Path)) else archive
    members = read_archive(path, database.settings)
    if ENSEMBLE_MEMBER not in members:
        result = import_run_members(
            database, members, source=path.name, on_conflict=on_conflict, by=by, store=store, trust=trust
        )
        return {"kind": "run", **result}
    if on_conflict != "refuse":
        raise ValidationError(
            "--rename and --overwrite apply to run archives; an ensemble archive reuses base runs that are "
            "already here with the same files and refuses ones that differ (its base runs keep their ids)",
            field="on_conflict",
        )
    return {
        "kind": "ensemble",
        **_import_ensemble(database, members, source=path.name, by=by, store=store, trust=trust),
    }


def _check_ensemble(members: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple]]:
    """The top manifest, the ensemble document and each base run's ``(members, verify_archive result)``,
    every checksum checked; ValidationError naming what is wrong."""
    manifest = checked_manifest(members, FORMAT, FORMAT_VERSION, "an ensemble export")
    doc = load_member_json(members, ENSEMBLE_MEMBER, extended=True)
    if not isinstance(doc, dict):
        raise _refuse("ensemble.json must hold one object")
    if not isinstance(doc.get("name"), str) or not NAME_RE.match(doc["name"]):
        raise _refuse(f"ensemble.json has an invalid name {doc.get('name')!r}")
    if not RUN_ID_RE.match(str(doc.get("run_id", ""))):
        raise _refuse(f"ensemble.json has an invalid run_id {doc.get('run_id')!r}")
    artifacts, by_kind = doc.get("artifacts"), manifest.get("ensemble_artifacts")
    if not isinstance(artifacts, dict) or not artifacts or not isinstance(by_kind, dict):
        raise _refuse("ensemble.json or manifest.json has no ensemble artifacts table")
    for kind, info in artifacts.items():
        member = by_kind.get(kind)
        if not kind.startswith("ensemble") or kind not in SUFFIXES or member not in members:
            raise _refuse(f"artifact {kind!r} of the ensemble is not in the archive")
        if not isinstance(info, dict) or info.get("sha256") != hashlib.sha256(members[member]).hexdigest():
            raise _refuse(f"artifact {kind!r}: the ensemble's checksum does not match archive member {member}")
    base_ids = _base_run_ids(doc)
    if not base_ids or not all(isinstance(r, str) and RUN_ID_RE.match(r) for r in base_ids):
        raise _refuse(f"ensemble.json lists invalid base runs {base_ids!r}")
    in_archive = {n[len(RUNS_DIR) :].partition("/")[0] for n in members if n.startswith(RUNS_DIR)}
    if in_archive != set(base_ids):
        extra, missing = sorted(in_archive - set(base_ids)), sorted(set(base_ids) - in_archive)
        raise _refuse(
            "the archive's runs are not the ensemble's base runs"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not a base run: {', '.join(extra)}" if extra else "")
        )
    runs: dict[str, tuple] = {}
    for run_id in base_ids:
        prefix = f"{RUNS_DIR}{run_id}/"
        sub = {n[len(prefix) :]: data for n, data in members.items() if n.startswith(prefix)}
        try:
            checked = verify_archive(sub)
        except ValidationError as exc:
            raise _refuse(f"base run {run_id}: {exc.message}") from None
        if checked["run"]["run_id"] != run_id:
            raise _refuse(f"{prefix}run.json holds run {checked['run']['run_id']}, not {run_id}")
        runs[run_id] = (sub, checked)
    return manifest, doc, runs


def _same_files(local: dict[str, Any], archived: dict[str, Any]) -> list[str]:
    """The artifact kinds of the archived run whose SHA-256 differs from (or is missing in) the local run's."""
    ours = {k: (v or {}).get("sha256") for k, v in (local.get("artifacts") or {}).items()}
    return sorted(k for k, info in archived["artifacts"].items() if ours.get(k) != info.get("sha256"))


def _import_ensemble(
    database: Database,
    members: dict[str, bytes],
    *,
    source: str,
    by: str | None,
    store: ArtifactStore,
    trust: bool,
) -> dict[str, Any]:
    manifest, doc, runs = _check_ensemble(members)
    trusted = check_trust(database, members, trust=trust, by=by)
    ensembles = EnsembleStore(database)
    name, run_id = doc["name"], doc["run_id"]
    here = ensembles.find_by_run(run_id)
    if here is not None:
        raise ConflictError(
            f"ensemble run {run_id} is here already (ensemble {here['name']!r} version {here.get('version')}); "
            "nothing was imported",
            field="run_id",
        )
    local = RunStore(database).find_many(list(runs))
    to_import, reused = [], []
    for base_id, (_sub, checked) in runs.items():
        if base_id not in local:
            to_import.append(base_id)
            continue
        differ = _same_files(local[base_id], checked["run"])
        if differ:
            raise ConflictError(
                f"base run {base_id} exists here with other files ({', '.join(differ)} differ): it is not the run "
                "the ensemble was built on; nothing was imported",
                field="run_id",
            )
        reused.append(base_id)
    names = {kind: artifact_name(run_id, kind) for kind in doc["artifacts"]}
    taken = [n for n in names.values() if store.stat(stored_name(store, n))["exists"]]
    if taken:
        raise ConflictError(
            f"artifact files already exist: {', '.join(taken)} (no ensemble of that run id holds them); "
            "refusing to overwrite them",
            field="run_id",
        )
    # ---- every check passed: from here on things are written, and undone on any failure
    imported: list[dict[str, Any]] = []
    written: list[ArtifactInfo] = []
    try:
        for base_id in to_import:
            sub, checked = runs[base_id]
            imported.append(
                import_checked(
                    database, sub, checked, trusted, source=f"{source} (ensemble {name})", by=by, store=store
                )
            )
        with ArtifactLease(database, run_id) as lease:
            lease.add(names.values())
            by_kind = manifest["ensemble_artifacts"]
            for kind, file_name in names.items():
                written.append(
                    write_verified(store, file_name, members[by_kind[kind]], doc["artifacts"][kind]["sha256"])
                )
            stage_there = doc.get("stage") or "none"
            record = {k: v for k, v in doc.items() if k not in DROPPED}
            record["artifacts"] = {kind: info.to_dict() for kind, info in zip(names, written)}
            record["checksums"] = {kind: info.sha256 for kind, info in zip(names, written)}
            record["stage"] = "none"
            record["stage_history"] = [
                {
                    "from": None,
                    "to": "none",
                    "at": now(),
                    "by": by,
                    "reason": f"imported from {source} (version {doc.get('version')}, {stage_there} there)",
                }
            ]
            record["imported"] = {
                "at": now(),
                "by": by,
                "archive": source,
                "original_version": doc.get("version"),
                "original_stage": stage_there,
                "exported_at": manifest.get("exported_at"),
                "base_runs_imported": [r["run_id"] for r in imported],
                "base_runs_reused": reused,
                "trust": trusted,
            }
            ensembles.insert(record, new_version=True, keep_version=doc.get("version"))  # the commit point
    except BaseException:
        _undo(database, store, written, imported)
        raise
    log.info(
        "imported ensemble %s as version %s (%d base run(s) imported, %d reused)",
        name,
        record["version"],
        len(imported),
        len(reused),
    )
    return {
        "name": name,
        "version": record["version"],
        "original_version": doc.get("version"),
        "run_id": run_id,
        "stage": "none",
        "base_runs_imported": [r["run_id"] for r in imported],
        "base_runs_reused": reused,
        "configs_created": [r["config"]["name"] for r in imported if r["config"]["action"] == "created"],
        "files": [i.path for i in written],
        "trust": {k: v for k, v in trusted.items() if k != "trusted_at"},
    }


def _undo(database: Database, store: ArtifactStore, written: list[ArtifactInfo], imported: list[dict]) -> None:
    """Remove what a failed ensemble import wrote: its files, the runs it imported and the configs it created."""
    for info in written:
        try:
            store.delete(info.path)
        except OSError as exc:  # garbage collection finds it later
            log.error("ensemble import undo: %s not deleted: %s", info.path, exc)
    configs = ConfigStore(database)
    for result in reversed(imported):
        try:
            delete_run(database, result["run_id"], store=store)
            if result["config"]["action"] == "created":
                created = configs.find(result["config"]["name"])
                if created is not None:
                    configs.remove(created["_id"])
        except Exception:  # each one tried, whatever happens to the others
            log.exception("ensemble import undo: run %s not removed", result["run_id"])
