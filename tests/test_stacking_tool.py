"""The stacking tool against the real server: fast path, slow path, reasons, concurrency, async."""

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from agents.tools.stacking_tool import StackingTool
from models.artifacts.cache import ModelCache
from models.ensembles.base_models import BaseModelsError, BaseModelUnavailableError
from models.ensembles.compat import IncompatibleBaseModelsError
from models.errors import NotFoundError
from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, create_then_change_csv, spy_unpickling

BASES = {
    "lr": ("logistic_regression", {}),
    "rf": ("random_forest", {"n_estimators": 10, "max_depth": 4}),
    "nb": ("naive_bayes", {}),
}


class Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def spy_unpickle(monkeypatch):
    """The bytes of every unpickling (only verified bytes can ever reach the unpickler)."""
    return spy_unpickling(monkeypatch)


@pytest.fixture
def tool(database, settings):
    with StackingTool(settings, database, cache=ModelCache()) as t:
        yield t


def create(database, games_csv, names, train=True):
    store = ConfigStore(database)
    for n in names:
        model_type, params = BASES[n]
        store.create(cls_config(n, games_csv, model_type=model_type, hyperparameters=params))
        if train:
            train_config(database, n)


def test_trained_bases_zero_retrains_then_cache_hits(tool, database, games_csv, spy_unpickle):
    create(database, games_csv, ["lr", "rf", "nb"])
    runs = database.runs.count_documents({})
    first = tool.create_ensemble("e1", ["lr", "rf", "nb"])
    assert [b["source"] for b in first["base_models"]] == ["artifacts"] * 3
    assert [b["reason"] for b in first["base_models"]] == [None] * 3
    assert first["retrained"] == [] and database.runs.count_documents({}) == runs
    unpickled = len(spy_unpickle)
    second = tool.create_ensemble("e2", ["lr", "rf", "nb"], meta_model="gradient_boosting")
    assert [b["source"] for b in second["base_models"]] == ["cache"] * 3
    assert len(spy_unpickle) == unpickled  # nothing loaded from disk again
    assert all(b["seconds"] < first["base_models"][i]["seconds"] for i, b in enumerate(second["base_models"]))
    assert second["base_run_ids"] == first["base_run_ids"]


def test_missing_corrupted_and_deleted_artifacts_each_retrain_once(
    tool, database, settings, games_csv, spy_unpickle, tmp_path
):
    create(database, games_csv, ["lr", "rf"])
    create(database, games_csv, ["nb"], train=False)  # never trained
    store = ConfigStore(database)
    lr, rf = store.get("lr"), store.get("rf")
    marker = tmp_path / "pwned"
    model_file = settings.artifact_dir / lr["model_artifact_path"]
    import pickle

    model_file.write_bytes(pickle.dumps(Boom(marker)))  # corrupted (malicious) model file
    corrupted = model_file.read_bytes()
    (settings.artifact_dir / rf["scaler_artifact_path"]).unlink()  # deleted scaler
    record = tool.create_ensemble("e", ["lr", "rf", "nb"])
    by_name = {b["name"]: b for b in record["base_models"]}
    assert {n: (b["source"], b["reason"]) for n, b in by_name.items()} == {
        "lr": ("retrained", "checksum_mismatch"),
        "rf": ("retrained", "file_missing"),
        "nb": ("trained", "field_missing"),  # never trained: a first training, not a retraining
    }
    assert "fails verification" in by_name["lr"]["detail"] and "is missing" in by_name["rf"]["detail"]
    assert corrupted not in spy_unpickle and not marker.exists()
    for name, old in (("lr", lr), ("rf", rf), ("nb", None)):
        assert database.runs.count_documents({"name": name}) == (2 if old else 1)
        doc = store.get(name)
        assert doc["status"] == "trained" and doc["run_id"] in record["base_run_ids"]
        assert old is None or doc["run_id"] != old["run_id"]
        assert (settings.artifact_dir / doc["model_artifact_path"]).exists()
    # the next call takes the fast path
    again = [tool._load_model_from_config(store.get(n)) for n in ("lr", "rf", "nb")]
    # creation only verified the model files (it fits on stored OOF predictions), so the first real
    # load reads the artifacts; either way it is the fast path, with no retraining
    assert [r.source for r in again] == ["artifacts"] * 3 and all(r.reason is None for r in again)
    assert database.runs.count_documents({}) == 5


