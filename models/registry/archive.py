"""Moving runs between installations: export/import archives, and deployment export.

Export archive (``.tar.gz``, written atomically): ``run.json`` (the run document
as MongoDB Extended JSON, so dates and ids survive), ``config.json`` (the
config document, or the run's snapshot of it when the config is gone),
``artifacts/<file>`` for every artifact (read with signature and checksum
verification, so a corrupted or forged file is never exported), ``manifest.json``
with the SHA-256 and size of every other member, and ``manifest.sig``: the
exporter's Ed25519 signature over the manifest's bytes (it names the exporter's
public key; see models/artifacts/signing.py).

Trust: import accepts an archive whose signature verifies with this
installation's key or a key in ``TRUSTED_KEYS``. Anything else (unsigned,
signed by an unknown key, or changed after signing: a swapped pickle needs a
rewritten manifest, which breaks the signature) is refused unless the caller
passes ``trust=True``; then the run records who trusted it and when. Either way
the files are re-signed with this installation's key as they are written.

Import reads and checks the whole archive in memory before anything is
written: only regular files with the expected names (no absolute paths, no
``..``, no links or devices), every checksum and size against the manifest,
the run's own artifact checksums against the manifest, the config against the
schema. An existing run id is refused unless ``on_conflict`` is ``"rename"``
(a new run id) or ``"overwrite"`` (the existing run is deleted first, which is
refused while ensembles use it). Files are written atomically, then the run
document is inserted (the commit point); a failure in between removes the
files written. The run keeps its version when that version is free for its
name, else it gets the next version by the usual rules.

Deployment export: one joblib file with a plain scikit-learn ``Pipeline``
(select features -> scaler -> model) and a metadata JSON next to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from datetime import UTC
from pathlib import Path, PurePosixPath
from typing import IO, Any

import joblib
import sklearn
from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from models.artifacts.atomic import atomic_write
from models.artifacts.base import SUFFIXES, ArtifactInfo, ArtifactStore, artifact_name, json_writer, pickle_writer
from models.artifacts.routing import get_store
from models.artifacts.signing import ARCHIVE_CONTEXT, get_signer
from models.artifacts.verified import read_verified
from models.errors import ArtifactError, ConflictError, ValidationError
from models.registry.lifecycle import delete_run, history_entry
from models.registry.query import RUN_ID_RE, load, resolve
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.runs import RunStore, config_fields_for_run
from models.store.schema import NAME_RE, SERVER_FIELDS, TRAINING_FIELDS, validate_config
from models.timeutil import iso, now
from models.training.train import environment_versions, new_run_id

log = logging.getLogger(__name__)

FORMAT = "ensemble-model-cache/run-export"
FORMAT_VERSION = 1
MANIFEST, RUN_MEMBER, CONFIG_MEMBER, ARTIFACT_DIR = "manifest.json", "run.json", "config.json", "artifacts/"
SIGNATURE = "manifest.sig"
MEMBER_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
MAX_ARCHIVE_BYTES = 4 * 1024**3  # uncompressed total; refuses archive bombs before reading
ON_CONFLICT = ("refuse", "rename", "overwrite")
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(doc: Any) -> bytes:
    return json_util.dumps(doc, json_options=JSON_OPTIONS, indent=2, sort_keys=True).encode()


# ---------------------------------------------------------------- export


def export_run(
    database: Database, ref: str, out: str | Path, *, store: ArtifactStore | None = None
) -> dict[str, Any]:
    """Write one run (``ref``: see :func:`models.registry.query.resolve`) to a ``.tar.gz`` archive.

    Returns ``{"path", "sha256", "size", "run_id", "name", "version", "members": {name: {sha256, size}}}``.
    """
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise ValidationError("out must be a file path", field="out")
    out = Path(out)
    if out.is_dir():
        raise ValidationError(f"out {str(out)!r} is a folder; give a file name such as run.tar.gz", field="out")
    run = resolve(database, ref)
    store = store or get_store(database.settings)
    members: dict[str, bytes] = {}
    artifact_members: dict[str, str] = {}
    for kind, info in sorted((run.get("artifacts") or {}).items()):
        member = ARTIFACT_DIR + PurePosixPath(info["path"]).name
        members[member] = read_verified(store, info)
        artifact_members[kind] = member
    config = ConfigStore(database).find(run["config_id"]) if run.get("config_id") else None
    config_source = "current" if config is not None else "snapshot"
    config = {k: v for k, v in (config or run.get("config") or {}).items() if k != "_id"}
    members[RUN_MEMBER] = _dumps({k: v for k, v in run.items() if k != "_id"})
    members[CONFIG_MEMBER] = _dumps(config)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": iso(),
        "run_id": run["run_id"],
        "name": run.get("name"),
        "version": run.get("version"),
        "config_source": config_source,
        "artifacts": artifact_members,
        "versions": environment_versions(),
        "members": {name: {"sha256": _sha(data), "size": len(data)} for name, data in sorted(members.items())},
    }
    members[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    signer = get_signer(database.settings)
    members[SIGNATURE] = signer.sign(ARCHIVE_CONTEXT, members[MANIFEST]).encode()
    stamp = int(now().timestamp())

    def write(fh: IO[bytes]) -> None:
        with tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name in [MANIFEST, SIGNATURE, *sorted(n for n in members if n not in (MANIFEST, SIGNATURE))]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(members[name]), 0o644, stamp
                tar.addfile(info, io.BytesIO(members[name]))

    written = atomic_write(out, write)
    log.info("exported run %s to %s (%d bytes)", run["run_id"], out, written.size)
    return {
        "path": str(out),
        "sha256": written.sha256,
        "size": written.size,
        "run_id": run["run_id"],
        "name": run.get("name"),
        "version": run.get("version"),
        "members": manifest["members"],
        "signed_by": signer.public_key,
    }


# ---------------------------------------------------------------- import: reading and checking


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, field="archive")


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if not name or "\x00" in name or "\\" in name:
        raise _refuse(f"archive member {name!r} has a forbidden name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or name.startswith("~"):
        raise _refuse(f"archive member {name!r} has an absolute path; refused")
    if ".." in pure.parts:
        raise _refuse(f"archive member {name!r} contains '..' (it would escape the target folder); refused")
    if member.issym() or member.islnk():
        raise _refuse(f"archive member {name!r} is a link; refused")
    if not member.isreg():
        kind = "folder" if member.isdir() else "device or special file"
        raise _refuse(f"archive member {name!r} is a {kind}, not a regular file; refused")
    if name in (MANIFEST, SIGNATURE, RUN_MEMBER, CONFIG_MEMBER):
        return
    if not (name.startswith(ARTIFACT_DIR) and MEMBER_FILE_RE.match(name[len(ARTIFACT_DIR) :])):
        raise _refuse(f"archive member {name!r} is not part of a run export; refused")


def read_archive(path: str | Path) -> dict[str, bytes]:
    """Every member's bytes, after checking that each one is a safe, expected regular file."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ValidationError("archive must be a file path", field="archive")
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"archive {str(path)!r} does not exist or is not a file", field="archive")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            names = [m.name for m in members]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise _refuse(f"archive has duplicate members: {', '.join(dupes)}")
            if sum(m.size for m in members) > MAX_ARCHIVE_BYTES:
                raise _refuse(f"archive is larger than {MAX_ARCHIVE_BYTES} bytes uncompressed; refused")
            out = {}
            for member in members:
                fh = tar.extractfile(member)
                out[member.name] = fh.read() if fh is not None else b""
            return out
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise _refuse(f"{path.name} is not a readable .tar.gz archive: {exc}") from None


