"""Issue 24, findings 4 and 5: an import never loses the run it would replace, never takes another config's
run, and never decompresses more of an archive than its bounds.

An overwrite writes and verifies the new files before touching the old ones; a refusal (the archive's config
outside DATA_ROOTS, a corrupt member, another config's run id, a write or database failure half way) leaves
the old run document, its files byte for byte and its config exactly as they were. A gzip bomb is refused
from its tar header, quickly, in a process whose address space could not hold what it claims."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from bson import json_util

from models import registry
from models.artifacts.routing import get_store
from models.artifacts.signing import ARCHIVE_CONTEXT, get_signer
from models.errors import ArtifactError, ConflictError, ValidationError
from models.registry.archive import (
    JSON_OPTIONS,
    MANIFEST,
    RUN_MEMBER,
    SIGNATURE,
    _sha,
    dump_document,
    export_run,
    import_run,
    read_archive,
)
from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.runs import RunStore
from models.training.train import train_config
from tests.helpers import cls_config

# ---------------------------------------------------------------- helpers


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def craft(
    settings, archive: Path, out: Path, *, name: str | None = None, metrics_extra: dict | None = None
) -> Path:
    """A copy of ``archive`` with the run renamed and/or a different metrics file, re-signed with this
    installation's key (a trusted archive: what a colleague with a TRUSTED_KEYS key could send)."""
    members = read_archive(archive, settings)
    manifest = json.loads(members[MANIFEST])
    run = json_util.loads(members[RUN_MEMBER].decode(), json_options=JSON_OPTIONS)
    if name is not None:
        run["name"] = name
    if metrics_extra is not None:
        member = manifest["artifacts"]["metrics"]
        metrics = {**json.loads(members[member]), **metrics_extra}
        members[member] = json.dumps(metrics, sort_keys=True).encode()
        run["artifacts"]["metrics"]["sha256"] = _sha(members[member])
    members[RUN_MEMBER] = dump_document(run)
    body = {n: d for n, d in members.items() if n not in (MANIFEST, SIGNATURE)}
    manifest["members"] = {n: {"sha256": _sha(d), "size": len(d)} for n, d in sorted(body.items())}
    members[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    members[SIGNATURE] = get_signer(settings).sign(ARCHIVE_CONTEXT, members[MANIFEST]).encode()
    return write_archive(out, {MANIFEST: members[MANIFEST], SIGNATURE: members[SIGNATURE], **body})


def snapshot(database: Database) -> dict:
    """Every run and config document and every artifact file's bytes (name -> bytes)."""
    folder = database.settings.artifact_dir
    return {
        "runs": sorted(database.runs.find({}), key=lambda d: d["run_id"]),
        "configs": sorted(database.configs.find({}), key=lambda d: d["name"]),
        "files": {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {},
    }


@pytest.fixture
def trained(database, games_csv):
    ConfigStore(database).create(cls_config("hw", games_csv))
    return train_config(database, "hw")


@pytest.fixture
def archive(database, trained, tmp_path) -> Path:
    return Path(export_run(database, trained["run_id"], tmp_path / "hw.tar.gz")["path"])


# ---------------------------------------------------------------- finding 4: a failed overwrite loses nothing


def test_overwrite_refused_by_the_data_root_check_leaves_the_run_and_its_files(
    database, settings, trained, archive, tmp_path
):
    # the attack: the run's config is gone, so the import must create one, and its CSV is outside DATA_ROOTS
    ConfigStore(database).delete("hw")
    (tmp_path / "elsewhere").mkdir()
    strict = settings.with_(
        data_roots=(("fixtures", PROJECT_ROOT / "tests" / "fixtures"),), data_dir=tmp_path / "elsewhere"
    )
    db = Database.connect(strict)
    try:
        before = snapshot(db)
        assert len(before["files"]) == 5 and before["configs"] == []
        with pytest.raises(
            ValidationError, match=r"config.json in the archive is not a valid config: training CSV .*DATA_ROOTS"
        ):
            import_run(db, archive, on_conflict="overwrite")
        assert snapshot(db) == before  # the run, its 5 files and (no) config: exactly as before
        assert registry.load(db, trained["run_id"], use_cache=False).model.run_id == trained["run_id"]
    finally:
        db.close()


def test_overwrite_with_a_corrupt_member_leaves_everything(database, trained, archive, tmp_path):
    members = read_archive(archive)
    model = next(n for n in members if n.endswith("_model.pkl"))
    members[model] = members[model][:200] + bytes([members[model][200] ^ 1]) + members[model][201:]
    bad = write_archive(tmp_path / "bad.tar.gz", members)
    before = snapshot(database)
    with pytest.raises(ValidationError, match=r"_model.pkl fails verification.*nothing was imported"):
        import_run(database, bad, on_conflict="overwrite")
    assert snapshot(database) == before


class FailingStore:
    """The configured store, failing the write of one final file name (a full disk half way through)."""

    def __init__(self, settings, fail_name: str) -> None:
        self.inner, self.fail_name, self.writes = get_store(settings), fail_name, []

    def write(self, name, writer):
        self.writes.append(name)
        if name == self.fail_name:
            raise ArtifactError(f"could not write artifact {name}: No space left on device", reason="write_error")
        return self.inner.write(name, writer)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def test_overwrite_failing_half_way_through_the_swap_restores_every_old_file(
    database, settings, trained, archive, tmp_path
):
    changed = craft(settings, archive, tmp_path / "changed.tar.gz", metrics_extra={"note": "new"})
    before = snapshot(database)
    run_id = trained["run_id"]
    store = FailingStore(settings, f"{run_id}_oof.npz")  # after features, metrics and model were replaced
    with pytest.raises(ArtifactError, match="No space left"):
        import_run(database, changed, on_conflict="overwrite", store=store)
    assert f"{run_id}_model.pkl" in store.writes and any(".import-" in n for n in store.writes)  # staged first
    assert snapshot(database) == before  # old bytes back (the metrics file differed), no staged file left


def test_overwrite_failing_at_the_commit_point_restores_everything(
    database, settings, trained, archive, tmp_path, monkeypatch
):
    changed = craft(settings, archive, tmp_path / "changed.tar.gz", metrics_extra={"note": "new"})
    before = snapshot(database)

    def unreachable(self, config_id, from_run_id, fields):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(ConfigStore, "point_at_run", unreachable)  # after the run document was replaced
    with pytest.raises(ConnectionError):
        import_run(database, changed, on_conflict="overwrite")
    assert snapshot(database) == before


def test_overwrite_of_the_same_configs_run_replaces_it_after_verifying(
    database, settings, trained, archive, tmp_path
):
    changed = craft(settings, archive, tmp_path / "changed.tar.gz", metrics_extra={"note": "new"})
    result = import_run(database, changed, on_conflict="overwrite", by="tester")
    run_id = trained["run_id"]
    assert result["overwritten"] and result["run_id"] == run_id and result["version"] == "1.0.0"
    after = snapshot(database)
    assert sorted(after["files"]) == sorted(
        f"{run_id}{s}" for s in ("_features.json", "_metrics.json", "_model.pkl", "_oof.npz", "_scaler.pkl")
    )
    assert json.loads(after["files"][f"{run_id}_metrics.json"])["note"] == "new"
    [run] = after["runs"]
    assert run["imported"]["by"] == "tester" and run["_id"] == trained["_id"]
    config = ConfigStore(database).get("hw")  # still points at the run, now at its new checksums
    assert config["run_id"] == run_id and config["checksums"]["metrics"] == run["artifacts"]["metrics"]["sha256"]
    assert registry.load(database, run_id, use_cache=False).model.run_id == run_id


def test_an_archive_reusing_another_configs_run_id_is_refused(
    database, settings, games_csv, trained, archive, tmp_path
):
    ConfigStore(database).create(cls_config("b", games_csv))
    train_config(database, "b")
    before = snapshot(database)
    for name in ("b", "brand_new"):  # an existing config, and one the import would create
        forged = craft(settings, archive, tmp_path / f"{name}.tar.gz", name=name)
        with pytest.raises(
            ConflictError, match=rf"run {trained['run_id']} belongs to config 'hw'.*--rename"
        ) as err:
            import_run(database, forged, on_conflict="overwrite", trust=True)
        assert err.value.field == "run_id"
        assert snapshot(database) == before  # hw keeps its run, b is untouched, no config brand_new
    assert ConfigStore(database).get("hw")["run_id"] == trained["run_id"]
    # with --rename the same archive is a new run of b; hw's run stays hw's
    renamed = import_run(database, tmp_path / "b.tar.gz", on_conflict="rename")
    assert renamed["run_id"] != trained["run_id"] and RunStore(database).get(trained["run_id"])["name"] == "hw"


# ---------------------------------------------------------------- finding 5: archive bombs


def _bomb(path: Path, claimed: int, written: int) -> Path:
    """A .tar.gz whose one member's header says ``claimed`` bytes, followed by ``written`` zero bytes."""
    with gzip.open(path, "wb", compresslevel=1) as gz:
        info = tarfile.TarInfo("artifacts/x_model.pkl")
        info.size = claimed
        gz.write(info.tobuf(format=tarfile.PAX_FORMAT))
        block = bytes(1024**2)
        for _ in range(written // len(block)):
            gz.write(block)
    return path


def test_a_gzip_bomb_is_refused_quickly_under_a_memory_ceiling(settings, tmp_path):
    bomb = _bomb(tmp_path / "bomb.tar.gz", claimed=3 * 1024**3, written=768 * 1024**2)
    assert bomb.stat().st_size < 8 * 1024**2  # a small file
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        from models.registry.archive import read_archive
        from models.settings import Settings
        from models.errors import ValidationError
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        ceiling = vm + 512 * 1024**2  # far less than the 3 GiB the member claims
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
        start = time.monotonic()
        try:
            read_archive(sys.argv[1], Settings.from_env())
            out = {"error": None}
        except ValidationError as exc:
            out = {"error": exc.message}
        except MemoryError:
            out = {"error": "MemoryError"}
        out["seconds"] = time.monotonic() - start
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "artifacts/x_model.pkl is 3072.0 MiB uncompressed, more than MAX_ARCHIVE_MEMBER_BYTES" in out["error"]
    assert out["seconds"] < 5


def test_members_over_the_total_bound_are_refused_while_streaming(database, settings, archive, tmp_path):
    small = settings.with_(max_archive_bytes=4096, max_archive_member_bytes=2048)
    members = {f"artifacts/part{i}_oof.npz": bytes(2000) for i in range(3)}
    path = write_archive(tmp_path / "parts.tar.gz", members)
    with pytest.raises(ValidationError, match=r"add up to more than MAX_ARCHIVE_BYTES \(4096 bytes\).*part2"):
        read_archive(path, small)
    with pytest.raises(
        ValidationError, match=r"part0_oof.npz is 2000 bytes uncompressed, more than MAX_ARCHIVE_MEMBER"
    ):
        read_archive(path, settings.with_(max_archive_member_bytes=1000))
    # the service's settings bound an import the same way; nothing is written
    db = Database.connect(settings.with_(mongo_db=f"test_{uuid.uuid4().hex[:12]}", max_archive_member_bytes=1000))
    try:
        with pytest.raises(ValidationError, match="MAX_ARCHIVE_MEMBER_BYTES"):
            import_run(db, archive)
        assert db.runs.count_documents({}) == 0 and db.configs.count_documents({}) == 0
    finally:
        db.client.drop_database(db.settings.mongo_db)
        db.close()


def test_a_huge_pax_header_cannot_allocate_past_the_stream_bound(settings, tmp_path):
    path = tmp_path / "pax.tar.gz"
    with gzip.open(path, "wb") as gz:  # a pax header member claiming 64 MiB of "headers"
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, 64 * 1024**2
        gz.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        gz.write(bytes(64 * 1024**2))
    start = time.monotonic()
    with pytest.raises(ValidationError, match=r"decompresses to more than .*refused"):
        read_archive(path, settings.with_(max_archive_bytes=1024**2, max_archive_member_bytes=1024**2))
    assert time.monotonic() - start < 5
