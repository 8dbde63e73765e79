"""A script outside the checkout uses the stacking tool with the README's command: the checkout on
PYTHONPATH and the project's interpreter, from any working directory."""

from __future__ import annotations

import json
import os
import subprocess

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
