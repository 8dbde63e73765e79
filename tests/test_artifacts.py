import os
import pickle

import pytest

from models.artifacts.base import pickle_writer
from models.artifacts.loading import load_model
from models.artifacts.local import LocalArtifactStore
from models.artifacts.verified import load_verified
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, spy_unpickling


class Boom:
    """Unpickling this runs code: it must never happen for an unverified file."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/should-never-exist-ensemble-cache",))


@pytest.fixture
def trained(database, settings, games_csv):
    ConfigStore(database).create(cls_config("a", games_csv))
    train_config(database, "a")
    return ConfigStore(database).get("a")


@pytest.fixture
def no_unpickle(monkeypatch):
    """Records the bytes of every unpickling the loader does."""
    return spy_unpickling(monkeypatch)


def _damage(path, how):
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0x01]) + data[101:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    elif how == "malicious":
        path.write_bytes(pickle.dumps(Boom()))


@pytest.mark.parametrize(
    "how,reason,words",
    [
        ("flip", "checksum_mismatch", "fails verification"),
        ("truncate", "checksum_mismatch", "fails verification"),
        ("empty", "empty_file", "is empty"),
        ("delete", "file_missing", "is missing"),
        ("malicious", "checksum_mismatch", "fails verification"),
    ],
)
def test_damaged_model_file_is_refused_and_never_unpickled(settings, trained, no_unpickle, how, reason, words):
    path = settings.artifact_dir / trained["model_artifact_path"]
    _damage(path, how)
    damaged = path.read_bytes() if path.exists() else None
    with pytest.raises(ArtifactError) as info:
        load_model(settings, trained, use_cache=False)
    assert info.value.reason == reason
    assert words in info.value.message and trained["model_artifact_path"] in info.value.message
    assert damaged not in no_unpickle
    assert not os.path.exists("/tmp/should-never-exist-ensemble-cache")


def test_damaged_file_never_reaches_joblib(settings, trained, no_unpickle):
    _damage(settings.artifact_dir / trained["scaler_artifact_path"], "malicious")
    with pytest.raises(ArtifactError, match="scaler.pkl fails verification"):
        load_model(settings, trained, use_cache=False)
    assert no_unpickle == []  # the features file is JSON; the scaler failed before any unpickling


@pytest.mark.parametrize(
    "bad_path,words",
    [
        ("/etc/passwd", "is absolute"),
        ("../outside_model.pkl", "contains '..'"),
        ("sub/.hidden", "does not name an artifact file"),
    ],
)
def test_paths_outside_the_artifact_folder_are_refused(settings, trained, no_unpickle, bad_path, words):
    doc = {**trained, "model_artifact_path": bad_path}
    with pytest.raises(ArtifactError) as info:
        load_model(settings, doc, use_cache=False)
    assert info.value.reason == "path_refused" and words in info.value.message
    assert bad_path in info.value.message
    assert no_unpickle == []


def test_symlink_out_of_the_folder_is_refused(settings, trained, tmp_path, no_unpickle):
    outside = tmp_path / "evil.pkl"
    outside.write_bytes(pickle.dumps(Boom()))
    link = settings.artifact_dir / "link_model.pkl"
    link.symlink_to(outside)
    with pytest.raises(ArtifactError, match="resolves outside the artifact folder"):
        load_model(settings, {**trained, "model_artifact_path": "link_model.pkl"}, use_cache=False)
    assert no_unpickle == []


def test_missing_fields_and_checksums(settings, trained):
    with pytest.raises(ArtifactError, match="has no scaler_artifact_path") as info:
        load_model(settings, {k: v for k, v in trained.items() if k != "scaler_artifact_path"}, use_cache=False)
    assert info.value.reason == "field_missing"
    with pytest.raises(ArtifactError, match="no checksum is recorded") as info:
        load_model(settings, {k: v for k, v in trained.items() if k != "checksums"}, use_cache=False)
    assert info.value.reason == "checksum_missing"


def test_sklearn_version_difference_is_a_warning(settings, trained):
    doc = {**trained, "versions": {**trained["versions"], "sklearn": "0.24.2"}}
    result = load_model(settings, doc, use_cache=False)
    assert any("0.24.2" in w for w in result.model.warnings)


def test_paths_are_bare_names_and_legacy_folder_prefixes_load_by_name(tmp_path):
    """Stored paths name the file only; a path written before (``cli/models/<name>``, or another machine's
    folder) is read by its file name in this machine's folder, never outside it."""
    store = LocalArtifactStore(tmp_path / "machine-b" / "models")
    info = store.write("r_model.pkl", pickle_writer({"x": 1}))
    assert info.path == "r_model.pkl" and store.list_paths() == ["r_model.pkl"]
    for legacy in ("cli/models/r_model.pkl", "srv/other-checkout/cli/models/r_model.pkl"):
        assert store.resolve(legacy) == store.resolve("r_model.pkl")
        assert load_verified(store, legacy, info.sha256)[0] == {"x": 1}


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path):
    store = LocalArtifactStore(tmp_path)

    def bad(fh):
        fh.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        store.write("x_model.pkl", bad)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        folder = tmp_path / "file-not-folder"
        folder.write_text("")
        store = LocalArtifactStore(folder)
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        store = LocalArtifactStore(folder)
    with pytest.raises(ArtifactError, match="could not write artifact x_model.pkl") as info:
        store.write("x_model.pkl", lambda fh: fh.write(b"1"))
    assert info.value.reason == "write_error"


