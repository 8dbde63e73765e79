"""``python -m cli models ...`` against the real server."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models import registry
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config, reg_config
from tests.test_registry import add, fake_run


def run(settings, *args, input=None):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), input=input, catch_exceptions=False)


def ok_json(settings, *args):
    result = run(settings, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def two(database, games_csv):
    ConfigStore(database).create(cls_config("hw", games_csv))
    ConfigStore(database).create(reg_config("pd", games_csv))
    return train_config(database, "hw"), train_config(database, "pd")


def test_list_show_best_compare(settings, database, two):
    cls_run, reg_run = two
    listed = ok_json(settings, "models", "list")
    assert listed["total"] == 2 and {r["run_id"] for r in listed["items"]} == {
        cls_run["run_id"],
        reg_run["run_id"],
    }
    assert ok_json(settings, "models", "list", "--task", "regression")["items"][0]["run_id"] == reg_run["run_id"]
    high = cls_run["metrics"]["accuracy"] + 0.01
    assert ok_json(settings, "models", "list", "--min", f"accuracy={high}")["total"] == 0
    assert ok_json(settings, "models", "list", "--max", "rmse=1000", "--sort", "rmse")["total"] == 1
    paged = ok_json(settings, "models", "list", "--per-page", "1", "--page", "2", "--sort", "name", "--asc")
    assert [r["name"] for r in paged["items"]] == ["pd"] and paged["pages"] == 2
    assert ok_json(settings, "models", "show", "hw@latest")["run_id"] == cls_run["run_id"]
    assert ok_json(settings, "models", "show", reg_run["run_id"])["name"] == "pd"
    assert ok_json(settings, "models", "best", "--metric", "rmse")["run_id"] == reg_run["run_id"]
    assert ok_json(settings, "models", "best", "--metric", "rmse", "--task", "classification") is None
    table = ok_json(settings, "models", "compare", cls_run["run_id"], reg_run["run_id"])
    assert [r["run_id"] for r in table["runs"]] == [cls_run["run_id"], reg_run["run_id"]]
    human = run(settings, "models", "compare", cls_run["run_id"], reg_run["run_id"])
    assert (
        human.exit_code == 0 and "*" in human.stdout and "features" in human.stdout and "durations" in human.stdout
    )
    human = run(settings, "models", "list", "--sort", "rmse")
    assert human.exit_code == 0 and "2 runs (page 1 of 1)" in human.stdout
    assert run(settings, "models", "show", "hw").exit_code == 0


def test_empty_registry(settings, database):
    assert ok_json(settings, "models", "list", "--min", "f1=0.5") == {
        "items": [],
        "total": 0,
        "page": 1,
        "per_page": 20,
        "pages": 1,
        "sort": "created_at",
        "descending": True,
    }
    assert ok_json(settings, "models", "best", "--metric", "f1") is None
    result = run(settings, "models", "best", "--metric", "f1")
    assert result.exit_code == 0 and "no run has the metric 'f1'" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (("list", "--min", "f1"), "--min needs METRIC=VALUE"),
        (("list", "--max", "rmse=abc"), "--max rmse=abc: the value must be a number"),
        (("list", "--since", "last week"), "since must be an ISO date"),
        (("list", "--page", "0"), "page must be a whole number >= 1"),
        (("show", "nope@1.0"), "after '@' give a version"),
        (("show", "nope"), "no run with id or name 'nope'"),
        (("compare", "20990101_000000_deadbeef"), "give at least two run ids"),
        (("history", "20990101_000000_deadbeef"), "no run with id '20990101_000000_deadbeef'"),
    ],
)
def test_bad_input_exits_2_with_one_line(settings, database, args, message):
    line = one_line_error(run(settings, "models", *args))
    assert message in line


def test_promote_history_and_invalid_transition(settings, database):
    a, b = add(database, fake_run("p"), fake_run("p"))
    first = ok_json(settings, "models", "promote", a["run_id"], "--to", "production", "--by", "ann")
    assert first == {"run_id": a["run_id"], "from": "trained", "to": "production", "demoted": None}
    second = ok_json(settings, "models", "promote", b["run_id"], "--to", "production", "--demote-to", "archived")
    assert second["demoted"]["run_id"] == a["run_id"] and second["demoted"]["to"] == "archived"
    assert ok_json(settings, "models", "show", "p@production")["run_id"] == b["run_id"]
    line = one_line_error(run(settings, "models", "promote", a["run_id"], "--to", "production"))
    assert "cannot move a run from archived to production; from archived it can go to: staging, trained" in line
    hist = ok_json(settings, "models", "history", a["run_id"])
    assert [(h["from"], h["to"], h["by"]) for h in hist] == [
        (None, "trained", None),
        ("trained", "production", "ann"),
        ("production", "archived", "cli"),
    ]
    human = run(settings, "models", "history", a["run_id"])
    assert human.exit_code == 0 and "archived" in human.stdout


def test_delete_refused_while_in_use_then_forced(settings, database, two):
    cls_run, _ = two
    database.ensembles.insert_one(
        {"name": "stack1", "run_id": "20990101_000000_00000001", "base_run_ids": [cls_run["run_id"]]}
    )
    line = one_line_error(run(settings, "models", "delete", cls_run["run_id"], "--yes"))
    assert "used by 1 ensemble(s): stack1" in line
    assert database.runs.count_documents({}) == 2
    aborted = run(settings, "models", "delete", cls_run["run_id"], "--force", input="n\n")
    assert aborted.exit_code == 1 and "stack1" in aborted.stderr
    assert database.runs.count_documents({}) == 2 and database.ensembles.count_documents({}) == 1
    result = run(settings, "models", "delete", cls_run["run_id"], "--force", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert "will be deleted too: stack1" in result.stderr
    out = json.loads(result.stdout)
    assert out["deleted_ensembles"] == ["stack1"] and out["config"]["action"] == "cleared"
    assert database.runs.count_documents({}) == 1 and database.ensembles.count_documents({}) == 0


def test_export_import_and_deploy_export(settings, database, two, games_csv, tmp_path):
    cls_run, _ = two
    archive = tmp_path / "hw.tar.gz"
    exported = ok_json(settings, "models", "export", "hw@1.0.0", "--out", str(archive))
    assert exported["run_id"] == cls_run["run_id"] and archive.is_file()
    fresh = settings.with_(mongo_db=f"test_{uuid.uuid4().hex[:12]}", artifact_dir=tmp_path / "fresh")
    other = Database.connect(fresh)
    try:
        # a tampered copy first: refused, nothing written
        tampered = tmp_path / "tampered.tar.gz"
        with tarfile.open(archive) as src, tarfile.open(tampered, "w:gz") as dst:
            for member in src.getmembers():
                data = src.extractfile(member).read()
                if member.name == "run.json":
                    data = data.replace(b'"trained"', b'"traineD"', 1)
                dst.addfile(member, io.BytesIO(data))
        line = one_line_error(run(fresh, "models", "import", str(tampered)))
        assert "run.json fails verification" in line
        assert other.runs.count_documents({}) == 0 and not (tmp_path / "fresh").exists()

        imported = ok_json(fresh, "models", "import", str(archive))
        assert imported["run_id"] == cls_run["run_id"] and imported["config"]["action"] == "created"
        line = one_line_error(run(fresh, "models", "import", str(archive)))
        assert "already exists" in line
        renamed = ok_json(fresh, "models", "import", str(archive), "--rename")
        assert renamed["renamed"] and renamed["version"] == "1.0.1"
        deployed = ok_json(fresh, "models", "deploy-export", cls_run["run_id"], "--out", str(tmp_path / "dep"))
        frame = pd.read_csv(games_csv).head(40)
        original = registry.load(database, cls_run["run_id"]).model
        assert np.array_equal(
            joblib.load(deployed["pipeline_path"]).predict_proba(frame), original.predict_proba(frame)
        )
        human = run(fresh, "models", "export", cls_run["run_id"], "--out", str(tmp_path / "again.tar.gz"))
        assert human.exit_code == 0 and "exported run" in human.stderr and human.stdout == ""
    finally:
        other.client.drop_database(fresh.mongo_db)
        other.close()
