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
(a new run id) or ``"overwrite"``: the existing run is replaced only when it is a
run of the same config (a run id of another config is refused) that no ensemble
uses, and only after the new files are written under staging names and
verified; they then replace the old ones (whose bytes are kept in memory) and
the run document is replaced in one write (the commit point). On any failure
the old run, its files and its config pointer are exactly as before. Without a
conflict, files are written atomically and verified, then the run document is
inserted (the commit point); a failure in between removes the files written.
The archive is decompressed as a stream, bounded by ``MAX_ARCHIVE_MEMBER_BYTES``
per member and ``MAX_ARCHIVE_BYTES`` in all (refused the moment a bound is passed). The run keeps its version when that version is free for its
name, else it gets the next version by the usual rules.

Deployment export: one joblib file with a plain scikit-learn ``Pipeline``
(select features -> scaler -> model) and a metadata JSON next to it. :func:`deployable` builds the
estimator without writing anything (the MLflow export, :mod:`models.registry.mlflow_export`, uses it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import tarfile
import uuid
import zlib
from datetime import UTC
from pathlib import Path, PurePosixPath
from typing import IO, Any

import joblib
import sklearn
from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from models.artifacts.atomic import atomic_write
from models.artifacts.base import SUFFIXES, ArtifactInfo, ArtifactStore, artifact_name
from models.artifacts.cache import get_model_cache
from models.artifacts.routing import canonical_path, get_store
from models.artifacts.signing import ARCHIVE_CONTEXT, get_signer
from models.artifacts.verified import read_verified
from models.errors import ArtifactError, ConflictError, ValidationError
from models.registry.ensemble_export import (
    Deployable,
    deploy_export_ensemble,
    ensemble_deployable,
    numeric_metrics,
    write_deployment,
)
from models.registry.lifecycle import ensembles_using, history_entry
from models.registry.query import RUN_ID_RE, load, resolve
from models.registry.serving import find_ensemble_reference, resolve_model
from models.settings import Settings, get_settings
from models.store.configs import ConfigStore
from models.store.data_roots import check_data_root
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
# an ensemble archive (models/registry/ensemble_archive.py): the ensemble document and files, and each base
# run as a run export of its own under runs/<run_id>/ (covered by the one signed manifest at the top)
ENSEMBLE_MEMBER, ENSEMBLE_DIR, RUNS_DIR = "ensemble.json", "ensemble/", "runs/"
MEMBER_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
ON_CONFLICT = ("refuse", "rename", "overwrite")
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_document(doc: Any) -> bytes:
    return json_util.dumps(doc, json_options=JSON_OPTIONS, indent=2, sort_keys=True).encode()


# ---------------------------------------------------------------- export


def export_run(
    database: Database, ref: str, out: str | Path, *, store: ArtifactStore | None = None
) -> dict[str, Any]:
    """Write one run (``ref``: see :func:`models.registry.query.resolve`) to a ``.tar.gz`` archive.

    Returns ``{"path", "sha256", "size", "run_id", "name", "version", "members": {name: {sha256, size}}}``.
    """
    out = check_out_file(out)
    run = resolve(database, ref)
    members = run_members(database, run, store or get_store(database.settings))
    manifest = json.loads(members[MANIFEST])
    written, signed_by = write_signed_archive(database, members, out)
    log.info("exported run %s to %s (%d bytes)", run["run_id"], out, written.size)
    return {
        "path": str(out),
        "sha256": written.sha256,
        "size": written.size,
        "run_id": run["run_id"],
        "name": run.get("name"),
        "version": run.get("version"),
        "members": manifest["members"],
        "signed_by": signed_by,
    }


def check_out_file(out: Any) -> Path:
    """``out`` as the path of an archive to write (ValidationError naming ``out`` otherwise)."""
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise ValidationError("out must be a file path", field="out")
    out = Path(out)
    if out.is_dir():
        raise ValidationError(f"out {str(out)!r} is a folder; give a file name such as run.tar.gz", field="out")
    return out


def run_members(database: Database, run: dict[str, Any], store: ArtifactStore) -> dict[str, bytes]:
    """A run export's members: ``run.json``, ``config.json``, ``artifacts/<file>`` (each read verified) and
    ``manifest.json`` listing every other member's SHA-256 and size (unsigned: see :func:`write_signed_archive`)."""
    members: dict[str, bytes] = {}
    artifact_members: dict[str, str] = {}
    for kind, info in sorted((run.get("artifacts") or {}).items()):
        member = ARTIFACT_DIR + PurePosixPath(info["path"]).name
        members[member] = read_verified(store, info)
        artifact_members[kind] = member
    config = ConfigStore(database).find(run["config_id"]) if run.get("config_id") else None
    config_source = "current" if config is not None else "snapshot"
    config = {k: v for k, v in (config or run.get("config") or {}).items() if k != "_id"}
    members[RUN_MEMBER] = dump_document({k: v for k, v in run.items() if k != "_id"})
    members[CONFIG_MEMBER] = dump_document(config)
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
        "members": listing(members),
    }
    members[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return members


def listing(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The manifest's members table: ``{name: {"sha256", "size"}}``."""
    return {name: {"sha256": _sha(data), "size": len(data)} for name, data in sorted(members.items())}


def write_signed_archive(database: Database, members: dict[str, bytes], out: Path) -> tuple[ArtifactInfo, str]:
    """Sign ``members[MANIFEST]`` with this installation's key and write every member to the ``.tar.gz``
    ``out`` atomically (manifest and signature first); the written file and the public key that signed."""
    signer = get_signer(database.settings)
    members = {**members, SIGNATURE: signer.sign(ARCHIVE_CONTEXT, members[MANIFEST]).encode()}
    stamp = int(now().timestamp())

    def write(fh: IO[bytes]) -> None:
        with tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name in [MANIFEST, SIGNATURE, *sorted(n for n in members if n not in (MANIFEST, SIGNATURE))]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(members[name]), 0o644, stamp
                tar.addfile(info, io.BytesIO(members[name]))

    return atomic_write(out, write), signer.public_key


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
    if not _expected_name(name):
        raise _refuse(f"archive member {name!r} is not part of a run or ensemble export; refused")


def _run_member_name(name: str) -> bool:
    """Whether ``name`` is a member of a run export (at the top, or under an ensemble's ``runs/<run_id>/``)."""
    if name in (MANIFEST, RUN_MEMBER, CONFIG_MEMBER):
        return True
    return name.startswith(ARTIFACT_DIR) and bool(MEMBER_FILE_RE.match(name[len(ARTIFACT_DIR) :]))


def _expected_name(name: str) -> bool:
    if name in (SIGNATURE, ENSEMBLE_MEMBER) or _run_member_name(name):
        return True
    if name.startswith(ENSEMBLE_DIR):
        return bool(MEMBER_FILE_RE.match(name[len(ENSEMBLE_DIR) :]))
    run_id, _, rest = name[len(RUNS_DIR) :].partition("/") if name.startswith(RUNS_DIR) else ("", "", "")
    return bool(RUN_ID_RE.match(run_id)) and _run_member_name(rest)


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"


class _BoundedStream(io.RawIOBase):
    """The decompressed bytes of an archive, refusing (``ValidationError``) once more than ``limit`` come out.

    Every read asks the decompressor for at most what is left under the limit (plus one byte to notice
    that it was passed), so no single read, however large a size a tar header claims, decompresses or
    allocates more than the limit.
    """

    def __init__(self, source: IO[bytes], limit: int, label: str) -> None:
        self.source, self.limit, self.label, self.pos = source, limit, label, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.pos + 1
        data = self.source.read(room if size is None or size < 0 else min(size, room))
        self.pos += len(data)
        if self.pos > self.limit:
            raise _refuse(
                f"{self.label} decompresses to more than {_mib(self.limit)} (MAX_ARCHIVE_BYTES plus tar headers); "
                "refused (an archive bomb?); nothing was imported"
            )
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


MAX_ARCHIVE_MEMBERS = 1024  # a run export holds 4 members plus one per artifact kind; an ensemble's, that per base
READ_BLOCK = 1024**2


def read_archive(path: str | Path, settings: Settings | None = None) -> dict[str, bytes]:
    """Every member's bytes, after checking that each one is a safe, expected regular file.

    The archive is decompressed as a stream and never beyond its bounds (``settings``, default: the
    environment's): a member over ``MAX_ARCHIVE_MEMBER_BYTES`` or members over ``MAX_ARCHIVE_BYTES``
    together are refused as soon as their tar header says so, before their bytes are decompressed,
    and the decompressed stream itself stops at the total bound (so a lying or huge header cannot
    make it allocate more).
    """
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ValidationError("archive must be a file path", field="archive")
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"archive {str(path)!r} does not exist or is not a file", field="archive")
    settings = settings or get_settings()
    member_limit, total_limit = settings.max_archive_member_bytes, settings.max_archive_bytes
    # headers and padding: at most 3 blocks of 512 per member, plus the end-of-archive blocks
    stream_limit = total_limit + (MAX_ARCHIVE_MEMBERS + 1) * 4 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE
    out: dict[str, bytes] = {}
    total = 0
    try:
        with (
            gzip.open(path, "rb") as gz,
            tarfile.open(fileobj=_BoundedStream(gz, stream_limit, path.name), mode="r|") as tar,
        ):
            for member in tar:
                _check_member(member)
                if member.name in out:
                    raise _refuse(f"archive has duplicate members: {member.name}")
                if len(out) >= MAX_ARCHIVE_MEMBERS:
                    raise _refuse(
                        f"archive has more than {MAX_ARCHIVE_MEMBERS} members; it is not an export of this service"
                    )
                if member.size > member_limit:
                    raise _refuse(
                        f"archive member {member.name} is {_mib(member.size)} uncompressed, more than "
                        f"MAX_ARCHIVE_MEMBER_BYTES ({_mib(member_limit)}); refused before decompressing it, "
                        "nothing was imported"
                    )
                if total + member.size > total_limit:
                    raise _refuse(
                        f"archive members add up to more than MAX_ARCHIVE_BYTES ({_mib(total_limit)}) "
                        f"uncompressed at {member.name}; refused, nothing was imported"
                    )
                fh = tar.extractfile(member)
                buf = bytearray()
                while fh is not None and (block := fh.read(min(READ_BLOCK, member_limit + 1 - len(buf)))):
                    buf += block
                    if len(buf) > member_limit:  # the header's size bounds it already: a second guard
                        raise _refuse(f"archive member {member.name} is larger than MAX_ARCHIVE_MEMBER_BYTES")
                total += len(buf)
                out[member.name] = bytes(buf)
    except ValidationError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError, zlib.error) as exc:
        raise _refuse(f"{path.name} is not a readable .tar.gz archive: {exc}") from None
    return out


