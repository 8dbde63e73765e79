"""A config's training CSV and columns are checked when it is saved, the same way in the store, the web form,
``configs add`` and the API: a column that is not in the CSV gets a "did you mean", a missing CSV is refused,
one message per problem, and nothing is written."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.errors import ValidationError
from models.store.columns import read_header
from models.store.configs import ConfigStore
from models.store.datarefs import to_stored
from tests.helpers import cls_config
from web.testing import csrf_token

TYPO = "home_win_pct_last_10"


def typo_config(csv, name: str = "typo") -> dict:
    doc = cls_config(name, csv)
    doc["features"] = [TYPO if f == "home_win_pct_last10" else f for f in doc["features"]]
    return doc


def test_store_refuses_unknown_columns_with_did_you_mean_and_writes_nothing(database, games_csv):
    store = ConfigStore(database)
    with pytest.raises(ValidationError) as info:
        store.create({**typo_config(games_csv), "target": "home_wins"})
    errors = info.value.errors
    assert errors == [
        {
            "field": "features",
            "message": f"feature {TYPO!r} is not a column of {games_csv}; did you mean 'home_win_pct_last10'?",
        },
        {
            "field": "target",
            "message": f"target 'home_wins' is not a column of {games_csv}; did you mean 'home_win'?",
        },
    ]
    assert database.configs.count_documents({}) == 0


def test_store_refuses_a_missing_csv_once(database, tmp_path):
    with pytest.raises(ValidationError) as info:
        ConfigStore(database).create(cls_config("nocsv", tmp_path / "nope.csv"))
    assert len(info.value.errors) == 1 and info.value.errors[0]["field"] == "training_csv"
    assert "nope.csv" in info.value.message and "does not exist" in info.value.message
    assert database.configs.count_documents({}) == 0


def test_update_checks_only_when_the_data_fields_change(database, games_csv, tmp_path):
    store = ConfigStore(database)
    csv = tmp_path / "g.csv"
    csv.write_bytes(games_csv.read_bytes())
    doc = store.create(cls_config("c", csv))
    with pytest.raises(ValidationError, match="did you mean 'home_win_pct_last10'"):
        store.update("c", {"features": typo_config(csv)["features"]})
    assert store.get("c")["rev"] == doc["rev"]
    csv.unlink()  # the data went away later: editing the description still works
    assert store.update("c", {"description": "x"})["description"] == "x"
    with pytest.raises(ValidationError, match="does not exist"):
        store.update("c", {"target": "away_win"})


def test_header_only_is_read(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"\xef\xbb\xbfa, b ,c\n" + b"\xff" * 1000)  # BOM, spaces; the rest is never decoded
    assert read_header(path) == ["a", "b", "c"]


def test_cli_configs_add_refuses_with_did_you_mean(settings, database, games_csv, tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(typo_config(games_csv)))
    result = CliRunner().invoke(
        cli, ["configs", "add", str(path)], obj=AppContext(settings), catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "did you mean 'home_win_pct_last10'" in result.stderr
    assert result.stderr.count(TYPO) == 1
    assert database.configs.count_documents({}) == 0


def test_api_post_and_put_refuse_with_did_you_mean(api, database, games_csv, tmp_path):
    response = api("POST", "/api/configs", typo_config(games_csv))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "features" and "did you mean 'home_win_pct_last10'" in error["message"]
    assert database.configs.count_documents({}) == 0
    assert api("POST", "/api/configs", cls_config("ok", games_csv)).status_code == 201
    response = api("PUT", "/api/configs/ok", {**cls_config("ok", tmp_path / "gone.csv")})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "training_csv"
    assert "does not exist" in response.get_json()["error"]["message"]
    assert database.configs.find_one({"name": "ok"})["training_csv"] == to_stored(
        str(games_csv), database.settings
    )  # portable: @<root>/<path>


def test_web_form_shows_each_problem_once(page, database, games_csv):
    doc = typo_config(games_csv, "webtypo")
    data = {
        "name": doc["name"],
        "task": "classification",
        "model_type": "logistic_regression",
        "target": "home_win",
        "training_csv": str(games_csv),
        "features": "\n".join(doc["features"]),
        "hyperparameters": "{}",
        "scaler": "standard",
        "calibration": "none",
        "cv_folds": "3",
        "random_state": "7",
        "test_size": "0.2",
        "description": "",
        "tags": "",
        "csrf_token": csrf_token(page),
    }
    response = page.post("/configs/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert html.count("did you mean &#39;home_win_pct_last10&#39;?") == 1
    assert len(re.findall(r"is not a column of", html)) == 1
    assert database.configs.count_documents({}) == 0


@pytest.mark.parametrize(
    "content,message",
    [
        ("\n \n", "is empty (no header line)"),
        ("home_win;home_rest_days\n1;2\n", "seems to use another delimiter than ','"),
        (b"home_win,\xff\n", "is not UTF-8 text"),
    ],
)
def test_unreadable_headers_are_refused_at_save(database, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ValidationError) as info:
        ConfigStore(database).create(cls_config("bad", path))
    assert message in info.value.message
    assert database.configs.count_documents({}) == 0


def test_did_you_mean_ignores_case_and_a_case_only_difference_comes_first(database, tmp_path):
    """Issue 25: ``BMI`` for the column ``bmi`` got no suggestion (difflib compares case-sensitively)."""
    from models.store.columns import closest_column

    assert closest_column("BMI", ["age", "bmi", "bp"]) == "bmi"
    # a column differing only in case beats a closer spelling with the same case
    assert closest_column("Bmi", ["Bmx", "bmi"]) == "bmi"
    assert closest_column("AGEE", ["age", "sex"]) == "age" and closest_column("zzz", ["age", "bmi"]) is None
    csv = tmp_path / "diabetes.csv"
    csv.write_text("age,bmi,bp,target\n50,22.1,80,1\n")
    config = {**cls_config("d", csv), "features": ["age", "BMI"], "target": "Target"}
    with pytest.raises(ValidationError) as info:
        ConfigStore(database).create(config)
    assert info.value.errors == [
        {"field": "features", "message": f"feature 'BMI' is not a column of {csv}; did you mean 'bmi'?"},
        {"field": "target", "message": f"target 'Target' is not a column of {csv}; did you mean 'target'?"},
    ]
    assert database.configs.count_documents({}) == 0
