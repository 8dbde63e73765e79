"""A script outside the checkout uses the stacking tool, from any working directory, both ways the README
gives: the checkout on PYTHONPATH with the project's interpreter, or the project pip-installed (editable)
into another environment."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, driver_env

SCRIPT = """
import json
from agents.tools.stacking_tool import StackingTool

record = StackingTool().create_ensemble("from_elsewhere", ["a", "b"])
print(json.dumps({"name": record["name"], "meta_model": record["meta_model"],
                  "sources": [b["source"] for b in record["base_models"]]}))
"""


@pytest.fixture
def two_bases(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "naive_bayes"))
    for name in ("a", "b"):
        train_config(database, name)


def script_in_another_folder(tmp_path: Path, name: str) -> Path:
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    (elsewhere / "make_stack.py").write_text(SCRIPT.replace("from_elsewhere", name))
    return elsewhere


def made(done: subprocess.CompletedProcess, name: str) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"name": name, "meta_model": "logistic_regression", "sources": ["artifacts"] * 2}


def test_stacking_tool_from_another_directory(settings, database, two_bases, tmp_path):
    elsewhere = script_in_another_folder(tmp_path, "from_elsewhere")
    env = driver_env(settings, PYTHONPATH=str(PROJECT_ROOT), DATA_DIR=str(settings.data_dir))
    python = PROJECT_ROOT / ".venv" / "bin" / "python"
    run = {"cwd": elsewhere, "capture_output": True, "text": True, "timeout": 300}
    made(subprocess.run([str(python), "make_stack.py"], env=env, **run), "from_elsewhere")
    assert database.ensembles.find_one({"name": "from_elsewhere"}) is not None
    env.pop("PYTHONPATH")
    without = subprocess.run([str(python), "make_stack.py"], env=env, **run)
    assert without.returncode != 0 and "No module named 'agents'" in without.stderr  # why the README says it


def test_stacking_tool_after_pip_install_of_the_project(settings, database, two_bases, tmp_path):
    """`pip install -e CHECKOUT` into another environment: the script runs from any folder with that
    environment's python and no PYTHONPATH, and the `ensemble-cache` command is the CLI."""
    env_dir = tmp_path / "their-env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    # the dependencies are this project's environment's (no download); the project itself comes from pip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(PROJECT_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = script_in_another_folder(tmp_path, "after_pip")
    env = driver_env(settings, DATA_DIR=str(settings.data_dir))
    env.pop("PYTHONPATH", None)
    run = {"cwd": elsewhere, "env": env, "capture_output": True, "text": True, "timeout": 300}
    made(subprocess.run([str(python), "make_stack.py"], **run), "after_pip")
    command = subprocess.run([str(env_dir / "bin" / "ensemble-cache"), "ensemble", "list", "--json"], **run)
    assert command.returncode == 0, command.stderr[-3000:]
    assert "after_pip" in [e["name"] for e in json.loads(command.stdout)]
