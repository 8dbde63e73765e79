import json

from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli


def run(settings, *args, input=None):
    runner = CliRunner()
    return runner.invoke(cli, list(args), obj=AppContext(settings), input=input, catch_exceptions=False)


def test_configs_add_list_show_edit_delete(settings, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: y1\ntask: regression\nmodel_type: ridge\nfeatures: [a, b]\ntarget: t\n"
        "training_csv: tests/fixtures/columns.csv\nowner: me\n"
    )
    result = run(settings, "configs", "add", str(path))
    assert result.exit_code == 0, result.output
    result = run(settings, "configs", "list", "--json")
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert [c["name"] for c in listed] == ["y1"] and listed[0]["owner"] == "me"
    result = run(settings, "configs", "edit", "y1", "--set", "hyperparameters.alpha=0.5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hyperparameters"] == {"alpha": 0.5}
    result = run(settings, "configs", "show", "y1", "--json")
    assert json.loads(result.stdout)["hyperparameters"]["alpha"] == 0.5
    result = run(settings, "configs", "delete", "y1", "--yes")
    assert result.exit_code == 0
    assert json.loads(run(settings, "configs", "list", "--json").stdout) == []


def test_invalid_config_file_names_the_field_and_writes_nothing(settings, tmp_path, database):
    good = {
        "name": "ok",
        "task": "regression",
        "model_type": "ridge",
        "features": ["a"],
        "target": "t",
        "training_csv": "tests/fixtures/columns.csv",
    }
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps({**good, "name": "bad", "cv_folds": -2}))
    result = run(settings, "configs", "add", str(tmp_path))
    assert result.exit_code == 2
    assert "cv_folds" in result.stderr and "bad.json" in result.stderr
    assert database.configs.count_documents({}) == 0


def test_malformed_json_and_yaml(settings, tmp_path, database):
    (tmp_path / "a.json").write_text("{not json")
    result = run(settings, "configs", "add", str(tmp_path / "a.json"))
    assert result.exit_code == 2 and "malformed JSON" in result.stderr
    (tmp_path / "b.yaml").write_text("name: [unclosed")
    result = run(settings, "configs", "add", str(tmp_path / "b.yaml"))
    assert result.exit_code == 2 and "malformed YAML" in result.stderr
    assert "Traceback" not in result.output
    assert database.configs.count_documents({}) == 0


def test_unknown_name_and_bad_set(settings, database):
    result = run(settings, "configs", "show", "nope")
    assert result.exit_code == 2 and "no config named 'nope'" in result.stderr
    run(settings, "demo", "--games", "300")
    result = run(settings, "configs", "edit", "home_win_rf", "--set", "cv_folds=zero")
    assert result.exit_code == 2 and "cv_folds" in result.stderr
    result = run(settings, "configs", "edit", "home_win_rf", "--set", "novalue")
    assert result.exit_code == 2 and "key=value" in result.stderr
    assert database.configs.find_one({"name": "home_win_rf"})["cv_folds"] == 5


def test_db_commands(settings, tmp_path):
    from models.store.embedded import free_port

    embedded = settings.with_(mongo_uri=None, embedded_port=free_port(), var_dir=tmp_path / "var")
    assert run(embedded, "db", "status").exit_code == 1
    result = run(embedded, "db", "start", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["running"] is True
    assert run(embedded, "db", "status").exit_code == 0
    assert (tmp_path / "var" / "mongo").is_dir()
    result = run(embedded, "db", "stop")
    assert result.exit_code == 0 and "stopped" in result.stderr
    assert run(embedded, "db", "status").exit_code == 1