def test_large_files_are_verified_block_by_block(database, settings, games_csv):
    """With per-chunk checksums a tampered late block is caught; no unverified byte is ever served."""
    store = LocalArtifactStore(settings.artifact_dir, chunk_size=4096)
    ConfigStore(database).create(
        cls_config("big", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 5})
    )
    train_config(database, "big", store=store)
    doc = ConfigStore(database).get("big")
    ref = doc["artifacts"]["model"]
    assert len(ref["chunk_blake3"]) > 3 and ref["chunk_size"] == 4096 and ref["format"] == 2
    assert "chunk_sha256" not in ref  # format 2: the blocks are hashed once, with BLAKE3
    good = load_model(settings, doc, store=store, use_cache=False).model
    assert good.run_id == doc["run_id"]
    path = settings.artifact_dir / doc["model_artifact_path"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"fails verification: block \d+") as info:
        load_model(settings, doc, store=store, use_cache=False)
    assert info.value.reason == "checksum_mismatch"


@pytest.mark.parametrize("block_hash", ["blake3", "sha256"])  # artifact formats 2 and 1
def test_verified_reader_never_serves_unverified_bytes(block_hash):
    import hashlib

    from models.artifacts.base import ArtifactInfo
    from models.artifacts.blocks import digests_of
    from models.artifacts.verified import VerifiedReader

    payload = bytes(range(256)) * 64  # 16 KiB, 4 blocks of 4 KiB
    chunks = digests_of(payload, 4096, block_hash)
    info = ArtifactInfo(
        "x_model.pkl",
        hashlib.sha256(payload).hexdigest(),
        len(payload),
        4096,
        tuple(chunks),
        block_hash=block_hash,
    )
    assert VerifiedReader(payload, info).read() == payload
    tampered = payload[:9000] + b"!" + payload[9001:]
    reader = VerifiedReader(tampered, info)
    assert reader.read(8192) == tampered[:8192]  # blocks 0-1 are genuine
    with pytest.raises(ArtifactError, match="block 2"):
        reader.read(100)  # block 2 holds the change: nothing from it comes out
    with pytest.raises(ArtifactError, match="block 0"):
        VerifiedReader(b"?" + payload[1:], info)  # a bad first block fails before any reading
    with pytest.raises(ArtifactError, match="size is"):
        VerifiedReader(payload[:-1], info)


