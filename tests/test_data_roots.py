"""``training_csv`` only inside ``DATA_ROOTS`` (checked at save and at train, saying nothing about the file),
and ``MAX_TRAINING_CSV_BYTES`` checked before reading."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from models.errors import DataError, ValidationError
from models.settings import Settings
from models.store.configs import ConfigStore
from models.store.data_roots import outside_data_roots
from models.store.datarefs import to_stored
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import AUTH, PASSWORD, TOKEN, cls_config
from web import create_app


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def db(database, settings, root):
    """An installation whose only data root is ``root`` (not the whole test temp folder)."""
    return Database(database.client, settings.with_(data_roots=(root,)))


def outside_paths(tmp_path, root, games_csv):
    """Pairs of (existing, missing) paths that all lie outside ``root``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(games_csv, outside / "games.csv")
    (root / "link.csv").symlink_to(outside / "games.csv")
    (root / "dangling.csv").symlink_to(outside / "gone.csv")
    return [
        (str(outside / "games.csv"), str(outside / "missing.csv")),
        (str(root / ".." / "outside" / "games.csv"), str(root / ".." / "outside" / "missing.csv")),
        (str(root / "link.csv"), str(root / "dangling.csv")),
        ("/etc/passwd", "/etc/no-such-file-here"),
        ("/proc/self/environ", "/proc/self/no-such-file"),
    ]


def test_outside_the_data_roots_is_refused_at_save_with_the_same_words(db, tmp_path, root, games_csv):
    store = ConfigStore(db)
    for existing, missing in outside_paths(tmp_path, root, games_csv):
        texts = []
        for path in (existing, missing):
            with pytest.raises(ValidationError) as err:
                store.create(cls_config("x", path))
            assert err.value.field == "training_csv"
            texts.append(err.value.message)
        assert texts[0] == texts[1] == outside_data_roots(db.settings) and "DATA_ROOTS" in texts[0]
        assert existing not in texts[0] and "passwd" not in texts[0] and "/outside" not in texts[0]
    assert db.configs.count_documents({}) == 0
    shutil.copy(games_csv, root / "games.csv")
    store.create(cls_config("ok", root / "games.csv"))
    with pytest.raises(ValidationError, match="DATA_ROOTS"):
        store.update("ok", {"training_csv": "/etc/passwd"})
    stored = to_stored(str(root / "games.csv"), db.settings)  # portable form (@<root>/games.csv)
    assert store.get("ok")["training_csv"] == stored and store.get("ok")["rev"] == 1
    store.update("ok", {"description": "unrelated edits still work"})


def test_outside_the_data_roots_is_refused_at_train_and_nothing_is_written(db, tmp_path, root, games_csv):
    """Saved while the link pointed inside; repointed outside before training: refused at train, no run."""
    inside = root / "games.csv"
    shutil.copy(games_csv, inside)
    link = root / "current.csv"
    link.symlink_to(inside)
    ConfigStore(db).create(cls_config("c", link))
    outside = tmp_path / "secret.csv"
    shutil.copy(games_csv, outside)
    texts = []
    for target in (outside, tmp_path / "no-such.csv"):
        link.unlink()
        link.symlink_to(target)
        with pytest.raises(DataError) as err:
            train_config(db, "c")
        assert err.value.field == "training_csv"
        texts.append(err.value.message)
        config = ConfigStore(db).get("c")
        assert config["status"] == "failed" and config["error"]["message"] == outside_data_roots(db.settings)
        assert "run_id" not in config and db.runs.count_documents({}) == 0
    assert texts == [outside_data_roots(db.settings)] * 2
    assert not db.settings.artifact_dir.exists() or list(db.settings.artifact_dir.iterdir()) == []


def test_api_refuses_outside_paths_with_the_same_error(db, tmp_path, root, games_csv):
    app = create_app(db.settings.with_(admin_password=PASSWORD, api_token=TOKEN), db)
    client = app.test_client()
    for existing, missing in outside_paths(tmp_path, root, games_csv):
        bodies = [client.post("/api/configs", json=cls_config("x", p), headers=AUTH) for p in (existing, missing)]
        assert [b.status_code for b in bodies] == [422, 422]
        assert bodies[0].get_json() == bodies[1].get_json()
        assert bodies[0].get_json()["error"]["field"] == "training_csv"
    assert db.configs.count_documents({}) == 0


def test_relative_paths_resolve_from_the_project_root_as_before(db):
    default = Settings.from_env({})
    assert default.effective_data_roots == (default.data_dir,)
    relative = Database(db.client, db.settings.with_(data_roots=None, data_dir=default.data_dir))
    with pytest.raises(ValidationError, match="DATA_ROOTS"):
        ConfigStore(relative).create(cls_config("rel", "data/../models/settings.py"))
    # the demo's path (the file itself need not exist for this rule: check_data=False)
    created = ConfigStore(relative).create(cls_config("rel", "data/nba_games.csv"), check_data=False)
    assert created["training_csv"] == "@data/nba_games.csv"  # inside the data root named data: portable


def test_data_roots_setting_parses_paths():
    s = Settings.from_env({"DATA_ROOTS": f"a=/srv/a{os.pathsep}/srv/b", "MAX_TRAINING_CSV_BYTES": "10"})
    assert s.named_data_roots == {"data": s.data_dir, "a": Path("/srv/a"), "b": Path("/srv/b")}
    assert [str(p) for p in s.effective_data_roots] == [str(s.data_dir), "/srv/a", "/srv/b"]
    assert s.max_training_csv_bytes == 10


def test_csv_over_the_size_limit_is_refused_before_reading(db, root, games_csv):
    shutil.copy(games_csv, root / "games.csv")
    small = Database(db.client, db.settings.with_(max_training_csv_bytes=1000))
    ConfigStore(small).create(cls_config("big", root / "games.csv"))
    with pytest.raises(DataError) as err:
        train_config(small, "big")
    assert "MAX_TRAINING_CSV_BYTES (1000)" in err.value.message and err.value.field == "training_csv"
    assert small.runs.count_documents({}) == 0 and ConfigStore(small).get("big")["status"] == "failed"


def test_the_refusal_names_the_configured_roots(db, tmp_path, root):
    """Issue 25: the user is told where a training CSV may be, each root as configured (name=path)."""
    other = tmp_path / "more"
    other.mkdir()
    settings = db.settings.with_(data_roots=(root, ("games", other)))
    with pytest.raises(ValidationError) as err:
        ConfigStore(Database(db.client, settings)).create(cls_config("x", tmp_path / "elsewhere.csv"))
    message = err.value.message
    assert err.value.field == "training_csv"
    # ``root`` is a folder named data: it is the "data" root here (in place of DATA_DIR)
    assert f"data={root}, games={other}" in message and "DATA_ROOTS" in message
    assert "elsewhere" not in message  # nothing about the refused file itself