def test_load_model_from_config_reports_source_reason_and_time(tool, database, settings, games_csv):
    create(database, games_csv, ["lr"])
    cfg = ConfigStore(database).get("lr")
    fresh_tool = StackingTool(settings, database, cache=ModelCache())
    res = fresh_tool._load_model_from_config(cfg)
    assert (res.source, res.reason) == ("artifacts", None) and res.seconds > 0
    frame = pd.read_csv(games_csv).head(20)
    assert res.model.predict_proba(frame).shape == (20, 2)
    assert fresh_tool._load_model_from_config("lr").source == "cache"
    other = StackingTool(settings, database, cache=ModelCache())
    (settings.artifact_dir / cfg["model_artifact_path"]).write_bytes(b"garbage")
    res = other._load_model_from_config("lr")
    assert (res.source, res.reason) == ("retrained", "checksum_mismatch")


def test_neither_path_works_names_config_artifacts_and_data(tool, database, settings, games_csv, tmp_path):
    csv = tmp_path / "g.csv"
    csv.write_bytes(games_csv.read_bytes())
    ConfigStore(database).create(cls_config("lr", csv))
    train_config(database, "lr")
    cfg = ConfigStore(database).get("lr")
    (settings.artifact_dir / cfg["scaler_artifact_path"]).unlink()
    csv.unlink()
    with pytest.raises(BaseModelUnavailableError) as info:
        tool._load_model_from_config(cfg)
    msg = info.value.message
    assert msg.startswith("config 'lr' cannot be loaded or retrained")
    assert f"Artifacts: artifact file {cfg['scaler_artifact_path']} is missing" in msg
    assert "Data: training CSV" in msg and "g.csv" in msg and "not found" in msg
    assert info.value.details["config"] == "lr"


def test_load_base_models_reports_all_failures(tool, database, games_csv, tmp_path):
    create(database, games_csv, ["lr"])
    store = ConfigStore(database)
    create_then_change_csv(store, cls_config("x", tmp_path / "none.csv"))
    create_then_change_csv(store, cls_config("y", tmp_path / "nothing.csv"))
    with pytest.raises(BaseModelsError) as info:
        tool.load_base_models(["lr", "x", "y"])
    assert [f["name"] for f in info.value.failures] == ["x", "y"]
    assert "none.csv" in info.value.message and "nothing.csv" in info.value.message
    results = tool.load_base_models(["lr"])
    assert results[0].name == "lr" and results[0].source in ("artifacts", "cache")


def test_incompatible_refused_and_nothing_written(tool, database, settings, games_csv):
    create(database, games_csv, ["lr"])
    ConfigStore(database).create(
        cls_config("other", games_csv, target="home_back_to_back", features=["home_elo", "away_elo"])
    )
    train_config(database, "other")
    before = sorted(os.listdir(settings.artifact_dir))
    with pytest.raises(
        IncompatibleBaseModelsError, match="target differs: lr uses 'home_win'; other uses 'home_back_to_back'"
    ):
        tool.create_ensemble("bad", ["lr", "other"])
    assert sorted(os.listdir(settings.artifact_dir)) == before and database.ensembles.count_documents({}) == 0


def test_predict_from_dataframe_and_csv(tool, database, games_csv):
    create(database, games_csv, ["lr", "nb"])
    tool.create_ensemble("e", ["lr", "nb"], meta_model="random_forest", meta_params={"n_estimators": 10})
    frame = pd.read_csv(games_csv).head(40)
    proba = tool.predict("e", frame, proba=True)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(tool.predict("e", games_csv)[:40], tool.load_ensemble("e").predict(frame))
    assert set(np.unique(tool.predict("e", frame))) <= {0, 1}


def test_async_variants_under_asyncio_run(tool, database, games_csv):
    create(database, games_csv, ["lr", "rf"])
    create(database, games_csv, ["nb"], train=False)

    async def main():
        ticks = 0

        async def heartbeat():  # proves the loop keeps running while models load and train
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        loaded = await tool.aload_base_models(["lr", "rf"])
        record = await tool.acreate_ensemble("ae", ["lr", "rf", "nb"], meta_model="logistic_regression")
        beat.cancel()
        return loaded, record, ticks

    loaded, record, ticks = asyncio.run(main())
    assert [r.source for r in loaded] == ["artifacts", "artifacts"]
    assert [(b["source"], b["reason"]) for b in record["base_models"]] == [
        ("cache", None),
        ("cache", None),
        ("trained", "field_missing"),  # nb was never trained
    ]
    assert ticks > 5
    assert database.ensembles.find_one({"name": "ae"})["base_run_ids"] == record["base_run_ids"]
    frame = pd.read_csv(games_csv).head(10)
    assert tool.load_ensemble("ae").predict_proba(frame).shape == (10, 2)
    ConfigStore(database).create(cls_config("other", games_csv, target="home_back_to_back"))
    with pytest.raises(IncompatibleBaseModelsError, match="target differs"):
        asyncio.run(tool.acreate_ensemble("bad", ["lr", "other"]))
    assert database.runs.count_documents({"name": "other"}) == 0  # refused before any training
    assert database.ensembles.count_documents({"name": "bad"}) == 0


