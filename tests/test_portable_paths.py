"""Documents name data sets and artifacts so that every machine resolves them (two settings sets standing for
two machines with different folders, one database): ``@<root>/<path>`` for training CSVs, bare file names for
local artifacts; documents written before keep loading, and ``artifacts relocate`` rewrites them."""

from __future__ import annotations

import shutil

import pytest

from models.artifacts.loading import load_model
from models.artifacts.maintenance import referenced_paths, scan_configs
from models.artifacts.relocate import relocate_documents
from models.errors import DataError
from models.settings import PROJECT_ROOT, Settings
from models.store.configs import ConfigStore
from models.store.datarefs import resolve, to_stored
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config


@pytest.fixture
def machines(database, games_csv, tmp_path):
    """Machine A (the test's settings) and machine B: same database, their own data, artifact and var folders."""
    a = database.settings
    b = a.with_(
        artifact_dir=tmp_path / "b" / "artifacts", data_dir=tmp_path / "b" / "data", var_dir=tmp_path / "b" / "var"
    )
    for s in (a, b):
        s.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(games_csv, s.data_dir / "games.csv")
    return database, Database(database.client, b)


def test_training_csv_is_stored_relative_to_a_named_root_and_resolves_on_each_machine(machines):
    db_a, db_b = machines
    a, b = db_a.settings, db_b.settings
    doc = ConfigStore(db_a).create(cls_config("portable", a.data_dir / "games.csv"))
    assert doc["training_csv"] == "@data/games.csv"
    assert resolve(doc["training_csv"], a) == (a.data_dir / "games.csv").resolve()
    assert resolve(doc["training_csv"], b) == (b.data_dir / "games.csv").resolve()
    run = train_config(db_b, "portable")  # machine B trains it from its own copy
    assert (
        run["data"]["training_csv"] == "@data/games.csv" and run["definition"]["training_csv"] == "@data/games.csv"
    )
    stored = ConfigStore(db_b).get("portable")
    assert stored["model_artifact_path"] == f"{run['run_id']}_model.pkl"  # no folder of either machine
    assert (b.artifact_dir / stored["model_artifact_path"]).is_file()
    assert not a.artifact_dir.exists()
    # a named root of its own: DATA_ROOTS=name=path
    shared = b.data_dir.parent / "shared"
    shared.mkdir()
    c = Settings.from_env({"DATA_ROOTS": f"shared={shared}"}).with_(data_dir=b.data_dir)
    assert to_stored(str(shared / "x.csv"), c) == "@shared/x.csv"
    assert to_stored("/somewhere/else.csv", c) == "/somewhere/else.csv"  # outside every root: left as given


@pytest.mark.parametrize(
    "ref,words",
    [
        ("@nope/games.csv", "names the data root 'nope', which this machine does not have (DATA_ROOTS"),
        ("@data/../secret.csv", "no '..'"),
        ("@data/", "must look like @<root>/<path"),
    ],
)
def test_bad_root_references_name_what_is_wrong_and_nothing_is_trained(machines, ref, words):
    db_a, _ = machines
    ConfigStore(db_a).create(cls_config("bad", db_a.settings.data_dir / "games.csv"))
    db_a.configs.update_one({"name": "bad"}, {"$set": {"training_csv": ref}})
    with pytest.raises(DataError) as info:
        train_config(db_a, "bad")
    assert words in info.value.message and info.value.field == "training_csv"
    assert db_a.runs.count_documents({}) == 0 and not db_a.settings.artifact_dir.exists()


def test_symlink_out_of_a_root_is_refused(machines, tmp_path):
    db_a, _ = machines
    outside = tmp_path / "outside.csv"
    shutil.copy(db_a.settings.data_dir / "games.csv", outside)
    (db_a.settings.data_dir / "link.csv").symlink_to(outside)
    with pytest.raises(DataError, match="resolves outside its data root"):
        resolve("@data/link.csv", db_a.settings)


