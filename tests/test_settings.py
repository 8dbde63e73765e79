import re
from pathlib import Path

import pytest

from models.settings import PROJECT_ROOT, Settings


def test_defaults():
    s = Settings.from_env({})
    assert s.mongo_uri is None and s.uses_embedded
    assert s.config_collection == "model_config"
    assert s.artifact_dir == PROJECT_ROOT / "cli" / "models"
    assert s.effective_mongo_uri == "mongodb://127.0.0.1:27018"


def test_environment_overrides():
    s = Settings.from_env(
        {
            "MONGO_URI": "mongodb://db:27017",
            "CONFIG_COLLECTION": "model_config_nba",
            "ARTIFACT_DIR": "/srv/models",
            "JOB_WORKERS": "4",
        }
    )
    assert not s.uses_embedded
    assert s.effective_mongo_uri == "mongodb://db:27017"
    assert s.config_collection == "model_config_nba"
    assert s.artifact_dir == Path("/srv/models")
    assert s.job_workers == 4


def test_bad_integer_names_the_variable():
    with pytest.raises(ValueError, match="JOB_WORKERS"):
        Settings.from_env({"JOB_WORKERS": "many"})


def test_only_settings_reads_environment():
    offenders = []
    for path in PROJECT_ROOT.glob("**/*.py"):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        if rel.startswith((".venv/", "tests/", "bench/")) or rel == "models/settings.py":
            continue
        if "os.environ" in path.read_text() or "os.getenv" in path.read_text():
            offenders.append(rel)
    assert offenders == []


def test_core_imports_nothing_from_outer_layers():
    pattern = re.compile(r"^\s*(from|import)\s+(web|cli|agents)\b", re.M)
    offenders = [p.name for p in (PROJECT_ROOT / "models").glob("**/*.py") if pattern.search(p.read_text())]
    assert offenders == []
