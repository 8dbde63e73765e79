"""A script outside the checkout uses the stacking tool with the README's command: the checkout on
PYTHONPATH and the project's interpreter, from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config

SCRIPT = """
import json
from agents.tools.stacking_tool import StackingTool

record = StackingTool().create_ensemble("from_elsewhere", ["a", "b"])
print(json.dumps({"name": record["name"], "meta_model": record["meta_model"],
                  "sources": [b["source"] for b in record["base_models"]]}))
"""


def test_stacking_tool_from_another_directory(settings, database, games_csv, tmp_path):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "naive_bayes"))
    for name in ("a", "b"):
        train_config(database, name)
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    (elsewhere / "make_stack.py").write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "MONGO_URI": settings.mongo_uri,
        "MONGO_DB": settings.mongo_db,
        "ARTIFACT_DIR": str(settings.artifact_dir),
        "DATA_DIR": str(settings.data_dir),
        "VAR_DIR": str(settings.var_dir),
    }
    python = PROJECT_ROOT / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "make_stack.py"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"name": "from_elsewhere", "meta_model": "logistic_regression", "sources": ["artifacts"] * 2}
    assert database.ensembles.find_one({"name": "from_elsewhere"}) is not None
    without = subprocess.run(
        [str(python), "make_stack.py"],
        cwd=elsewhere,
        env={k: v for k, v in env.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert without.returncode != 0 and "No module named 'agents'" in without.stderr  # why the README says it


def test_stacking_tool_after_pip_install_of_the_project(settings, database, games_csv, tmp_path):
    """`pip install -e CHECKOUT` into another environment: the script runs from any folder with that
    environment's python and no PYTHONPATH, and the `ensemble-cache` command is the CLI."""
    import sys
    import sysconfig

    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "naive_bayes"))
    for name in ("a", "b"):
        train_config(database, name)
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
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    (elsewhere / "make_stack.py").write_text(SCRIPT.replace("from_elsewhere", "after_pip"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        MONGO_URI=settings.mongo_uri,
        MONGO_DB=settings.mongo_db,
        ARTIFACT_DIR=str(settings.artifact_dir),
        DATA_DIR=str(settings.data_dir),
        VAR_DIR=str(settings.var_dir),
    )
    done = subprocess.run(
        [str(python), "make_stack.py"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"name": "after_pip", "meta_model": "logistic_regression", "sources": ["artifacts"] * 2}
    command = subprocess.run(
        [str(env_dir / "bin" / "ensemble-cache"), "ensemble", "list", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert command.returncode == 0, command.stderr[-3000:]
    assert "after_pip" in [e["name"] for e in json.loads(command.stdout)]
