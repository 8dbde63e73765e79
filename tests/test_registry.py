"""The model registry (models/registry*.py) against the real server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import threading
from datetime import timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from pymongo.errors import DuplicateKeyError

from models import registry
from models.errors import ConflictError, NotFoundError, ValidationError
from models.store.configs import ConfigStore
from models.store.runs import RunStore
from models.store.versioning import change_kind
from models.timeutil import now
from models.training.train import new_run_id, train_config
from tests.helpers import FEATS, cls_config, reg_config

# ---------------------------------------------------------------- helpers


def fake_run(
    name: str,
    metrics: dict | None = None,
    *,
    task: str = "classification",
    model_type: str = "logistic_regression",
    tags=(),
    created_at=None,
    hyper=None,
    durations=None,
    features=None,
) -> dict:
    """A small, well-formed run document (no files) for tests that need many runs quickly."""
    definition = {
        "task": task,
        "model_type": model_type,
        "target": "y",
        "features": features or ["a", "b"],
        "hyperparameters": hyper or {},
        "scaler": "standard",
    }
    at = created_at or now()
    return {
        "run_id": new_run_id(),
        "config_id": None,
        "name": name,
        "task": task,
        "model_type": model_type,
        "definition": definition,
        "tags": list(tags),
        "artifacts": {},
        "metrics": metrics or {},
        "cv": {},
        "data": {"fingerprint": "f" * 64},
        "durations": durations or {"total_s": 1.0},
        "status": "trained",
        "created_at": at,
        "status_history": [{"status": "trained", "at": at, "by": None}],
    }


def add(database, *runs) -> list[dict]:
    store = RunStore(database)
    return [store.insert_versioned(r) for r in runs]


def artifact_files(settings) -> list[str]:
    d = settings.artifact_dir
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.fixture
def trained(database, games_csv):
    """One classification config trained once."""
    ConfigStore(database).create(cls_config("hw", games_csv))
    return train_config(database, "hw", requested_by="tester")


# ---------------------------------------------------------------- versions


def test_version_rules_patch_minor_major_and_manual(database, settings, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("v", games_csv))
    assert train_config(database, "v")["version"] == "1.0.0"
    assert train_config(database, "v")["version"] == "1.0.1"  # same definition: patch
    store.update("v", {"hyperparameters": {"C": 0.5}})
    run = train_config(database, "v")
    assert (run["version"], run["version_change"]) == ("1.1.0", "minor")
    store.update("v", {"scaler": "minmax"})
    assert train_config(database, "v")["version"] == "1.2.0"
    store.update("v", {"features": FEATS[:5]})
    assert train_config(database, "v")["version"] == "1.3.0"
    store.update("v", {"model_type": "naive_bayes", "hyperparameters": {}})
    run = train_config(database, "v")
    assert (run["version"], run["version_change"]) == ("2.0.0", "major")
    files_before = artifact_files(settings)
    with pytest.raises(ConflictError, match="v version 2.0.0 already exists") as err:
        train_config(database, "v", version="2.0.0")
    assert err.value.field == "version"
    assert artifact_files(settings) == files_before  # the refused run left no file behind
    assert database.runs.count_documents({"name": "v"}) == 6
    assert train_config(database, "v", version="7.0.0")["version_change"] == "manual"
    assert registry.get_latest(database, "v")["version"] == "7.0.0"
    with pytest.raises(ValidationError, match="MAJOR.MINOR.PATCH"):
        train_config(database, "v", version="7.0")


def test_change_kind_for_task_and_target():
    base = {
        "task": "classification",
        "target": "y",
        "model_type": "knn",
        "features": ["a"],
        "hyperparameters": {},
        "scaler": "standard",
    }
    assert change_kind(base, dict(base)) == "patch"
    assert change_kind(base, {**base, "target": "z"}) == "major"
    assert change_kind(base, {**base, "task": "regression"}) == "major"
    assert change_kind(base, {**base, "hyperparameters": {"n_neighbors": 3}}) == "minor"
    assert change_kind(base, {**base, "features": ["b"]}) == "minor"
    assert change_kind(base, {**base, "scaler": "robust"}) == "minor"


@pytest.mark.parametrize("name", ["race", "my_run_id_model"])  # a name holding "run_id" is still a version race
def test_concurrent_saves_never_duplicate_a_version(database, name):
    store, results, errors = RunStore(database), [], []
    barrier = threading.Barrier(8)

    def save() -> None:
        try:
            barrier.wait()
            results.append(store.insert_versioned(fake_run(name))["version"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [f"1.0.{i}" for i in range(8)]
    stored = [d["version"] for d in database.runs.find({"name": name})]
    assert len(stored) == len(set(stored)) == 8


def test_manual_version_refused_if_it_exists_even_for_a_new_run(database):
    add(database, fake_run("m"))
    with pytest.raises(ConflictError, match="m version 1.0.0 already exists"):
        RunStore(database).insert_versioned(fake_run("m"), version="1.0.0")
    assert database.runs.count_documents({"name": "m"}) == 1


# ---------------------------------------------------------------- load


def test_load_by_id_version_latest_and_production(database, settings, games_csv, trained):
    second = train_config(database, "hw")
    registry.promote(database, trained["run_id"], by="tester")
    frame = pd.read_csv(games_csv).head(50)
    by_id = registry.load(database, trained["run_id"])
    assert by_id.run["run_id"] == trained["run_id"] and by_id.model.run_id == trained["run_id"]
    assert registry.load(database, "hw@1.0.0").run["run_id"] == trained["run_id"]
    assert registry.load(database, "hw@latest").run["run_id"] == second["run_id"]
    assert registry.load(database, "hw").run["run_id"] == second["run_id"]
    prod = registry.load(database, "hw@production", use_cache=False)
    assert prod.run["run_id"] == trained["run_id"] and prod.source == "artifacts"
    assert np.array_equal(prod.model.predict_proba(frame), by_id.model.predict_proba(frame))
    with pytest.raises(NotFoundError, match="hw has no version 9.9.9"):
        registry.resolve(database, "hw@9.9.9")
    with pytest.raises(NotFoundError, match="no run with id or name 'nope'"):
        registry.resolve(database, "nope")
    with pytest.raises(ValidationError, match="after '@'") as err:
        registry.resolve(database, "hw@newest")
    assert err.value.field == "ref"
    with pytest.raises(NotFoundError, match="'other' has no run in production"):
        add(database, fake_run("other"))
        registry.resolve(database, "other@production")


# ---------------------------------------------------------------- search / best


@pytest.fixture
def populated(database):
    t0 = now() - timedelta(days=10)
    runs = add(
        database,
        fake_run("a", {"f1": 0.9, "accuracy": 0.91}, tags=["nba", "v1"], created_at=t0),
        fake_run(
            "a", {"f1": 0.7, "accuracy": 0.75}, tags=["nba"], created_at=t0 + timedelta(days=1), hyper={"C": 2}
        ),
        fake_run("b", {"f1": 0.85}, model_type="random_forest", tags=["v1"], created_at=t0 + timedelta(days=2)),
        fake_run("c", {"accuracy": 0.6}, created_at=t0 + timedelta(days=3)),  # no f1 at all
        fake_run(
            "r", {"rmse": 3.0, "r2": 0.4}, task="regression", model_type="ridge", created_at=t0 + timedelta(days=4)
        ),
        fake_run(
            "r",
            {"rmse": 4.0, "r2": 0.2},
            task="regression",
            model_type="ridge",
            created_at=t0 + timedelta(days=5),
            hyper={"alpha": 2},
        ),
    )
    return t0, runs


def test_search_filters_thresholds_sort_and_pagination(database, populated):
    t0, runs = populated
    ids = lambda result: [r["run_id"] for r in result["items"]]  # noqa: E731
    everything = registry.search(database)
    assert everything["total"] == 6 and ids(everything) == [r["run_id"] for r in reversed(runs)]  # newest first
    assert "feature_importance" not in everything["items"][0] and "config" not in everything["items"][0]
    assert registry.search(database, name="a")["total"] == 2
    assert ids(registry.search(database, model_type="random_forest")) == [runs[2]["run_id"]]
    assert registry.search(database, task="regression")["total"] == 2
    assert registry.search(database, tags=["nba", "v1"])["total"] == 1
    assert registry.search(database, tags="v1")["total"] == 2
    window = registry.search(database, since=t0 + timedelta(hours=12), until=(t0 + timedelta(days=3)).isoformat())
    assert ids(window) == [runs[3]["run_id"], runs[2]["run_id"], runs[1]["run_id"]]
    assert set(ids(registry.search(database, min_metrics={"f1": 0.8}))) == {runs[0]["run_id"], runs[2]["run_id"]}
    assert ids(registry.search(database, max_metrics={"rmse": 3.5})) == [runs[4]["run_id"]]
    assert ids(registry.search(database, min_metrics={"f1": "0.8"}, max_metrics={"f1": 0.88})) == [
        runs[2]["run_id"]
    ]
    # sorted by a metric: best first by default, runs lacking it last
    by_f1 = registry.search(database, sort="f1")
    assert ids(by_f1)[:3] == [runs[0]["run_id"], runs[2]["run_id"], runs[1]["run_id"]]
    assert by_f1["descending"] is True and len(by_f1["items"]) == 6
    assert ids(registry.search(database, sort="rmse", task="regression")) == [runs[4]["run_id"], runs[5]["run_id"]]
    assert ids(registry.search(database, sort="f1", descending=False))[:3] == [
        runs[1]["run_id"],
        runs[2]["run_id"],
        runs[0]["run_id"],
    ]
    pages = [registry.search(database, sort="f1", per_page=4, page=p) for p in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [4, 2, 0] and pages[0]["pages"] == 2 and pages[1]["total"] == 6
    assert ids(pages[0]) + ids(pages[1]) == ids(by_f1)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"status": "live"}, "status"),
        ({"page": 0}, "page"),
        ({"per_page": 10_000}, "per_page"),
        ({"since": "yesterday"}, "since"),
        ({"min_metrics": {"f1": "high"}}, "min_metrics.f1"),
        ({"sort": "$where"}, "sort"),
        ({"max_metrics": {"a.b": 1}}, "max_metrics"),
    ],
)
def test_search_rejects_bad_parameters_naming_them(database, kwargs, field):
    with pytest.raises(ValidationError) as err:
        registry.search(database, **kwargs)
    assert err.value.field == field


def test_empty_registry_returns_nothing_not_an_error(database):
    result = registry.search(database, sort="f1", min_metrics={"f1": 0.5}, name="x")
    assert result["items"] == [] and result["total"] == 0 and result["pages"] == 1
    assert registry.best(database, "f1") is None
    assert registry.best(database, "rmse", name="x", model_type="ridge", task="regression") is None


def test_best_is_direction_aware_and_ignores_runs_without_the_metric(database, populated):
    _, runs = populated
    assert registry.best(database, "f1")["run_id"] == runs[0]["run_id"]
    assert registry.best(database, "rmse")["run_id"] == runs[4]["run_id"]  # lower is better
    assert registry.best(database, "accuracy", name="c")["run_id"] == runs[3]["run_id"]
    assert registry.best(database, "f1", model_type="random_forest")["run_id"] == runs[2]["run_id"]
    assert registry.best(database, "f1", name="c") is None  # c has no f1
    assert registry.best(database, "f1", task="regression") is None


def test_compare_marks_the_best_value_of_each_row(database):
    a, b, c = add(
        database,
        fake_run("x", {"f1": 0.8, "log_loss": 0.5}, hyper={"C": 1}, durations={"total_s": 3.0}),
        fake_run(
            "x", {"f1": 0.9, "log_loss": 0.6}, hyper={"C": 2}, durations={"total_s": 1.0}, features=["a", "c"]
        ),
        fake_run("y", {"f1": 0.9}, hyper={"C": 2}, durations={"total_s": 2.0}),
    )
    table = registry.compare(database, [a["run_id"], b["run_id"], c["run_id"]])
    assert [r["run_id"] for r in table["runs"]] == [a["run_id"], b["run_id"], c["run_id"]]
    sections = {s["title"]: {r["key"]: r for r in s["rows"]} for s in table["sections"]}
    assert sections["metrics"]["f1"]["best"] == [1, 2]  # a tie marks both
    assert (
        sections["metrics"]["log_loss"]["best"] == [0] and sections["metrics"]["log_loss"]["direction"] == "lower"
    )
    assert sections["metrics"]["log_loss"]["values"] == [0.5, 0.6, None]
    assert sections["hyperparameters"]["C"]["values"] == [1, 2, 2] and sections["hyperparameters"]["C"]["differs"]
    assert sections["features"]["c"]["values"] == [False, True, False]
    assert sections["features"]["a"]["differs"] is False
    assert sections["data"]["fingerprint"]["values"] == ["f" * 64] * 3
    assert sections["durations"]["total_s"]["best"] == [1]
    with pytest.raises(ValidationError, match="at least two"):
        registry.compare(database, [a["run_id"]])
    with pytest.raises(NotFoundError, match="20990101_000000_deadbeef"):
        registry.compare(database, [a["run_id"], "20990101_000000_deadbeef"])


# ---------------------------------------------------------------- lifecycle


def test_promote_demotes_previous_production_and_records_history(database):
    a, b, c = add(database, fake_run("p"), fake_run("p"), fake_run("q"))
    first = registry.promote(database, a["run_id"], by="ann")
    assert (first["from"], first["to"], first["demoted"]) == ("trained", "production", None)
    registry.promote(database, c["run_id"], by="ann")  # another name: no effect on p
    second = registry.promote(database, b["run_id"], by="bob", reason="better f1")
    assert second["demoted"] == {
        "run_id": a["run_id"],
        "version": a["version"],
        "from": "production",
        "to": "staging",
    }
    assert [d["run_id"] for d in database.runs.find({"status": "production"}).sort("name", 1)] == [
        b["run_id"],
        c["run_id"],
    ]
    assert registry.get_production(database, "p")["run_id"] == b["run_id"]
    third = registry.promote(database, a["run_id"], by="cy", demote_to="archived")
    assert third["demoted"]["to"] == "archived" and registry.get_run(database, b["run_id"])["status"] == "archived"
    hist = registry.history(database, a["run_id"])
    assert [(h["from"], h["to"], h["by"]) for h in hist] == [
        (None, "trained", None),
        ("trained", "production", "ann"),
        ("production", "staging", "bob"),
        ("staging", "production", "cy"),
    ]
    assert hist[2]["reason"] == f"replaced in production by {b['run_id']}" and hist[1]["at"] is not None
    assert registry.history(database, b["run_id"])[1]["reason"] == "better f1"


def test_invalid_transitions_are_refused_with_the_allowed_choices(database):
    (run,) = add(database, fake_run("t"))
    registry.set_status(database, run["run_id"], "archived", by="x")
    with pytest.raises(ValidationError) as err:
        registry.promote(database, run["run_id"])
    assert str(err.value) == (
        "cannot move a run from archived to production; from archived it can go to: staging, trained"
    )
    with pytest.raises(ValidationError, match="already in archived"):
        registry.set_status(database, run["run_id"], "archived")
    with pytest.raises(ValidationError, match="'live' is not one of"):
        registry.set_status(database, run["run_id"], "live")
    with pytest.raises(ValidationError) as err:
        registry.promote(database, run["run_id"], demote_to="trained")
    assert err.value.field == "demote_to"
    assert registry.get_run(database, run["run_id"])["status"] == "archived"
    assert len(registry.history(database, run["run_id"])) == 2


def test_one_production_per_name_holds_under_concurrent_promotions(database):
    runs = add(database, *[fake_run("race") for _ in range(4)])
    barrier, errors = threading.Barrier(4), []

    def go(run_id: str) -> None:
        try:
            barrier.wait()
            registry.promote(database, run_id, by="thread")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(r["run_id"],)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert database.runs.count_documents({"name": "race", "status": "production"}) == 1
    assert database.runs.count_documents({"name": "race", "status": "staging"}) == 3
    with pytest.raises(DuplicateKeyError):  # the server itself refuses a second production run
        database.runs.update_one({"name": "race", "status": "staging"}, {"$set": {"status": "production"}})


# ---------------------------------------------------------------- delete


def test_delete_refused_while_an_ensemble_uses_the_run_and_force_deletes_it(
    database, settings, games_csv, trained
):
    second = train_config(database, "hw")
    store_files = artifact_files(settings)
    ens_file = settings.artifact_dir / "ens1_meta.pkl"
    ens_file.write_bytes(b"meta")
    database.ensembles.insert_many(
        [
            {
                "name": "ens1",
                "run_id": "20990101_000000_00000001",
                "base_run_ids": [second["run_id"], "x"],
                "artifacts": {"meta": {"path": "ens1_meta.pkl", "sha256": "0" * 64, "size": 4}},
            },
            {"name": "ens0", "run_id": "20990101_000000_00000002", "base_run_ids": [second["run_id"]]},
            {"name": "unrelated", "run_id": "20990101_000000_00000003", "base_run_ids": [trained["run_id"]]},
        ]
    )
    with pytest.raises(ConflictError) as err:
        registry.delete_run(database, second["run_id"])
    assert "used by 2 ensemble(s): ens0, ens1" in err.value.message
    assert database.runs.count_documents({}) == 2 and database.ensembles.count_documents({}) == 3
    assert artifact_files(settings) == sorted([*store_files, "ens1_meta.pkl"])
    result = registry.delete_run(database, second["run_id"], force=True)
    assert sorted(result["deleted_ensembles"]) == ["ens0", "ens1"]
    assert [e["name"] for e in database.ensembles.find()] == ["unrelated"]
    assert not ens_file.exists()
    assert database.runs.find_one({"run_id": second["run_id"]}) is None
    assert not any(f.startswith(second["run_id"]) for f in artifact_files(settings))
    assert len(result["deleted_files"]) == 5 and result["missing_files"] == []
    # the config pointed at the deleted run: now at the previous one
    assert result["config"] == {
        "name": "hw",
        "action": "repointed",
        "run_id": trained["run_id"],
        "version": "1.0.0",
    }
    config = ConfigStore(database).get("hw")
    assert config["run_id"] == trained["run_id"] and config["version"] == "1.0.0"
    assert config["model_artifact_path"] == trained["artifacts"]["model"]["path"]
    assert registry.load(database, config).model.run_id == trained["run_id"]  # still loadable


def test_deleting_the_only_run_clears_the_config(database, settings, trained):
    result = registry.delete_run(database, trained["run_id"])
    assert result["config"]["action"] == "cleared"
    config = ConfigStore(database).get("hw")
    assert config["status"] == "new" and "run_id" not in config and "model_artifact_path" not in config
    assert artifact_files(settings) == []
    with pytest.raises(NotFoundError):
        registry.delete_run(database, trained["run_id"])


# ---------------------------------------------------------------- export / import


def test_export_import_round_trip_into_a_fresh_installation(
    database, settings, other, games_csv, trained, tmp_path
):
    archive = tmp_path / "out" / "hw.tar.gz"
    exported = registry.export_run(database, trained["run_id"], archive)
    assert archive.is_file() and exported["size"] == archive.stat().st_size
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert names[0] == "manifest.json" and {"run.json", "config.json"} <= set(names)
    assert len([n for n in names if n.startswith("artifacts/")]) == 5
    assert set(manifest["members"]) == set(names) - {"manifest.json", "manifest.sig"}  # the signature covers it
    assert not list(archive.parent.glob(".tmp-*"))

    imported = registry.import_run(other, archive, by="tester")
    assert imported["run_id"] == trained["run_id"] and imported["version"] == "1.0.0"
    assert imported["config"]["action"] == "created" and not imported["renamed"]
    run = registry.get_run(other, trained["run_id"])
    assert run["created_at"] == trained["created_at"].replace(microsecond=run["created_at"].microsecond)
    assert run["status"] == "trained" and run["imported"]["original_run_id"] == trained["run_id"]
    frame = pd.read_csv(games_csv).head(100)
    original = registry.load(database, trained["run_id"], use_cache=False).model
    copy = registry.load(other, "hw@1.0.0", use_cache=False).model
    assert np.array_equal(copy.predict_proba(frame), original.predict_proba(frame))
    config = ConfigStore(other).get("hw")
    assert config["run_id"] == trained["run_id"] and run["config_id"] == config["_id"]
    assert registry.load(other, config, use_cache=False).model.run_id == trained["run_id"]

    # the same archive again: refused, unless renamed (new id, next free version)
    with pytest.raises(ConflictError, match="already exists"):
        registry.import_run(other, archive)
    assert other.runs.count_documents({}) == 1
    renamed = registry.import_run(other, archive, on_conflict="rename")
    assert renamed["renamed"] and renamed["run_id"] != trained["run_id"] and renamed["version"] == "1.0.1"
    assert renamed["config"]["action"] == "linked"
    again = registry.import_run(other, archive, on_conflict="overwrite")
    assert again["overwritten"] and again["run_id"] == trained["run_id"]
    assert other.runs.count_documents({}) == 2


def _rewrite(archive: Path, target: Path, change) -> Path:
    """Copy an archive, passing each member through ``change(info, data) -> [(info, data)]``."""
    with tarfile.open(archive) as src, tarfile.open(target, "w:gz") as dst:
        for info in src.getmembers():
            for new_info, data in change(info, src.extractfile(info).read()):
                dst.addfile(new_info, io.BytesIO(data) if data is not None else None)
    return target


def _assert_nothing_written(other) -> None:
    assert other.runs.count_documents({}) == 0 and other.configs.count_documents({}) == 0
    assert artifact_files(other.settings) == []


def test_tampered_archive_is_refused_with_nothing_written(database, other, trained, tmp_path):
    archive = registry.export_run(database, trained["run_id"], tmp_path / "a.tar.gz")["path"]

    def flip(info, data):
        if info.name.endswith("_model.pkl"):
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return [(info, data)]

    bad = _rewrite(Path(archive), tmp_path / "bad.tar.gz", flip)
    with pytest.raises(ValidationError, match=r"_model.pkl fails verification.*nothing was imported"):
        registry.import_run(other, bad)
    _assert_nothing_written(other)


def _escape(kind: str):
    def change(info, data):
        out = [(info, data)]
        if info.name == "run.json":
            evil = tarfile.TarInfo({"dotdot": "../x", "absolute": "/tmp/x", "symlink": "artifacts/link"}[kind])
            if kind == "symlink":
                evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
                out.append((evil, None))
            else:
                evil.size = 3
                out.append((evil, b"bad"))
        return out

    return change


@pytest.mark.parametrize(
    "kind,message", [("dotdot", "contains '..'"), ("absolute", "absolute path"), ("symlink", "is a link")]
)
def test_path_traversal_archive_is_refused_with_nothing_written(database, other, trained, tmp_path, kind, message):
    archive = registry.export_run(database, trained["run_id"], tmp_path / "a.tar.gz")["path"]
    bad = _rewrite(Path(archive), tmp_path / f"{kind}.tar.gz", _escape(kind))
    with pytest.raises(ValidationError, match=message) as err:
        registry.import_run(other, bad)
    assert err.value.field == "archive"
    _assert_nothing_written(other)
    assert not (tmp_path / "x").exists()


def test_import_rejects_files_that_are_not_archives(other, tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValidationError, match="not a readable .tar.gz archive"):
        registry.import_run(other, tmp_path / "x.tar.gz")
    with pytest.raises(ValidationError, match="does not exist"):
        registry.import_run(other, tmp_path / "missing.tar.gz")
    with pytest.raises(ValidationError) as err:
        registry.import_run(other, tmp_path / "x.tar.gz", on_conflict="merge")
    assert err.value.field == "on_conflict"
    _assert_nothing_written(other)


# ---------------------------------------------------------------- deployment export


def test_deployment_export_predicts_with_plain_sklearn_and_joblib(database, games_csv, tmp_path):
    ConfigStore(database).create(reg_config("pd", games_csv, scaler="robust"))
    run = train_config(database, "pd")
    meta = registry.deploy_export(database, run["run_id"], tmp_path / "deploy")
    pipeline_path = Path(meta["pipeline_path"])
    assert pipeline_path.name == "pd-1.0.0.joblib" and meta["features"] == FEATS and meta["classes"] is None
    on_disk = json.loads(Path(meta["metadata_path"]).read_text())
    assert on_disk["sha256"] == meta["sha256"] and on_disk["run_id"] == run["run_id"]
    assert on_disk["task"] == "regression" and on_disk["sklearn_version"] and "rmse" in on_disk["metrics"]
    frame = pd.read_csv(games_csv).head(100)
    expected = registry.load(database, run["run_id"]).model.predict(frame)
    assert np.allclose(joblib.load(pipeline_path).predict(frame), expected)
    # a separate interpreter that cannot import this project: plain scikit-learn + joblib only
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    script = (
        "import sys, joblib, pandas as pd; p = joblib.load(sys.argv[1]); "
        "print(','.join(repr(float(v)) for v in p.predict(pd.read_csv(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", script, str(pipeline_path), str(csv)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert np.allclose([float(v) for v in out.stdout.strip().split(",")], expected)


def test_deployment_export_of_a_classifier_keeps_classes(database, trained, games_csv, tmp_path):
    meta = registry.deploy_export(database, "hw@latest", tmp_path)
    assert meta["classes"] == [0, 1] and meta["task"] == "classification"
    pipe = joblib.load(meta["pipeline_path"])
    frame = pd.read_csv(games_csv).head(30)
    assert np.array_equal(pipe.predict_proba(frame), registry.load(database, "hw").model.predict_proba(frame))