def test_two_async_creations_train_the_missing_model_once(tool, database, games_csv):
    create(database, games_csv, ["lr"])
    create(database, games_csv, ["rf"], train=False)

    async def main():
        return await asyncio.gather(
            tool.acreate_ensemble("a1", ["lr", "rf"]), tool.acreate_ensemble("a2", ["lr", "rf"])
        )

    a1, a2 = asyncio.run(main())
    assert database.runs.count_documents({"name": "rf"}) == 1
    assert sorted(r["base_models"][1]["source"] for r in (a1, a2))[1] == "trained"  # rf's first training
    assert [r["base_models"][1]["source"] for r in (a1, a2)].count("trained") == 1


CHILD = """
import json, sys
from pathlib import Path
from models.settings import Settings
from agents.tools.stacking_tool import StackingTool
args = json.loads(sys.argv[1])
settings = Settings.from_env({}).with_(mongo_uri=args["uri"], mongo_db=args["db"], artifact_dir=args["art"],
                                       var_dir=Path(args["var"]), artifact_signing_key=args["key"],
                                       data_roots=tuple((name, Path(folder)) for name, folder in args["roots"]))
with StackingTool(settings) as tool:
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()   # start together
    rec = tool.create_ensemble(args["name"], ["lr", "rf"])
    print(json.dumps([b["source"] for b in rec["base_models"]]))
"""


def test_two_processes_train_the_missing_model_once(database, settings, games_csv):
    create(database, games_csv, ["lr"])
    ConfigStore(database).create(
        cls_config(
            "rf", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 40, "max_depth": 6}
        )
    )
    procs = []
    for name in ("p1", "p2"):
        arg = json.dumps(
            {
                "uri": settings.effective_mongo_uri,
                "db": settings.mongo_db,
                "art": str(settings.artifact_dir),
                "name": name,
                "var": str(settings.var_dir),
                "key": settings.artifact_signing_key,
                "roots": [
                    [name, str(folder)] for name, folder in settings.named_data_roots.items() if name != "data"
                ],
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, arg],
                cwd=PROJECT_ROOT,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert database.runs.count_documents({"name": "rf"}) == 1
    assert sorted(o[1] for o in outs) == ["artifacts", "trained"]  # rf had never been trained
    assert database.ensembles.count_documents({}) == 2 and database.locks.count_documents({}) == 0


def _without_times(lines: list[str]) -> list[str]:
    import re

    return sorted(re.sub(r"\d+\.\d+s", "<t>s", line) for line in lines)


def test_sync_and_async_give_the_same_results_and_messages(database, settings, games_csv):
    """One core: the async entry points run the sync one in threads, so results, progress lines and
    errors are the same (timings aside)."""
    create(database, games_csv, ["lr", "rf", "nb"])
    answers = {}
    for way in ("sync", "async"):
        lines: list[str] = []
        with StackingTool(database=database, cache=ModelCache(max_items=0)) as tool:
            if way == "sync":
                loaded = tool.load_base_models(
                    ["lr", "rf", "nb"], progress=lambda f, m, lines=lines: lines.append(m)
                )
                with pytest.raises(NotFoundError) as failed:
                    tool.load_base_models(["lr", "nope_missing"])
            else:
                loaded = asyncio.run(
                    tool.aload_base_models(["lr", "rf", "nb"], progress=lambda f, m, lines=lines: lines.append(m))
                )
                with pytest.raises(NotFoundError) as failed:
                    asyncio.run(tool.aload_base_models(["lr", "nope_missing"]))
        answers[way] = (
            [(r.name, r.run_id, r.source, r.reason) for r in loaded],
            _without_times(lines),
            failed.value.message,
        )
    assert answers["sync"] == answers["async"]
    assert any(line.startswith("rf: artifacts in") for line in answers["sync"][1])
