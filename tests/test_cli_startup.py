"""The CLI starts fast (``--help`` imports nothing heavy) and ends quietly when its reader goes away."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.store.configs import ConfigStore
from tests.fault_driver_util import driver_env
from tests.helpers import cls_config

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sklearn", "scipy", "pandas", "numpy", "pymongo", "rich", "joblib", "flask")


def imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run ``python -X importtime -m cli ARGS`` and return the top-level packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names, proc


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ensemble", "--help"],
        ["models", "--help"],
        ["train", "--help"],
        ["artifacts", "--help"],
        ["configs", "--help"],
        ["db", "--help"],
    ],
)
def test_help_imports_no_heavy_library(args):
    names, proc = imported_modules(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage: python -m cli" in proc.stdout
    assert "click" in names and "cli" in names  # the parsing really happened in this process
    assert not names & set(HEAVY), f"`python -m cli {' '.join(args)}` imported {sorted(names & set(HEAVY))}"


def test_choices_still_come_from_the_core():
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "ensemble", "create", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "logistic_regression" in proc.stdout and "ridge_cv" in proc.stdout and "predict_proba" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "ensemble", "create", "e", "--base", "a", "--meta-model", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    # checked in the command (parsing imports nothing of the core), still a usage error naming the option
    assert "'nope' is not one of" in proc.stderr and "--meta-model" in proc.stderr


def run_with_closed_stdout(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Start the CLI with its stdout a pipe whose reader is already gone (as ``| head`` after its lines)."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # every write to the pipe now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            stdout=write_fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        os.close(write_fd)
    return proc


def test_help_into_a_closed_pipe_is_quiet():
    proc = run_with_closed_stdout(["--help"])
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert proc.returncode == 1  # output was lost; quietly, like click and rich


@pytest.mark.parametrize("args", [["configs", "list"], ["configs", "list", "--json"]])
def test_command_output_into_a_closed_pipe_is_quiet(settings, database, games_csv, args):
    store = ConfigStore(database)
    for i in range(30):
        store.create(cls_config(f"c{i:02d}", games_csv))
    proc = run_with_closed_stdout(args, env=driver_env(settings))
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "error" not in proc.stderr.lower(), proc.stderr
    assert proc.returncode == 1  # output was lost; quietly, like click and rich


def test_head_reads_the_first_lines_quietly(settings, database, games_csv):
    store = ConfigStore(database)
    for i in range(400):  # more than a pipe's buffer of JSON, so the CLI is still writing when head leaves
        store.create(cls_config(f"c{i:03d}", games_csv))
    env = driver_env(settings)
    proc = subprocess.run(
        f"'{sys.executable}' -m cli configs list --json | head -n 3",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "["
    assert proc.stderr == "", proc.stderr


def test_suggest_methods_offered_by_the_cli_are_the_core_s():
    from cli.commands.ensemble_suggest import METHODS
    from models.ensembles.selection import METHODS as CORE_METHODS

    assert METHODS == CORE_METHODS


def test_ensemble_create_loads_no_scipy_stats_and_exits_at_once(settings, database, games_csv):
    """``ensemble create`` stacks stored predictions: it imports scikit-learn's linear models, never
    scipy.stats (deferred until used) nor the estimators and training code it does not run; its answer and
    exit code are those of the command."""
    store = ConfigStore(database)
    for name, model_type in (("s_a", "logistic_regression"), ("s_b", "naive_bayes")):
        store.create(cls_config(name, games_csv, model_type))
        run = subprocess.run(
            [sys.executable, "-m", "cli", "train", name],
            cwd=ROOT,
            env=driver_env(settings),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "cli",
            "ensemble",
            "create",
            "s_e",
            "--base",
            "s_a",
            "--base",
            "s_b",
        ],
        cwd=ROOT,
        env=driver_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # importtime's lines and the command's progress lines share stderr: find every entry wherever it is
    loaded = set(re.findall(r"import time:\s*\d+ \|\s*\d+ \|\s*([\w.]+)", proc.stderr))
    assert "models.ensembles.stacking" in loaded and "sklearn.linear_model._logistic" in loaded  # stacked here
    assert not {m for m in loaded if m.startswith("scipy.stats.")}, sorted(m for m in loaded if "scipy.stats" in m)
    assert not loaded & {"sklearn.calibration", "sklearn.isotonic", "sklearn.inspection", "sklearn.neural_network"}
    assert database.ensembles.find_one({"name": "s_e"}) is not None
    again = subprocess.run(
        [sys.executable, "-m", "cli", "ensemble", "create", "s_e", "--base", "s_a", "--base", "s_b"],
        cwd=ROOT,
        env=driver_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert again.returncode != 0 and "s_e" in again.stderr and "already exists" in again.stderr


def test_scipy_stats_deferred_is_the_real_module_once_used():
    code = (
        "from cli.main import _defer_scipy_stats; _defer_scipy_stats()\n"
        "import sys, sklearn.metrics, scipy.stats\n"
        "assert 'scipy.stats._stats_py' not in sys.modules\n"
        "from scipy.stats import rankdata, chi2\n"
        "assert list(rankdata([3, 1, 3])) == [2.5, 1.0, 2.5] and chi2(2).mean() == 2.0\n"
        "assert type(sys.modules['scipy.stats']).__name__ == 'module'\n"
        "assert sklearn.metrics.roc_auc_score([0, 1, 1], [0.1, 0.8, 0.3]) == 1.0\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