def load_member_json(members: dict[str, bytes], name: str, extended: bool) -> Any:
    try:
        text = members[name].decode("utf-8")
        return json_util.loads(text, json_options=JSON_OPTIONS) if extended else json.loads(text)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise _refuse(f"archive member {name} is not valid JSON: {exc}") from None


def checked_manifest(
    members: dict[str, bytes], fmt: str = FORMAT, version: int = FORMAT_VERSION, what: str = "a run export"
) -> dict[str, Any]:
    """``manifest.json`` of format ``fmt`` and ``version``, with every other member listed in it and matching
    its SHA-256 and size (:func:`check_listed`); ValidationError naming what is wrong."""
    if MANIFEST not in members:
        raise _refuse(f"archive has no manifest.json; it is not {what}")
    manifest = load_member_json(members, MANIFEST, extended=False)
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise _refuse(f"manifest.json is not a {fmt} manifest")
    if manifest.get("format_version") != version:
        raise _refuse(
            f"archive format version {manifest.get('format_version')!r} is not supported "
            f"(this service reads version {version})"
        )
    check_listed(members, manifest)
    return manifest


def verify_archive(members: dict[str, bytes]) -> dict[str, Any]:
    """Check the manifest, every checksum and the run document; return ``{"manifest", "run", "config"}``."""
    manifest = checked_manifest(members)
    for required in (RUN_MEMBER, CONFIG_MEMBER):
        if required not in members:
            raise _refuse(f"archive has no {required}")
    run = load_member_json(members, RUN_MEMBER, extended=True)
    config = load_member_json(members, CONFIG_MEMBER, extended=True)
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