def test_model_files_are_plain_pickles_that_pickle_and_joblib_open(settings, trained, games_csv):
    import joblib
    import pandas as pd

    from tests.helpers import FEATS

    path = settings.artifact_dir / trained["model_artifact_path"]
    assert path.read_bytes()[:2] == b"\x80\x05"  # pickle protocol 5
    with open(path, "rb") as fh:
        plain = pickle.load(fh)
    scaler = joblib.load(settings.artifact_dir / trained["scaler_artifact_path"])
    X = scaler.transform(pd.read_csv(games_csv).head(50)[FEATS].to_numpy(float))
    loaded = load_model(settings, trained, use_cache=False).model
    assert (plain.predict_proba(X) == joblib.load(path).predict_proba(X)).all()
    assert (loaded.model.predict_proba(X) == plain.predict_proba(X)).all()


def _chunked_store(tmp_path, chunk_size=64 * 1024):
    return LocalArtifactStore(tmp_path, chunk_size=chunk_size)


def test_files_written_by_joblib_still_load(tmp_path, settings):
    """Artifacts of older runs were written by joblib.dump (numpy arrays in joblib's layout)."""
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from models.artifacts.verified import fetch_pickle

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 5)), rng.integers(0, 2, 400)
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    store = _chunked_store(tmp_path)
    info = store.write("old_model.pkl", lambda fh: joblib.dump(model, fh))
    assert b"NumpyArrayWrapper" in (tmp_path / "old_model.pkl").read_bytes() and info.chunk_size == 64 * 1024
    loaded, _notes = fetch_pickle(store, info.to_dict()).load()
    assert (loaded.predict_proba(X) == model.predict_proba(X)).all()
    assert load_verified(store, info.path, info.sha256)[0].n_estimators == 30  # the whole-file path too


def test_a_damaged_block_deep_inside_a_large_array_is_never_handed_over(tmp_path, monkeypatch):
    import numpy as np

    from models.artifacts.verified import fetch_pickle

    calls = spy_unpickling(monkeypatch)
    store = _chunked_store(tmp_path)
    big = np.arange(400_000, dtype=np.float64)  # 3.2 MB: one protocol-5 buffer over ~49 blocks
    info = store.write("big_model.pkl", pickle_writer({"w": big}))
    path = tmp_path / "big_model.pkl"
    assert fetch_pickle(store, info.to_dict()).load()[0]["w"].tolist() == big.tolist()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    calls.clear()
    pending = fetch_pickle(store, info.to_dict())  # block 0 is intact: the checks before loading pass
    with pytest.raises(ArtifactError, match=r"fails verification: block \d+") as exc:
        pending.load()
    assert exc.value.reason == "checksum_mismatch"
    assert calls == []  # the spy reads the whole stream first: the damaged block stopped it


@pytest.mark.parametrize("block_hash", ["blake3", "sha256"])
def test_verified_reader_holds_one_block_and_serves_every_byte_once(tmp_path, block_hash):
    import hashlib

    from models.artifacts.base import ArtifactInfo
    from models.artifacts.blocks import digests_of
    from models.artifacts.verified import VerifiedReader

    payload = os.urandom(64 * 4096 + 123)
    chunks = digests_of(payload, 4096, block_hash)
    info = ArtifactInfo(
        "x_model.pkl",
        hashlib.sha256(payload).hexdigest(),
        len(payload),
        4096,
        tuple(chunks),
        block_hash=block_hash,
    )
    reader = VerifiedReader(payload, info)
    out, pieces = bytearray(len(payload)), []
    view = memoryview(out)
    got = reader.readinto(view[:10_000])  # across blocks
    first = bytes(out[:got])
    pieces.append(reader.read(5))  # within a block
    pieces.append(reader.readline())  # up to a newline byte (or the end)
    rest = len(payload) - got - 5 - len(pieces[1])
    assert reader.readinto(view[:rest]) == rest
    assert first == payload[:got] and got == 10_000
    assert pieces[0] == payload[got : got + 5]
    assert payload[got + 5 :].startswith(pieces[1]) and (pieces[1].endswith(b"\n") or len(pieces[1]) == rest)
    assert bytes(out[:rest]) == payload[len(payload) - rest :]
    assert reader.read() == b"" and reader.tell() == len(payload)
    # one private block buffer; whole blocks inside a large request went straight into the caller's buffer
    assert len(reader._buf) == 4096
    assert reader.buffered_bytes < len(payload) // 4, reader.buffered_bytes
    reader.close()