def test_documents_written_before_keep_working_and_relocate_rewrites_them(machines):
    db_a, _ = machines
    a = db_a.settings
    legacy_csv = (a.data_dir / "games.csv").as_posix()  # absolute, as documents held it before
    ConfigStore(db_a).create(cls_config("old", a.data_dir / "games.csv"))
    db_a.configs.update_one({"name": "old"}, {"$set": {"training_csv": legacy_csv}})
    run = train_config(db_a, "old")
    # make the documents look like the seed system wrote them: the writer's folder in every local path
    legacy = {
        f: f"cli/models/{ConfigStore(db_a).get('old')[f]}"
        for f in ("model_artifact_path", "scaler_artifact_path", "features_path")
    }
    arts = {f"artifacts.{k}.path": f"cli/models/{v['path']}" for k, v in run["artifacts"].items()}
    db_a.configs.update_one({"name": "old"}, {"$set": {**legacy, **arts}})
    db_a.runs.update_one({"run_id": run["run_id"]}, {"$set": arts})
    old = ConfigStore(db_a).get("old")
    assert old["model_artifact_path"].startswith("cli/models/")
    assert load_model(a, old, use_cache=False).source == "artifacts"  # loads by file name, here
    assert [e["state"] for e in scan_configs(db_a)] == ["ok"]
    assert f"{run['run_id']}_model.pkl" in referenced_paths(db_a)  # gc sees the file as referenced

    dry = relocate_documents(db_a, dry_run=True)
    assert dry["documents"] == {"runs": 1, "ensembles": 0, "configs": 1}
    assert ConfigStore(db_a).get("old")["model_artifact_path"].startswith("cli/models/")  # dry: untouched
    report = relocate_documents(db_a)
    assert report["documents"] == {"runs": 1, "ensembles": 0, "configs": 1} and not report["errors"]
    new = ConfigStore(db_a).get("old")
    assert new["training_csv"] == "@data/games.csv" and new["model_artifact_path"] == f"{run['run_id']}_model.pkl"
    assert all("/" not in v["path"] for v in new["artifacts"].values())
    stored_run = db_a.runs.find_one({"run_id": run["run_id"]})
    assert {
        stored_run["definition"]["training_csv"],
        stored_run["config"]["training_csv"],
        stored_run["data"]["training_csv"],
    } == {"@data/games.csv"}
    assert [e["state"] for e in scan_configs(db_a)] == ["ok"]  # not stale: the run's definition moved too
    assert load_model(a, new, use_cache=False).source == "artifacts"
    assert relocate_documents(db_a)["documents"] == {"runs": 0, "ensembles": 0, "configs": 0}  # idempotent


def test_a_path_relative_to_the_checkout_is_still_read_from_the_project_root(settings):
    assert resolve("data/x.csv", settings) == PROJECT_ROOT / "data" / "x.csv"


def test_bad_data_roots_setting_names_the_variable():
    with pytest.raises(ValueError, match="DATA_ROOTS: entry 'Bad Name=/x'"):
        Settings.from_env({"DATA_ROOTS": "Bad Name=/x"})


def test_cli_relocate_reports_and_rewrites(machines):
    import json

    from click.testing import CliRunner

    from cli.context import AppContext
    from cli.main import cli

    db_a, _ = machines
    ConfigStore(db_a).create(cls_config("c", db_a.settings.data_dir / "games.csv"))
    db_a.configs.update_one({"name": "c"}, {"$set": {"training_csv": str(db_a.settings.data_dir / "games.csv")}})

    def run(*args):
        return CliRunner().invoke(
            cli, ["artifacts", "relocate", *args], obj=AppContext(db_a.settings), catch_exceptions=False
        )

    dry = run("--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["documents"]["configs"] == 1
    assert ConfigStore(db_a).get("c")["training_csv"].startswith("/")
    done = run()
    assert done.exit_code == 0 and "config c: training_csv -> @data/games.csv" in done.stdout
    assert ConfigStore(db_a).get("c")["training_csv"] == "@data/games.csv"