def check_listed(members: dict[str, bytes], manifest: dict[str, Any], prefix: str = "") -> None:
    """Every member but the manifest and signature is listed in ``manifest["members"]`` with its SHA-256 and
    size, and every listed member is there (``prefix``: where these members sit in the archive, for messages)."""
    listed = manifest.get("members")
    if not isinstance(listed, dict):
        raise _refuse(f"{prefix}manifest.json has no members table")
    present = set(members) - {MANIFEST, SIGNATURE}
    unlisted = sorted(prefix + n for n in present - set(listed))
    if unlisted:
        raise _refuse(f"archive members not in the manifest: {', '.join(unlisted)}")
    absent = sorted(prefix + n for n in set(listed) - present)
    if absent:
        raise _refuse(f"archive is missing members listed in the manifest: {', '.join(absent)}")
    for name in sorted(present):
        entry = listed[name] if isinstance(listed[name], dict) else {}
        actual = _sha(members[name])
        if entry.get("sha256") != actual or entry.get("size") != len(members[name]):
            raise _refuse(
                f"archive member {prefix}{name} fails verification: SHA-256 {actual[:12]}..., manifest says "
                f"{str(entry.get('sha256'))[:12]}... (changed or corrupted); nothing was imported"
            )


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


def _user_config(database: Database, config: dict[str, Any], name: str) -> dict[str, Any]:
    """The user fields of an archived config, validated (the run's name wins), its training CSV inside a
    data root: every check :meth:`ConfigStore.create` makes, made before anything is written."""
    user = {k: v for k, v in config.items() if k not in TRAINING_FIELDS and k not in SERVER_FIELDS}
    user["name"] = name
    try:
        clean = validate_config(user, limits=database.settings.hyperparameter_limit)
        check_data_root(clean["training_csv"], database.settings)
    except ValidationError as exc:
        raise _refuse(
            f"config.json in the archive is not a valid config: {exc.message}; nothing was imported"
        ) from None
    return clean