def test_a_bad_block_read_straight_into_the_callers_buffer_is_zeroed_and_refused():
    """Whole blocks are checked in the caller's own buffer: one that fails is wiped before the read raises,
    and the reader refuses every later read."""
    import hashlib

    from models.artifacts.base import ArtifactInfo
    from models.artifacts.blocks import digests_of
    from models.artifacts.verified import VerifiedReader

    payload = os.urandom(8 * 4096)
    info = ArtifactInfo(
        "x_model.pkl", hashlib.sha256(payload).hexdigest(), len(payload), 4096, tuple(digests_of(payload, 4096))
    )
    tampered = payload[: 5 * 4096 + 7] + b"!" + payload[5 * 4096 + 8 :]
    reader = VerifiedReader(tampered, info)
    out = bytearray(b"\xff" * (7 * 4096))
    with pytest.raises(ArtifactError, match="block 5") as err:
        reader.readinto(out)  # block 0 from the private buffer, blocks 1-6 straight into `out`
    assert err.value.reason == "checksum_mismatch"
    assert bytes(out[4096:]) == bytes(6 * 4096)  # nothing of the direct read survives, good blocks included
    with pytest.raises(ArtifactError, match="block 5"):
        reader.read(10)


@pytest.mark.parametrize("bad_blocks", [[3], [25], [25, 38]])  # first half, second half (the helper's), two
def test_verify_ref_hashing_on_two_threads_names_the_first_bad_block(tmp_path, bad_blocks):
    """verify_ref checks 8 MiB at a time with the second half of the blocks hashed on a helper thread: a bad
    block in either half is found and the first one is named."""
    from models.artifacts import verified
    from models.artifacts.verified import PARALLEL_HASH_BYTES, VERIFY_UNIT_BYTES, verify_ref

    chunk = 64 * 1024
    store = LocalArtifactStore(tmp_path, chunk_size=chunk)
    payload = os.urandom(40 * chunk)
    assert PARALLEL_HASH_BYTES <= len(payload) <= VERIFY_UNIT_BYTES  # one unit, split in two
    info = store.write("x_model.pkl", lambda fh: fh.write(payload))
    assert verify_ref(store, info.to_dict()) == len(payload)
    assert verified._hash_pool() is not None or verified._usable_cores() == 1
    damaged = bytearray(payload)
    for block in bad_blocks:
        damaged[block * chunk + 100] ^= 1
    (tmp_path / "x_model.pkl").write_bytes(bytes(damaged))
    with pytest.raises(ArtifactError, match=f"block {bad_blocks[0]} has the wrong blake3 digest") as err:
        verify_ref(store, info.to_dict())
    assert err.value.reason == "checksum_mismatch"


@pytest.mark.parametrize("change", ["flip", "truncate", "append"])
def test_verify_ref_checks_the_signed_blocks_and_the_size(tmp_path, change):
    """What creating an ensemble asks of a base model's files: every block against its digest, and the size."""
    from models.artifacts.verified import verify_ref

    store = LocalArtifactStore(tmp_path, chunk_size=4096)
    payload = os.urandom(5 * 4096 + 17)
    ref = store.write("x_model.pkl", lambda fh: fh.write(payload)).to_dict()
    assert ref["format"] == 2 and verify_ref(store, ref) == len(payload)
    path = tmp_path / "x_model.pkl"
    data = bytearray(payload)
    if change == "flip":
        data[3 * 4096 + 5] ^= 1
    elif change == "truncate":
        del data[-17:]  # the last block is gone: the size says so
    else:
        data += b"more"
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        verify_ref(store, ref)
    assert err.value.reason == "checksum_mismatch"
    assert {"flip": "block 3", "truncate": "size is", "append": "block 5"}[change] in err.value.message
