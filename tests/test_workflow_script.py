"""The README's stacking workflow script, run for real against the test server."""

import os
import subprocess

from models.settings import PROJECT_ROOT


def test_stacking_workflow_script_runs_end_to_end(settings, database):
    script = PROJECT_ROOT / "scripts" / "stacking_workflow.sh"
    assert script.read_text() in (PROJECT_ROOT / "README.md").read_text()  # the README shows this very script
    env = {
        **os.environ,
        "MONGO_URI": settings.mongo_uri,
        "MONGO_DB": settings.mongo_db,
        "ARTIFACT_DIR": str(settings.artifact_dir),
        "DATA_DIR": str(settings.data_dir),
        "VAR_DIR": str(settings.var_dir),
        "GAMES": "1500",
    }
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saved config wf_extra_trees" in result.stderr and "saved config wf_logreg" in result.stderr
    assert "wrote 100 predictions" in result.stderr
    header = result.stdout.strip().splitlines()[-5]
    assert header.endswith("prediction,proba_0,proba_1")
    doc = database.ensembles.find_one({"name": "wf_stack"})
    assert [b["source"] for b in doc["base_models"]] == ["artifacts"] * 3
    for name in ("wf_extra_trees", "wf_logreg", "home_win_nb"):
        assert database.configs.find_one({"name": name})["status"] == "trained"