def _check_replaceable(
    database: Database, existing: dict[str, Any], run: dict[str, Any], config: dict[str, Any] | None
) -> None:
    """Refuse to overwrite run ``existing`` with the archive's ``run`` unless it is the same config's run
    (same name, same config, no other config pointing at it) and no ensemble uses it."""
    run_id = existing["run_id"]
    rename = "; import with --rename (on_conflict='rename') to give the imported run a new id. Nothing was changed"
    configs = ConfigStore(database)
    owner = configs.find(existing["config_id"]) if existing.get("config_id") else None
    pointing = configs.find_by_run(run_id)
    target = config["_id"] if config is not None else None
    for other in (owner, pointing):
        if other is not None and other["_id"] != target:
            raise ConflictError(
                f"run {run_id} belongs to config {other.get('name')!r}, not to {run['name']!r} that the "
                f"archive's run is of: overwriting it would take {other.get('name')!r}'s run away{rename}",
                field="run_id",
            )
    if existing.get("name") != run["name"]:
        raise ConflictError(
            f"run {run_id} is a run of {existing.get('name')!r}, not of {run['name']!r} that the archive's run "
            f"is of{rename}",
            field="run_id",
        )
    users = ensembles_using(database, run_id)
    if users:
        raise ConflictError(
            f"run {run_id} is used by {len(users)} ensemble(s): {', '.join(u['name'] for u in users)}; "
            "it cannot be overwritten while they use it (delete them first). Nothing was changed",
            field="run_id",
        )


def write_verified(store: ArtifactStore, name: str, data: bytes, expected: str) -> ArtifactInfo:
    """Write ``name`` and read it back: :class:`ArtifactError` unless both checksums are ``expected``."""
    info = store.write(name, lambda fh: fh.write(data))
    if info.sha256 != expected or _sha(store.read_bytes(info.path)) != expected:
        store.delete(info.path)
        raise ArtifactError(
            f"artifact {name} does not verify after writing (SHA-256 differs); nothing was imported",
            reason="checksum_mismatch",
            path=info.path,
        )
    return info


