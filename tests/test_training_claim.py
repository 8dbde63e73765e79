"""One claim per config: a Train click, a ``cli train`` in another process and the stacking tool's slow
path asking for the same config at once train it once; the others say that they joined. Every retrain
runs bounded, whatever started it. Real server, real CLI process, real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from agents.tools.stacking_tool import StackingTool
from models import jobs
from models.ensembles.base_models import BaseModelsError
from models.store.configs import ConfigStore
from models.training.service import train_bounded, train_claim
from models.training.train import train_config
from tests.fault_driver_util import ROOT, driver_env
from tests.helpers import cls_config, poll

# Slow enough (several seconds on a loaded 2-core machine) that the CLI process starts while it runs.
SHARED = {"model_type": "random_forest", "hyperparameters": {"n_estimators": 600, "min_samples_leaf": 1}}
QUICK = {"model_type": "random_forest", "hyperparameters": {"n_estimators": 100}}


def test_a_train_click_a_cli_train_and_a_stacking_retrain_train_once(api, database, settings, games_csv):
    ConfigStore(database).create(cls_config("shared", games_csv, **SHARED))
    clicked = api("POST", "/api/configs/shared/train")
    assert clicked.status_code == 202 and clicked.get_json()["created"] is True
    web_job = clicked.get_json()["job_id"]
    poll(lambda: jobs.get_job(database, web_job)["status"] == "running", timeout=60)

    cli = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "shared", "--json"],
        cwd=ROOT,
        env=driver_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stacked: dict = {}

    def slow_path() -> None:
        with StackingTool(database=database) as tool:
            stacked["result"] = tool.load_base_models(["shared"])[0]

    thread = threading.Thread(target=slow_path)
    thread.start()
    out, err = cli.communicate(timeout=300)
    thread.join(timeout=300)

    assert cli.returncode == 0, err
    [row] = json.loads(out)
    assert row["status"] == "trained" and row["joined"] is True and row["job_id"] == web_job
    assert "joined the training already running" in err and web_job in err
    res = stacked["result"]
    assert res.joined is True and res.job_id == web_job
    assert res.source == "artifacts" and res.reason == "field_missing"  # it loaded what the web job wrote
    # exactly one training ran: one job, one run, the config points at it
    assert database.jobs.count_documents({"kind": "train"}) == 1
    assert jobs.get_job(database, web_job)["status"] == "succeeded"
    assert database.runs.count_documents({"name": "shared"}) == 1
    config = ConfigStore(database).get("shared")
    assert config["runs_count"] == 1 and config["run_id"] == row["run_id"] == res.run_id


def test_the_claim_is_per_config_id_so_a_rename_cannot_start_a_second_training(database, games_csv):
    store = ConfigStore(database)
    config = store.create(cls_config("before", games_csv, **SHARED))
    runner = jobs.InProcessRunner(2)
    try:
        from models.training.service import submit_training

        first, created = submit_training(database, "before", runner=runner)
        assert created and first["active_key"] == train_claim(config["_id"])
        store.update("before", {"name": "after"})
        second, created_again = submit_training(database, "after", runner=runner)
        assert created_again is False and second["_id"] == first["_id"]
        jobs.cancel(database, first["_id"])
    finally:
        runner.shutdown(wait=True, cancel_pending=True)


def test_a_stacking_retrain_runs_bounded_and_keeps_the_previous_run(database, settings, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("slow", games_csv, "random_forest", hyperparameters={"n_estimators": 3}))
    previous = train_config(database, "slow")
    store.update("slow", {"hyperparameters": {"n_estimators": 2000, "min_samples_leaf": 1}})
    artifact = settings.artifact_dir / previous["artifacts"]["model"]["path"]
    artifact.write_bytes(b"broken")  # the fast path fails: the slow path retrains
    before = sorted(p.name for p in settings.artifact_dir.iterdir())
    database.settings = settings.with_(train_timeout_seconds=3)
    started = time.monotonic()
    with StackingTool(database=database) as tool, pytest.raises(BaseModelsError) as caught:
        tool.load_base_models(["slow"])
    assert time.monotonic() - started < 3 + 10
    [failure] = caught.value.failures
    assert failure["code"] == "timeout" and "TRAIN_TIMEOUT_SECONDS=3" in failure["message"]
    # the supervisor marks the config failed right after the job document (a few database writes later,
    # not once the child is gone), so a caller that saw the job end sees the config follow at once
    config = poll(lambda: (c := store.get("slow"))["status"] != "training" and c, timeout=2)
    assert config["status"] == "failed" and config["error"]["code"] == "timeout"
    assert config["run_id"] == previous["run_id"]  # the previous run is kept
    assert database.runs.count_documents({"name": "slow"}) == 1
    assert sorted(p.name for p in settings.artifact_dir.iterdir()) == before  # nothing written
    job = database.jobs.find_one({"kind": "train", "requested_by": "stacking"})
    assert job["status"] == "failed" and job["error"]["code"] == "timeout"  # on the Jobs page too


def test_train_bounded_says_it_joined(database, games_csv):
    ConfigStore(database).create(cls_config("j", games_csv, **QUICK))
    runner = jobs.InProcessRunner(1)
    lines: list[str] = []
    try:
        from models.training.service import submit_training

        job, _ = submit_training(database, "j", runner=runner, requested_by="someone")
        summary = train_bounded(database, "j", progress=lambda f, m: lines.append(m))
    finally:
        runner.shutdown(wait=True)
    assert summary["joined"] is True and summary["job_id"] == str(job["_id"])
    assert any("joined the training already running" in m and "someone" in m for m in lines)
    assert database.runs.count_documents({"name": "j"}) == 1