def _load_json(members: dict[str, bytes], name: str, extended: bool) -> Any:
    try:
        text = members[name].decode("utf-8")
        return json_util.loads(text, json_options=JSON_OPTIONS) if extended else json.loads(text)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise _refuse(f"archive member {name} is not valid JSON: {exc}") from None


def verify_archive(members: dict[str, bytes]) -> dict[str, Any]:
    """Check the manifest, every checksum and the run document; return ``{"manifest", "run", "config"}``."""
    if MANIFEST not in members:
        raise _refuse("archive has no manifest.json; it is not a run export")
    manifest = _load_json(members, MANIFEST, extended=False)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(f"manifest.json is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _refuse(
            f"archive format version {manifest.get('format_version')!r} is not supported "
            f"(this service reads version {FORMAT_VERSION})"
        )
    listed = manifest.get("members")
    if not isinstance(listed, dict):
        raise _refuse("manifest.json has no members table")
    present = set(members) - {MANIFEST, SIGNATURE}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise _refuse(f"archive members not in the manifest: {', '.join(unlisted)}")
    absent = sorted(set(listed) - present)
    if absent:
        raise _refuse(f"archive is missing members listed in the manifest: {', '.join(absent)}")
    for name in sorted(present):
        entry = listed[name] if isinstance(listed[name], dict) else {}
        actual = _sha(members[name])
        if entry.get("sha256") != actual or entry.get("size") != len(members[name]):
            raise _refuse(
                f"archive member {name} fails verification: SHA-256 {actual[:12]}..., manifest says "
                f"{str(entry.get('sha256'))[:12]}... (changed or corrupted); nothing was imported"
            )
    for required in (RUN_MEMBER, CONFIG_MEMBER):
        if required not in members:
            raise _refuse(f"archive has no {required}")
    run = _load_json(members, RUN_MEMBER, extended=True)
    config = _load_json(members, CONFIG_MEMBER, extended=True)
    if not isinstance(run, dict) or not isinstance(config, dict):
        raise _refuse("run.json and config.json must each hold one object")
    if not RUN_ID_RE.match(str(run.get("run_id", ""))):
        raise _refuse(f"run.json has an invalid run_id {run.get('run_id')!r}")
    if not isinstance(run.get("name"), str) or not NAME_RE.match(run["name"]):
        raise _refuse(f"run.json has an invalid name {run.get('name')!r}")
    if not isinstance(run.get("definition"), dict):
        raise _refuse("run.json has no definition")
    artifacts, by_kind = run.get("artifacts"), manifest.get("artifacts")
    if not isinstance(artifacts, dict) or not isinstance(by_kind, dict):
        raise _refuse("run.json or manifest.json has no artifacts table")
    missing = [k for k in ("model", "scaler", "features") if k not in artifacts]
    if missing:
        raise _refuse(f"run.json lists no {', '.join(missing)} artifact")
    for kind, info in artifacts.items():
        member = by_kind.get(kind)
        if kind not in SUFFIXES or member not in members or not member.startswith(ARTIFACT_DIR):
            raise _refuse(f"artifact {kind!r} of the run is not in the archive")
        if not isinstance(info, dict) or info.get("sha256") != _sha(members[member]):
            raise _refuse(f"artifact {kind!r}: the run's checksum does not match archive member {member}")
    return {"manifest": manifest, "run": run, "config": config}