class _Swap:
    """The files of a run being overwritten: the new ones are first written and verified under staging
    names (nothing old touched), then written over the final names with the old bytes kept in memory;
    :meth:`undo` puts every old file back byte for byte and removes every new one."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.staged: list[str] = []
        self.old: dict[
            str, tuple[str, bytes | None]
        ] = {}  # final stored path -> (name, bytes before; None: absent)
        self.token = uuid.uuid4().hex[:12]

    def stage(self, run_id: str, kind: str, data: bytes, expected: str) -> None:
        info = write_verified(self.store, f"{run_id}.import-{self.token}{SUFFIXES[kind]}", data, expected)
        self.staged.append(info.path)

    def put(self, name: str, data: bytes, expected: str) -> ArtifactInfo:
        final = stored_name(self.store, name)
        before = self.store.read_bytes(final) if self.store.stat(final)["exists"] else None
        info = self.store.write(name, lambda fh: fh.write(data))  # atomic: a failed write leaves the old file
        self.old.setdefault(final, (name, before))
        if info.sha256 != expected or _sha(self.store.read_bytes(info.path)) != expected:
            raise ArtifactError(
                f"artifact {name} does not verify after writing (SHA-256 differs); nothing was imported",
                reason="checksum_mismatch",
                path=info.path,
            )
        return info

    def undo(self) -> None:
        """Every replaced file back as it was (each one tried, whatever happens to the others)."""
        for final, (name, data) in self.old.items():
            try:
                if data is None:
                    self.store.delete(final)
                else:
                    self.store.write(name, lambda fh, d=data: fh.write(d))
            except (ArtifactError, OSError) as exc:
                log.error("import undo: %s could not be put back: %s", final, exc)
        self.drop_staged()

    def drop_staged(self) -> None:
        for path in self.staged:
            try:
                self.store.delete(path)
            except (ArtifactError, OSError) as exc:  # garbage collection finds it later
                log.warning("staged import file %s not deleted: %s", path, exc)


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
    imported run a new id, ``"overwrite"`` to replace the existing run: only a run of the same
    config (another config's run id is refused) that no ensemble uses, and only once the new files
    are written and verified; on any failure the old run, its files and its config are as before.
    When no config with the run's name exists, one is created from the archive and pointed at the
    run; an existing config is linked (``config_id``) but left pointing at its own current run (when
    that is the overwritten run, at its new content).
    Returns ``{"run_id", "name", "version", "original_run_id", "original_version", "renamed",
    "overwritten", "files", "config": {"name", "action": "created" | "linked"}}``.
    """
    check_import_options(on_conflict, trust)
    archive = Path(archive) if isinstance(archive, (str, Path)) else archive
    members = read_archive(archive, database.settings)
    if ENSEMBLE_MEMBER in members:
        raise _refuse(
            f"{archive.name} is an ensemble archive (an ensemble with its base runs): import it with "
            "`models import` (registry.import_archive); nothing was imported"
        )
    return import_run_members(
        database, members, source=archive.name, on_conflict=on_conflict, by=by, store=store, trust=trust
    )


def check_import_options(on_conflict: Any, trust: Any) -> None:
    """ValidationError naming ``on_conflict`` or ``trust`` when it is not one an import takes."""
    if on_conflict not in ON_CONFLICT:
        raise ValidationError(f"on_conflict must be one of: {', '.join(ON_CONFLICT)}", field="on_conflict")
    if not isinstance(trust, bool):
        raise ValidationError(f"trust must be true or false; got {trust!r}", field="trust")


