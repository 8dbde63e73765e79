"""Ensemble predictions: every missing column of every base model named (CLI as the API); the ensemble page
predicts an uploaded CSV and deletes; a prediction CSV that already has ``prediction`` gets one; ``--json``
keeps full precision; a NaN names its column; integer labels stay integers when the target had a blank."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.ensembles.build import create_ensemble, load_ensemble
from models.errors import ValidationError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config
from web.testing import csrf_token

A_FEATS = ["home_elo", "away_elo", "home_rest_days", "away_rest_days"]
B_FEATS = ["home_off_rating", "away_off_rating", "home_def_rating", "away_def_rating"]


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


@pytest.fixture
def stack(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv, features=A_FEATS))
    store.create(cls_config("b", games_csv, features=B_FEATS))
    for name in ("a", "b"):
        train_config(database, name)
    create_ensemble(database, "ab", ["a", "b"], "logistic_regression")
    return games_csv


def test_cli_names_every_missing_column_of_every_base(settings, stack, tmp_path):
    rows = pd.read_csv(stack).head(5).drop(columns=A_FEATS[2:] + B_FEATS[1:])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = run(settings, "ensemble", "predict", "ab", "--csv", str(tmp_path / "rows.csv"))
    assert result.exit_code == 2
    missing = A_FEATS[2:] + B_FEATS[1:]
    assert f"missing feature columns: {', '.join(missing)}" in result.stderr


def test_blanks_are_imputed_and_infinite_values_name_the_column(database, stack):
    rows = pd.read_csv(stack).head(8)
    rows.loc[[2, 5], "away_elo"] = np.nan  # imputed by each base model's pipeline, as in training
    assert load_ensemble(database, "ab").predict(rows).shape == (8,)
    rows.loc[[2, 5], "away_elo"] = np.inf
    with pytest.raises(ValidationError) as info:
        load_ensemble(database, "ab").predict(rows)
    assert "away_elo (rows 2, 5)" in info.value.message and "np." not in info.value.message
    assert info.value.field == "away_elo"


def test_prediction_column_is_replaced_and_json_keeps_precision(settings, stack, tmp_path):
    rows = pd.read_csv(stack).head(5)
    rows["prediction"] = "old"
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "out.csv"
    result = run(
        settings, "ensemble", "predict", "ab", "--csv", str(tmp_path / "rows.csv"), "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert list(written.columns).count("prediction") == 1 and "old" not in set(written["prediction"].astype(str))
    assert "prediction is replaced by the new predictions" in result.stderr
    proba = json.loads(result.stdout)["predictions"][0]["proba_1"]
    assert len(repr(proba).split(".")[1]) > 10  # not rounded to 10 decimals


def test_page_predicts_an_uploaded_csv(page, database, stack):
    html = page.get("/ensembles/ab").get_data(as_text=True)
    assert 'id="predict-form"' in html and "/ensembles/ab/delete" in html
    data = pd.read_csv(stack).head(7).to_csv(index=False).encode()
    response = page.post(
        "/ensembles/ab/predict",
        data={"csrf_token": csrf_token(page), "csv": (io.BytesIO(data), "rows.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "ab-predictions.csv" in response.headers["Content-Disposition"]
    table = pd.read_csv(io.BytesIO(response.data))
    assert len(table) == 7 and {"prediction", "proba_0", "proba_1"} <= set(table.columns)
    expected = load_ensemble(database, "ab").predict(pd.read_csv(stack).head(7))
    assert list(table["prediction"]) == list(expected)


def test_page_predict_refusals_name_the_problem(page, stack):
    rows = pd.read_csv(stack).head(3).drop(columns=["home_elo", "home_def_rating"]).to_csv(index=False).encode()
    response = page.post(
        "/ensembles/ab/predict",
        data={"csrf_token": csrf_token(page), "csv": (io.BytesIO(rows), "rows.csv")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "No predictions: missing feature columns: home_elo, home_def_rating" in response.get_data(as_text=True)
    response = page.post(
        "/ensembles/ab/predict",
        data={"csrf_token": csrf_token(page)},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "choose a CSV file" in response.get_data(as_text=True)


def test_page_deletes_after_confirmation(page, database, stack):
    assert "Delete ab?" in page.get("/ensembles/ab/delete").get_data(as_text=True)
    response = page.post("/ensembles/ab/delete", data={"csrf_token": csrf_token(page), "confirm": "nope"})
    assert response.status_code == 422 and database.ensembles.count_documents({}) == 1
    response = page.post("/ensembles/ab/delete", data={"csrf_token": csrf_token(page), "confirm": "ab"})
    assert response.status_code == 302 and database.ensembles.count_documents({}) == 0
    assert database.runs.count_documents({}) == 2


def test_integer_labels_stay_integers_when_the_target_had_a_blank(database, games_csv, tmp_path):
    frame = pd.read_csv(games_csv)
    frame["label"] = frame["home_win"] + 1  # classes 1 and 2
    frame.loc[3, "label"] = np.nan
    frame.to_csv(tmp_path / "blank.csv", index=False)
    ConfigStore(database).create(cls_config("blank", tmp_path / "blank.csv", target="label"))
    run_doc = train_config(database, "blank")
    assert run_doc["classes"] == [1, 2] and all(type(c) is int for c in run_doc["classes"])
    assert run_doc["data"]["rows_dropped"] == 1
