"""Long commands report progress on a non-terminal stderr (``2>file``, CI, ``--json``) at least every few
seconds; a model type known to be slow for the data size is warned about before training; a result that
predicts one class for > 99% of rows is flagged; scikit-learn's "scale your data" advice is not shown when
the config has a scaler. Real subprocesses of ``python -m cli``, stderr to a file."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import warnings

import pandas as pd

from cli.progress_lines import ProgressLines
from models.store.configs import ConfigStore
from models.training.sklearn_warnings import scaled_data, without_scale_advice
from tests.fault_driver_util import ROOT, driver_env
from tests.helpers import cls_config


def cli_to_file(settings, tmp_path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=fh,
            env=driver_env(settings, PROGRESS_INTERVAL_SECONDS="1", **env),
            text=True,
            timeout=300,
        )
    return proc, err.read_text()


def test_heartbeat_lines_while_a_step_runs():
    out = io.StringIO()
    with ProgressLines(0.3, stream=out) as lines:
        report = lines.reporter("m")
        report(0.1, "fold 1/3")
        time.sleep(1.0)  # a long step: no call, yet lines keep coming
        report(1.0, "done")
    text = out.getvalue().splitlines()
    assert text[0].startswith("[ 10.0%] m: fold 1/3 (0 s)")
    assert sum("m: fold 1/3" in line for line in text) >= 3
    assert text[-1].startswith("[100.0%] m: done")


def test_train_writes_progress_lines_to_a_file_at_least_every_interval(settings, database, games_csv, tmp_path):
    ConfigStore(database).create(
        cls_config("slowish", games_csv, "random_forest", hyperparameters={"n_estimators": 400})
    )
    started = time.monotonic()
    proc, err = cli_to_file(settings, tmp_path, "train", "slowish", "--json")
    took = time.monotonic() - started
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert any("slowish: fold 1/3" in line for line in lines) and "trained in" in lines[-1]
    assert len(lines) >= 6, err
    # a line at least every interval (1 s here) while training ran: count against the run's own duration
    run = database.runs.find_one({"name": "slowish"})
    assert len(lines) >= int(run["durations"]["total_s"]) - 1, (took, err)
    assert all(re.search(r"\(\d+ s\)$", line) for line in lines[:-1])


def test_ensemble_create_and_migrate_write_progress_lines(settings, database, games_csv, tmp_path):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "random_forest", hyperparameters={"n_estimators": 20}))
    proc, err = cli_to_file(settings, tmp_path, "ensemble", "create", "e", "--base", "a", "--base", "b", "--json")
    assert proc.returncode == 0, err
    assert err.startswith("will train first: a (not trained yet)")
    assert "a: retraining: fold 1/3" in err and "[100.0%] done" in err
    proc, err = cli_to_file(settings, tmp_path, "artifacts", "migrate", "--to", "local", "--json")
    assert proc.returncode == 0, err
    assert "migrate: " in err and "[100.0%] migrate: done" in err


def test_slow_model_type_is_warned_about_before_training(settings, database, games_csv, tmp_path):
    big = pd.concat([pd.read_csv(games_csv)] * 8)  # 12,000 rows
    path = tmp_path / "big.csv"
    big.to_csv(path, index=False)
    ConfigStore(database).create(cls_config("svc", path, "svm", hyperparameters={"max_iter": 1}))
    _proc, err = cli_to_file(settings, tmp_path, "train", "svc", "--json")
    first = err.splitlines()[0]
    assert first.startswith("warning: svc: svm on 12,000 rows may take a long time"), err


def test_one_class_result_is_flagged(settings, database, games_csv, tmp_path):
    frame = pd.read_csv(games_csv)
    frame["rare"] = (frame.index % 150 == 0).astype(int)  # 10 positives in 1,500 rows
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    ConfigStore(database).create(cls_config("rare", path, target="rare", cv_folds=2))
    proc, err = cli_to_file(settings, tmp_path, "train", "rare", "--json")
    assert proc.returncode == 0, err
    run = database.runs.find_one({"name": "rare"})
    assert run["warnings"] and run["warnings"][0].startswith(
        "predicts class 0 for 100.0% of the 300 held-out rows"
    )
    assert "warning: rare: predicts class 0 for 100.0%" in err


def test_scale_advice_is_dropped_only_when_the_config_scales():
    text = (
        "lbfgs failed to converge after 1 iteration(s) (status=1): STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT\n\n"
        "Increase the number of iterations to improve the convergence (max_iter=1).\nYou might also want to "
        "scale the data as shown in:\n    https://scikit-learn.org/stable/modules/preprocessing.html"
    )
    assert without_scale_advice(text) == (
        "lbfgs failed to converge after 1 iteration(s) (status=1): STOP: TOTAL NO. "
        "OF ITERATIONS REACHED LIMIT Increase the number of iterations to improve "
        "the convergence (max_iter=1)."
    )
    shown = []
    original = warnings.showwarning
    warnings.showwarning = lambda message, *a, **k: shown.append(str(message))
    try:
        from models.training import sklearn_warnings

        sklearn_warnings._installed = False  # install over the recording hook
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            with scaled_data("standard"):
                warnings.warn(text, UserWarning, stacklevel=1)
            with scaled_data("none"):
                warnings.warn(text, UserWarning, stacklevel=1)
    finally:
        warnings.showwarning = original
        sklearn_warnings._installed = False
    assert shown == [text]


def test_training_with_a_scaler_does_not_advise_scaling(settings, database, games_csv, tmp_path):
    ConfigStore(database).create(cls_config("lr_scaled", games_csv, hyperparameters={"max_iter": 1}))
    ConfigStore(database).create(cls_config("lr_raw", games_csv, scaler="none", hyperparameters={"max_iter": 1}))
    proc, err = cli_to_file(settings, tmp_path, "train", "lr_scaled", "--json")
    assert proc.returncode == 0, err
    assert "failed to converge" in err and "scale the data" not in err
    proc, err = cli_to_file(settings, tmp_path, "train", "lr_raw", "--json")
    assert proc.returncode == 0, err
    assert "scale the data" in err


def test_config_page_flags_a_one_class_result(page, database, games_csv, tmp_path):
    frame = pd.read_csv(games_csv)
    frame["rare"] = (frame.index % 150 == 0).astype(int)
    frame.to_csv(tmp_path / "rare.csv", index=False)
    ConfigStore(database).create(cls_config("rare", tmp_path / "rare.csv", target="rare", cv_folds=2))
    from models.training.train import train_config

    train_config(database, "rare")
    html = page.get("/configs/rare").get_data(as_text=True)
    assert re.search(
        r'class="flash flash-info run-warning">Warning: predicts class 0 for 100.0% of the 300 '
        r"held-out rows",
        html,
    )