def import_run_members(
    database: Database,
    members: dict[str, bytes],
    *,
    source: str,
    on_conflict: str = "refuse",
    by: str | None = None,
    store: ArtifactStore | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """:func:`import_run` of a run export's members already read (``source`` names the archive): verified,
    trusted, then written by :func:`import_checked`."""
    checked = verify_archive(members)
    trusted = check_trust(database, members, trust=trust, by=by)
    return import_checked(
        database,
        members,
        checked,
        trusted,
        source=source,
        on_conflict=on_conflict,
        by=by,
        store=store or get_store(database.settings),
    )


def import_checked(
    database: Database,
    members: dict[str, bytes],
    checked: dict[str, Any],
    trusted: dict[str, Any],
    *,
    source: str,
    on_conflict: str = "refuse",
    by: str | None = None,
    store: ArtifactStore,
) -> dict[str, Any]:
    """The writing half of :func:`import_run`, for a run export's ``members`` that passed
    :func:`verify_archive` (``checked``) and :func:`check_trust` (``trusted``); ``source`` names the
    archive in the run's history. Nothing remains written when it fails."""
    run, manifest = checked["run"], checked["manifest"]
    original_id, original_version = run["run_id"], run.get("version")
    configs, runs = ConfigStore(database), RunStore(database)
    existing_config = configs.find(run["name"])
    user_config = _user_config(database, checked["config"], run["name"]) if existing_config is None else None
    run_id, replacing = original_id, runs.find(original_id)
    if replacing is not None:
        if on_conflict == "refuse":
            raise ConflictError(
                f"run {original_id} already exists; import again with --rename "
                "(on_conflict='rename') to give the imported run a new id, or with --overwrite "
                "(on_conflict='overwrite') to replace the existing run",
                field="run_id",
            )
        if on_conflict == "rename":
            run_id, replacing = new_run_id(), None
        else:
            _check_replaceable(database, replacing, run, existing_config)
    names = {kind: artifact_name(run_id, kind) for kind in run["artifacts"]}
    if replacing is None:
        taken = [n for n in names.values() if store.stat(stored_name(store, n))["exists"]]
        if taken:
            raise ConflictError(
                f"artifact files already exist: {', '.join(taken)} (no run of that id holds them); "
                "refusing to overwrite them",
                field="run_id",
            )
    data_of = {kind: members[manifest["artifacts"][kind]] for kind in names}
    expected = {kind: run["artifacts"][kind]["sha256"] for kind in names}
    # ---- every check passed: from here on things are written, and undone on any failure
    swap = _Swap(store)
    written: list[ArtifactInfo] = []
    created_config = None
    swapped_doc = False
    try:
        if replacing is not None:
            for kind in names:  # the new files, complete and verified, before any old file is touched
                swap.stage(run_id, kind, data_of[kind], expected[kind])
        for kind, name in names.items():
            if replacing is not None:
                written.append(swap.put(name, data_of[kind], expected[kind]))
            else:
                written.append(write_verified(store, name, data_of[kind], expected[kind]))
        doc = {k: v for k, v in run.items() if k != "_id"}
        doc["run_id"] = run_id
        doc["artifacts"] = {kind: info.to_dict() for kind, info in zip(names, written)}
        if existing_config is None:
            # the training data does not travel with an archive: an imported run is already trained
            created_config = configs.create(user_config, check_data=False)
        doc["config_id"] = (existing_config or created_config)["_id"]
        previous = doc.get("status", "trained")
        doc["status"] = "trained"
        doc["status_history"] = [
            *list(doc.get("status_history") or []),
            history_entry(
                previous,
                "trained",
                by,
                f"imported from {source} (run {original_id}, version {original_version})",
            ),
        ]
        doc["imported"] = {
            "at": now(),
            "by": by,
            "archive": source,
            "original_run_id": original_id,
            "original_version": original_version,
            "exported_at": manifest.get("exported_at"),
            "trust": trusted,
        }
        doc.pop("version", None)
        if replacing is not None:
            runs.replace_run(replacing, doc, version=original_version)  # the commit point
            swapped_doc = True
            if existing_config is not None and existing_config.get("run_id") == run_id:
                configs.point_at_run(existing_config["_id"], run_id, config_fields_for_run(doc))
        else:
            try:
                runs.insert_versioned(doc, version=original_version)  # the commit point
                doc["version_change"] = "imported"
                runs.set_fields(doc["_id"], {"version_change": "imported"})
            except (ConflictError, ValidationError) as exc:
                if getattr(exc, "field", None) != "version":
                    raise
                doc.pop("_id", None)
                runs.insert_versioned(doc)  # the archived version is taken here: next one by the usual rules
    except BaseException:
        if swapped_doc:
            runs.restore_run(replacing)
            if existing_config is not None:
                configs.restore_fields(existing_config)
        if replacing is not None:
            swap.undo()
        else:
            for info in written:
                store.delete(info.path)
        if created_config is not None:
            configs.remove(created_config["_id"])
        raise
    config_action = "linked"
    if created_config is not None:
        configs.record_run(created_config["_id"], config_fields_for_run(doc), now())
        config_action = "created"
    if replacing is not None:
        _finish_overwrite(database, store, swap, replacing, written)
    log.info("imported run %s as %s (%s %s)", original_id, run_id, doc["name"], doc["version"])
    return {
        "run_id": run_id,
        "name": doc["name"],
        "version": doc["version"],
        "original_run_id": original_id,
        "original_version": original_version,
        "renamed": run_id != original_id,
        "overwritten": replacing is not None,
        "files": [i.path for i in written],
        "config": {"name": doc["name"], "action": config_action},
        "trust": {k: v for k, v in trusted.items() if k != "trusted_at"},
    }


def _finish_overwrite(
    database: Database, store: ArtifactStore, swap: _Swap, replaced: dict[str, Any], written: list[ArtifactInfo]
) -> None:
    """After the commit: the staged copies go, and so do the old run's files the new one does not reuse
    (another backend, a kind it lacks); its models leave the cache."""
    swap.drop_staged()
    kept = {canonical_path(i.path) for i in written}
    for info in (replaced.get("artifacts") or {}).values():
        if isinstance(info, dict) and info.get("path") and canonical_path(info["path"]) not in kept:
            try:
                store.delete(info["path"])
            except (ArtifactError, OSError) as exc:
                log.warning(
                    "old file %s of overwritten run %s not deleted: %s", info["path"], replaced["run_id"], exc
                )
    run_id = replaced["run_id"]
    get_model_cache(database.settings).discard(lambda key: isinstance(key, tuple) and key[:1] == (run_id,))


def stored_name(store: ArtifactStore, name: str) -> str:
    """The stored path a write of ``name`` would produce (the routing store writes to its primary)."""
    target = getattr(store, "primary", store)
    stored_path = getattr(target, "stored_path", None)
    return stored_path(name) if callable(stored_path) else name


# ---------------------------------------------------------------- deployment export


def ensemble_reference(database: Database, ref: str) -> str | None:
    """The ensemble reference ``ref`` is (an ensemble's name, ``NAME@3``, ``NAME@production``..., or a
    version's run id), unless a model or config of that name exists; the reference itself, checked
    (:func:`models.store.references.resolve_ensemble` refuses an unknown version or alias), or None."""
    name = ref.strip().rpartition("@")[0] if "@" in ref else ref.strip()
    if RunStore(database).has_name(name) or ConfigStore(database).find(name):
        return None
    served = find_ensemble_reference(database, ref, field="ref")
    return None if served is None else ref.strip()


def model_deployable(database: Database, ref: str) -> Deployable:
    """The run model reference ``ref`` serves (:func:`models.registry.serving.resolve_model`) as a fitted
    scikit-learn Pipeline (select features -> scaler -> model) with its metadata."""
    served = resolve_model(database, ref, field="ref")  # NAME: its production run, else its latest training
    loaded = load(database, served.run_document(database))
    run, model = loaded.run, loaded.model
    classes = model.classes
    meta = {
        "run_id": run["run_id"],
        "name": run["name"],
        "version": run.get("version"),
        "task": model.task,
        "model_type": run.get("model_type"),
        "features": list(model.features),
        "classes": [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
        "metrics": numeric_metrics(run.get("metrics")),
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "trained_with": run.get("versions"),
    }
    kinds = {f: (model.feature_types or {}).get(f, "numeric") for f in model.features}
    described = {**served.describe(), "version": run.get("version")}
    return Deployable(model.to_pipeline(), meta, kinds, described)


def deployable(database: Database, ref: str) -> Deployable:
    """The fitted scikit-learn estimator a deployment export of ``ref`` holds, with its metadata.

    ``ref`` resolves as in :func:`deploy_export`: an ensemble's name or run id gives its stacking/voting
    estimator (:func:`models.registry.ensemble_export.ensemble_deployable`), anything else is a model
    reference (:func:`model_deployable`).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError("ref must be a model reference or an ensemble name", field="ref")
    ensemble = ensemble_reference(database, ref)
    return ensemble_deployable(database, ensemble) if ensemble is not None else model_deployable(database, ref)


def deploy_export(database: Database, ref: str, out_dir: str | Path) -> dict[str, Any]:
    """Write ``<name>-<version>.joblib`` (a fitted scikit-learn Pipeline: select features -> scaler ->
    model, loadable with plain scikit-learn + joblib) and ``<name>-<version>.json`` (metadata) to
    ``out_dir``. ``ref`` is a model reference (:mod:`models.registry.serving`) or an ensemble reference
    (NAME, NAME@3, NAME@production, a version's run id: then one stacking/voting estimator,
    :mod:`models.registry.ensemble_export`). Returns the metadata plus ``{"pipeline_path", "metadata_path"}``.
    """
    if not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        raise ValidationError("out_dir must be a folder path", field="out_dir")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"out_dir {str(out_dir)!r} is a file, not a folder", field="out_dir")
    ensemble = ensemble_reference(database, ref)
    if ensemble is not None:
        return deploy_export_ensemble(database, ensemble, out_dir)
    built = model_deployable(database, ref)
    base = f"{built.meta['name']}-{built.meta['version']}"
    if not MEMBER_FILE_RE.match(base):
        base = built.meta["run_id"]
    return write_deployment(built, out_dir, base, var="pipe", label=f"run {built.meta['run_id']}")
