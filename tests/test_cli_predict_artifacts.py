import json
import os
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.artifacts.maintenance import collect_orphans
from models.store.configs import ConfigStore
from tests.helpers import cls_config, create_then_change_csv, reg_config


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


@pytest.fixture
def trained(settings, database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("c1", games_csv))
    store.create(reg_config("r1", games_csv))
    result = run(settings, "train", "c1", "r1", "--json")
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_train_reports_and_json(trained):
    assert set(trained) == {"c1", "r1"}
    assert all(r["status"] == "trained" and r["version"] == "1.0.0" for r in trained.values())


def test_train_unknown_and_failed(settings, database, tmp_path):
    result = run(settings, "train", "ghost")
    assert result.exit_code == 2 and "no config named 'ghost'" in result.stderr
    create_then_change_csv(ConfigStore(database), cls_config("nocsv", tmp_path / "missing.csv"))
    result = run(settings, "train", "nocsv")
    # a training CSV that is gone is bad input (the README: bad input exits 2)
    assert result.exit_code == 2 and "missing.csv" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.output


def test_predict_to_stdout_file_and_json(settings, trained, games_csv, tmp_path):
    rows = pd.read_csv(games_csv).head(12)
    rows.to_csv(tmp_path / "in.csv", index=False)
    result = run(settings, "predict", "c1", "--csv", str(tmp_path / "in.csv"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == ",".join(rows.columns) + ",prediction,proba_0,proba_1" and len(lines) == 13
    result = run(settings, "predict", "r1", "--csv", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv"))
    assert result.exit_code == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 12
    result = run(settings, "predict", "c1", "--csv", str(tmp_path / "in.csv"), "--json")
    data = json.loads(result.stdout)
    assert data["run_id"] == trained["c1"]["run_id"] and len(data["predictions"]) == 12


def test_predict_bad_input(settings, trained, tmp_path):
    result = run(settings, "predict", "c1", "--csv", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2 and "not found" in result.stderr
    pd.DataFrame({"home_rest_days": [1]}).to_csv(tmp_path / "few.csv", index=False)
    result = run(settings, "predict", "c1", "--csv", str(tmp_path / "few.csv"))
    assert result.exit_code == 2 and "missing feature columns: home_win_pct_last10" in result.stderr
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    result = run(settings, "predict", "c1", "--csv", str(tmp_path / "bin.csv"))
    assert result.exit_code == 2 and "bin.csv" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_artifacts_info(settings, trained):
    run_id = trained["c1"]["run_id"]
    result = run(settings, "artifacts", "info", run_id, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data["files"]) == {"model", "scaler", "features", "metrics", "oof"}
    assert all(f["verified"] for f in data["files"].values()) and data["all_verified"]
    assert run(settings, "artifacts", "info", "19990101_000000_deadbeef").exit_code == 2


def test_artifacts_verify_and_repair(settings, database, trained):
    store = ConfigStore(database)
    c1 = store.get("c1")
    (settings.artifact_dir / c1["model_artifact_path"]).write_bytes(b"corrupted")
    os.remove(settings.artifact_dir / store.get("r1")["scaler_artifact_path"])
    result = run(settings, "artifacts", "verify", "--json")
    assert result.exit_code == 1
    states = {r["name"]: r["state"] for r in json.loads(result.stdout)}
    assert states == {"c1": "corrupt", "r1": "missing"} or states == {"c1": "corrupt", "r1": "corrupt"}
    result = run(settings, "artifacts", "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    repaired = {r["name"]: r["repaired"]["version"] for r in json.loads(result.stdout)}
    assert repaired == {"c1": "1.0.1", "r1": "1.0.1"}
    assert {r["state"] for r in json.loads(run(settings, "artifacts", "verify", "--json").stdout)} == {"ok"}


def test_verify_reports_stale_and_untrained(settings, database, trained, games_csv):
    ConfigStore(database).update("c1", {"cv_folds": 4})
    ConfigStore(database).create(cls_config("fresh", games_csv))
    states = {r["name"]: r["state"] for r in json.loads(run(settings, "artifacts", "verify", "--json").stdout)}
    assert states == {"c1": "stale", "r1": "ok", "fresh": "untrained"}


def test_gc_removes_only_unreferenced_files(settings, database, trained):
    stray = settings.artifact_dir / "20200101_000000_00000000_model.pkl"
    stray.write_bytes(b"left by a crash")
    old = time.time() - 7200
    os.utime(stray, (old, old))
    fresh = settings.artifact_dir / "20200101_000001_00000000_model.pkl"
    fresh.write_bytes(b"a training in progress")
    result = run(settings, "artifacts", "gc", "--dry-run", "--json")
    assert json.loads(result.stdout)["orphan_files"] == [stray.name]
    assert stray.exists()
    result = run(settings, "artifacts", "gc")
    assert result.exit_code == 0 and not stray.exists() and fresh.exists()
    assert collect_orphans(database, min_age_s=0)["orphan_files"] == [fresh.name]
    for name in ("c1", "r1"):
        doc = ConfigStore(database).get(name)
        assert (settings.artifact_dir / doc["model_artifact_path"]).exists()


def test_gc_keep_prunes_old_runs_but_never_current_production_or_used(settings, database, trained):
    from models.registry import set_status

    for _ in range(3):
        assert run(settings, "train", "c1").exit_code == 0
    runs = list(database.runs.find({"name": "c1"}).sort("created_at", 1))
    assert [r["version"] for r in runs] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    set_status(database, runs[0]["run_id"], "production")
    database.ensembles.insert_one({"name": "uses_second", "run_id": "x", "base_run_ids": [runs[1]["run_id"]]})
    result = run(settings, "artifacts", "gc", "--keep", "1", "--dry-run", "--json")
    assert [r["version"] for r in json.loads(result.stdout)["runs"]] == ["1.0.2"]
    assert database.runs.count_documents({"name": "c1"}) == 4
    result = run(settings, "artifacts", "gc", "--keep", "1", "--json")
    assert result.exit_code == 0
    left = sorted(r["version"] for r in database.runs.find({"name": "c1"}))
    assert left == ["1.0.0", "1.0.1", "1.0.3"]
    assert not any(runs[2]["run_id"] in p.name for p in settings.artifact_dir.iterdir())
    assert run(settings, "artifacts", "gc", "--keep", "0").exit_code == 2