def check_trust(database: Database, members: dict[str, bytes], *, trust: bool, by: str | None) -> dict[str, Any]:
    """Who vouches for the archive: ``{"signed_by", "trusted": "this installation" | "TRUSTED_KEYS" |
    "explicit" (``--trust``, API ``"trust": true``), ...}``; :class:`ValidationError` on ``archive``
    when no known key signed its manifest and ``trust`` is not given."""
    signer = get_signer(database.settings)
    signature = members.get(SIGNATURE, b"").decode("ascii", "replace").strip()
    key = signer.signer_of(ARCHIVE_CONTEXT, members[MANIFEST], signature) if signature else None
    if key is not None:
        return {"signed_by": key, "trusted": "this installation" if key == signer.public_key else "TRUSTED_KEYS"}
    problem = (
        "is not signed"
        if not signature
        else "is signed by a key this installation does not trust, or was changed after it was signed"
    )
    if not trust:
        raise _refuse(
            f"archive {problem}; nothing was imported. Import it only if you trust where it came "
            'from: pass --trust (API: "trust": true), or add the exporter\'s public key to '
            "TRUSTED_KEYS"
        )
    claimed = signature.split(":")[1] if signature.count(":") == 2 else None
    log.warning("importing an archive that %s, because %s said --trust", problem, by or "the caller")
    return {
        "signed_by": None,
        "claimed_key": claimed,
        "trusted": "explicit",
        "trusted_by": by,
        "trusted_at": now(),
        "problem": problem,
    }


