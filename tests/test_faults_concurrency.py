"""8 threads and 2 processes over overlapping models: each missing model trained once, counters and
versions exact, no lost update on config documents."""

from __future__ import annotations

import threading
from collections import Counter

from agents.tools.stacking_tool import StackingTool
from models.errors import ConflictError
from models.store.configs import ConfigStore
from models.store.versioning import parse_version
from models.training.train import train_config
from tests.fault_driver_util import Driver
from tests.helpers import cls_config

THREADS = 8


def _run_threads(target, n):
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def wrapped(i):
        try:
            barrier.wait(timeout=60)
            target(i)
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, errors


def _join(threads, timeout=120):
    for t in threads:
        t.join(timeout=timeout)
        assert not t.is_alive(), "a worker thread hangs"


def test_ensembles_over_overlapping_missing_models_train_each_once(database, settings, games_csv, tmp_path):
    store = ConfigStore(database)
    for name, model_type in (("a", "logistic_regression"), ("b", "naive_bayes"), ("c", "logistic_regression")):
        store.create(
            cls_config(
                name, games_csv, model_type=model_type, **({"hyperparameters": {"C": 0.5}} if name == "c" else {})
            )
        )
    pairs = [("a", "b"), ("b", "c"), ("a", "c"), ("a", "b", "c")]
    go = tmp_path / "go"
    procs = [Driver(settings, "ensemble", f"proc{i}", *pairs[i], GO_FILE=str(go)) for i in range(2)]
    for p in procs:
        p.expect("READY", timeout=60)
    records: dict[str, dict] = {}

    def build(i):
        with StackingTool(database=database, lock_timeout=90) as tool:
            records[f"thread{i}"] = tool.create_ensemble(f"thread{i}", list(pairs[i % len(pairs)]))

    threads, errors = _run_threads(build, THREADS)
    go.touch()
    _join(threads)
    for p in procs:
        p.expect("DONE", timeout=120)
        assert p.wait(timeout=30) == 0
    assert errors == []

    assert database.ensembles.count_documents({}) == THREADS + 2
    trained = Counter()
    for doc in database.ensembles.find({}):
        for base in doc["base_models"]:
            # never trained before: a first training says "trained", never "retrained"
            assert base["source"] in ("cache", "artifacts", "trained")
            trained[base["name"]] += base["source"] == "trained"
    assert trained == {"a": 1, "b": 1, "c": 1}  # each missing model trained exactly once
    for name in ("a", "b", "c"):
        doc = store.get(name)
        runs = list(database.runs.find({"name": name}))
        assert len(runs) == 1 and doc["runs_count"] == 1 and doc["version"] == runs[0]["version"] == "1.0.0"
        assert doc["rev"] == 2 and doc["status"] == "trained" and doc["run_id"] == runs[0]["run_id"]
        # every ensemble used that one run
        for ens in database.ensembles.find({"base_names": name}):
            assert ens["base_run_ids"][ens["base_names"].index(name)] == runs[0]["run_id"]
    assert database.locks.count_documents({}) == 0


def test_concurrent_trainings_of_one_config_count_and_version_exactly(database, settings, games_csv, tmp_path):
    store = ConfigStore(database)
    store.create(cls_config("hot", games_csv))
    go = tmp_path / "go"
    procs = [Driver(settings, "train", "hot", GO_FILE=str(go)) for _ in range(2)]
    for p in procs:
        p.expect("READY", timeout=60)
    threads, errors = _run_threads(lambda i: train_config(database, "hot"), THREADS)
    go.touch()
    _join(threads)
    for p in procs:
        p.expect("DONE", timeout=120)
        assert p.wait(timeout=30) == 0
    assert errors == []
    total = THREADS + 2
    runs = list(database.runs.find({"name": "hot"}))
    versions = sorted(parse_version(r["version"]) for r in runs)
    assert versions == [(1, 0, i) for i in range(total)]  # no gap, no duplicate
    doc = store.get("hot")
    assert doc["runs_count"] == total and doc["rev"] == 1 + total and doc["status"] == "trained"
    current = next(r for r in runs if r["run_id"] == doc["run_id"])
    assert (
        doc["version"] == current["version"]
        and doc["checksums"]["model"] == current["artifacts"]["model"]["sha256"]
    )


def test_concurrent_config_updates_lose_nothing(database, games_csv):
    """8 threads edit the same config (each its own fields) while it trains: every change is there."""
    store = ConfigStore(database)
    store.create(cls_config("busy", games_csv))
    edits = 6
    conflicts = Counter()

    def edit(i):
        if i == THREADS - 1:
            train_config(database, "busy")
            return
        for k in range(edits):
            while True:
                try:
                    store.update("busy", {f"note_{i}": k, "tags": ["busy"]})
                    break
                except ConflictError as exc:  # an honest "try again", never a silent overwrite
                    assert "kept changing" in exc.message
                    conflicts[i] += 1

    threads, errors = _run_threads(edit, THREADS)
    _join(threads)
    assert errors == []
    doc = store.get("busy")
    for i in range(THREADS - 1):
        assert doc[f"note_{i}"] == edits - 1, i
    # rev: 1 at create, +1 per applied edit (the first "tags" change and every note change), +1 for training
    applied = (THREADS - 1) * edits
    assert doc["rev"] == 1 + applied + 1 and doc["runs_count"] == 1 and doc["status"] == "trained"