def _user_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The user fields of an archived config, validated (the run's name wins)."""
    user = {k: v for k, v in config.items() if k not in TRAINING_FIELDS and k not in SERVER_FIELDS}
    user["name"] = name
    try:
        return validate_config(user)
    except ValidationError as exc:
        raise _refuse(f"config.json in the archive is not a valid config: {exc.message}") from None


# ---------------------------------------------------------------- import: writing


def import_run(
    database: Database,
    archive: str | Path,
    *,
    on_conflict: str = "refuse",
    by: str | None = None,
    store: ArtifactStore | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """Import a run exported by :func:`export_run`; nothing is written unless every check passes.

    The archive must be signed by this installation or a ``TRUSTED_KEYS`` key, unless ``trust``
    is True (an explicit choice of the caller, recorded in the run's ``imported.trust``).
    ``on_conflict``: ``"refuse"`` (default) when the run id exists, ``"rename"`` to give the
    imported run a new id, ``"overwrite"`` to delete the existing run first. When no config with
    the run's name exists, one is created from the archive and pointed at the run; an existing
    config is linked (``config_id``) but left pointing at its own current run.
    Returns ``{"run_id", "name", "version", "original_run_id", "original_version", "renamed",
    "overwritten", "files", "config": {"name", "action": "created" | "linked"}}``.
    """
    if on_conflict not in ON_CONFLICT:
        raise ValidationError(f"on_conflict must be one of: {', '.join(ON_CONFLICT)}", field="on_conflict")
    if not isinstance(trust, bool):
        raise ValidationError(f"trust must be true or false; got {trust!r}", field="trust")
    store = store or get_store(database.settings)
    archive = Path(archive) if isinstance(archive, (str, Path)) else archive
    members = read_archive(archive)
    checked = verify_archive(members)
    trusted = check_trust(database, members, trust=trust, by=by)
    run, manifest = checked["run"], checked["manifest"]
    original_id, original_version = run["run_id"], run.get("version")
    existing_config = ConfigStore(database).find(run["name"])
    user_config = _user_config(checked["config"], run["name"]) if existing_config is None else None
    run_id, overwritten = original_id, False
    if RunStore(database).exists(original_id):
        if on_conflict == "refuse":
            raise ConflictError(
                f"run {original_id} already exists; import again with --rename "
                "(on_conflict='rename') to give the imported run a new id, or with --overwrite "
                "(on_conflict='overwrite') to replace the existing run",
                field="run_id",
            )
        if on_conflict == "rename":
            run_id = new_run_id()
    names = {kind: artifact_name(run_id, kind) for kind in run["artifacts"]}
    if on_conflict != "overwrite":
        taken = [n for n in names.values() if store.stat(_stored(store, n))["exists"]]
        if taken:
            raise ConflictError(
                f"artifact files already exist: {', '.join(taken)}; refusing to overwrite them", field="run_id"
            )
    # ---- every check passed: from here on things are written
    if on_conflict == "overwrite" and RunStore(database).exists(run_id):
        delete_run(database, run_id, store=store)
        overwritten = True
    written: list[ArtifactInfo] = []
    created_config = None
    try:
        for kind, name in names.items():
            data = members[manifest["artifacts"][kind]]
            info = store.write(name, lambda fh, data=data: fh.write(data))
            written.append(info)
            if info.sha256 != run["artifacts"][kind]["sha256"]:
                raise ArtifactError(
                    f"artifact {name} was written with a different checksum; import undone",
                    reason="checksum_mismatch",
                    path=info.path,
                )
        doc = {k: v for k, v in run.items() if k != "_id"}
        doc["run_id"] = run_id
        doc["artifacts"] = {kind: info.to_dict() for kind, info in zip(names, written)}
        if existing_config is None:
            # the training data does not travel with an archive: an imported run is already trained
            created_config = ConfigStore(database).create(user_config, check_data=False)
        doc["config_id"] = (existing_config or created_config)["_id"]
        previous = doc.get("status", "trained")
        doc["status"] = "trained"
        doc["status_history"] = [
            *list(doc.get("status_history") or []),
            history_entry(
                previous,
                "trained",
                by,
                f"imported from {archive.name} (run {original_id}, version {original_version})",
            ),
        ]
        doc["imported"] = {
            "at": now(),
            "by": by,
            "archive": archive.name,
            "original_run_id": original_id,
            "original_version": original_version,
            "exported_at": manifest.get("exported_at"),
            "trust": trusted,
        }
        doc.pop("version", None)
        runs = RunStore(database)
        try:
            runs.insert_versioned(doc, version=original_version)
            doc["version_change"] = "imported"
            runs.set_fields(doc["_id"], {"version_change": "imported"})
        except (ConflictError, ValidationError) as exc:
            if getattr(exc, "field", None) != "version":
                raise
            doc.pop("_id", None)
            runs.insert_versioned(doc)  # the archived version is taken here: next one by the usual rules
    except BaseException:
        for info in written:
            store.delete(info.path)
        if created_config is not None:
            ConfigStore(database).remove(created_config["_id"])
        raise
    config_action = "linked"
    if created_config is not None:
        ConfigStore(database).record_run(created_config["_id"], config_fields_for_run(doc), now())
        config_action = "created"
    log.info("imported run %s as %s (%s %s)", original_id, run_id, doc["name"], doc["version"])
    return {
        "run_id": run_id,
        "name": doc["name"],
        "version": doc["version"],
        "original_run_id": original_id,
        "original_version": original_version,
        "renamed": run_id != original_id,
        "overwritten": overwritten,
        "files": [i.path for i in written],
        "config": {"name": doc["name"], "action": config_action},
        "trust": {k: v for k, v in trusted.items() if k != "trusted_at"},
    }


def _stored(store: ArtifactStore, name: str) -> str:
    """The stored path a write of ``name`` would produce (the routing store writes to its primary)."""
    target = getattr(store, "primary", store)
    stored_path = getattr(target, "stored_path", None)
    return stored_path(name) if callable(stored_path) else name


# ---------------------------------------------------------------- deployment export


def deploy_export(database: Database, ref: str, out_dir: str | Path) -> dict[str, Any]:
    """Write ``<name>-<version>.joblib`` (a fitted scikit-learn Pipeline: select features -> scaler ->
    model, loadable with plain scikit-learn + joblib) and ``<name>-<version>.json`` (metadata) to
    ``out_dir``. Returns the metadata plus ``{"pipeline_path", "metadata_path"}``.
    """
    if not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        raise ValidationError("out_dir must be a folder path", field="out_dir")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"out_dir {str(out_dir)!r} is a file, not a folder", field="out_dir")
    loaded = load(database, ref)
    run, model = loaded.run, loaded.model
    pipeline = model.to_pipeline()
    base = f"{run['name']}-{run.get('version')}"
    if not MEMBER_FILE_RE.match(base):
        base = run["run_id"]
    pipeline_path, meta_path = out_dir / f"{base}.joblib", out_dir / f"{base}.json"
    written = atomic_write(pipeline_path, pickle_writer(pipeline))
    classes = model.classes
    meta = {
        "run_id": run["run_id"],
        "name": run["name"],
        "version": run.get("version"),
        "task": model.task,
        "model_type": run.get("model_type"),
        "features": list(model.features),
        "classes": [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
        "metrics": {
            k: v
            for k, v in (run.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        },
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "trained_with": run.get("versions"),
        "pipeline_file": pipeline_path.name,
        "sha256": written.sha256,
        "size": written.size,
        "exported_at": iso(),
        "usage": f"import joblib, pandas as pd; pipe = joblib.load({pipeline_path.name!r}); "
        "pipe.predict(pd.DataFrame(rows))  # rows need the listed feature columns",
    }
    atomic_write(meta_path, json_writer(meta))
    log.info("deployment export of run %s to %s", run["run_id"], pipeline_path)
    return {**meta, "pipeline_path": str(pipeline_path), "metadata_path": str(meta_path)}
