"""Data as people have it: string and text columns, blanks, XGBoost and LightGBM.

The Palmer penguins (shipped by the ``palmerpenguins`` package: string columns, blanks) and generated
data with free text. Scores and ensembles are compared with the same thing written with scikit-learn by
hand. Real server, real CSVs.
"""

from __future__ import annotations

import json

import numpy as np
import palmerpenguins
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from agents.tools.stacking_tool import StackingTool
from models import registry
from models.artifacts.loading import load_model
from models.ensembles.build import create_ensemble, load_ensemble
from models.ensembles.stacking import make_meta_model
from models.ensembles.suggest import suggest_ensemble
from models.errors import ValidationError
from models.preprocess import typed_frame
from models.splits import fold_spec, holdout_split, make_splitter
from models.store.configs import ConfigStore
from models.training.train import make_pipeline, train_config
from tests.helpers import run_cli, wait_job

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
CATEGORIES = ["island", "sex"]


@pytest.fixture
def penguins_csv(tmp_path):
    path = tmp_path / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(path, index=False)
    return path


def penguin_config(name, csv, model_type="logistic_regression", **extra):
    return {
        "name": name,
        "task": "classification",
        "model_type": model_type,
        "features": [*NUMBERS, *CATEGORIES],
        "target": "species",
        "training_csv": str(csv),
        "cv_folds": 3,
        "random_state": 5,
        **extra,
    }


def by_hand_preprocessing():
    """What the config's pipeline should be, written with scikit-learn alone."""
    return ColumnTransformer(
        [
            ("n", Pipeline([("i", SimpleImputer(strategy="median")), ("s", StandardScaler())]), NUMBERS),
            (
                "c",
                Pipeline(
                    [("i", SimpleImputer(strategy="most_frequent")), ("e", OneHotEncoder(handle_unknown="ignore"))]
                ),
                CATEGORIES,
            ),
        ],
        sparse_threshold=0.0,
    )


def test_types_are_detected_at_save_shown_and_a_given_entry_wins(database, penguins_csv):
    doc = ConfigStore(database).create(penguin_config("p", penguins_csv, feature_types={"sex": "categorical"}))
    assert doc["feature_types"] == {
        **dict.fromkeys(NUMBERS, "numeric"),
        "island": "categorical",
        "sex": "categorical",
    }
    year = ConfigStore(database).create(
        {
            **penguin_config("y", penguins_csv),
            "features": ["year", "island"],
            "feature_types": {"year": "categorical"},
        }
    )
    assert year["feature_types"] == {"year": "categorical", "island": "categorical"}


def test_a_penguin_classifier_trains_without_cleaning_and_scores_like_the_pipeline_by_hand(database, penguins_csv):
    ConfigStore(database).create(penguin_config("lr", penguins_csv))
    run = train_config(database, "lr")
    frame = pd.read_csv(penguins_csv)
    assert run["data"]["rows_used"] == len(frame) and run["data"]["rows_dropped"] == 0
    assert run["data"]["blank_cells"] == {**dict.fromkeys(NUMBERS, 2), "sex": 11}
    X, y = frame[[*NUMBERS, *CATEGORIES]], frame["species"].to_numpy()
    train, _ = train_test_split(np.arange(len(y)), test_size=0.2, random_state=5, stratify=y)
    train = np.sort(train)
    losses = []
    for fit_rows, val_rows in StratifiedKFold(3, shuffle=True, random_state=5).split(train, y[train]):
        pipe = Pipeline([("p", by_hand_preprocessing()), ("m", LogisticRegression(max_iter=1000, random_state=5))])
        pipe.fit(X.iloc[train[fit_rows]], y[train[fit_rows]])
        losses.append(accuracy_score(y[train[val_rows]], pipe.predict(X.iloc[train[val_rows]])))
    assert run["cv"]["metric"] == "accuracy"  # the primary metric of a three-class target
    assert abs(run["cv"]["mean"] - np.mean(losses)) < 0.02
    importance = {r["feature"] for r in run["feature_importance"]}
    assert importance == {*NUMBERS, *CATEGORIES}  # per original column, not per one-hot column


def test_a_penguin_regressor_trains_and_scores_like_the_pipeline_by_hand(database, penguins_csv):
    config = {
        **penguin_config("mass", penguins_csv, model_type="ridge"),
        "task": "regression",
        "target": "body_mass_g",
        "features": [*NUMBERS, "species", *CATEGORIES],
    }
    ConfigStore(database).create(config)
    run = train_config(database, "mass")
    frame = pd.read_csv(penguins_csv)
    assert run["data"]["rows_dropped"] == 2  # the two penguins without a body mass
    frame = frame[frame["body_mass_g"].notna()].reset_index(drop=True)
    X, y = frame[config["features"]], frame["body_mass_g"].to_numpy()
    train, _ = train_test_split(np.arange(len(y)), test_size=0.2, random_state=5)
    train = np.sort(train)
    pre = by_hand_preprocessing()
    pre.transformers[1] = ("c", pre.transformers[1][1], ["species", *CATEGORIES])
    errors = []
    for fit_rows, val_rows in KFold(3, shuffle=True, random_state=5).split(train):
        pipe = Pipeline([("p", pre), ("m", Ridge(random_state=5))]).fit(
            X.iloc[train[fit_rows]], y[train[fit_rows]]
        )
        errors.append(mean_squared_error(y[train[val_rows]], pipe.predict(X.iloc[train[val_rows]])) ** 0.5)
    assert run["cv"]["metric"] == "rmse" and abs(run["cv"]["mean"] - np.mean(errors)) < 0.02 * np.mean(errors)


def reviews_csv(path, n=400, seed=0):
    """Free text whose words carry the label, a category and a number with blanks."""
    rng = np.random.default_rng(seed)
    good, bad = ["great", "lovely", "superb", "fresh"], ["awful", "stale", "broken", "late"]
    label = rng.integers(0, 2, size=n)
    words = [
        " ".join(
            rng.choice(good if y else bad, size=3).tolist() + rng.choice(["the", "food", "was", "and"], 3).tolist()
        )
        for y in label
    ]
    frame = pd.DataFrame(
        {
            "review": words,
            "shop": rng.choice(["north", "south", "east"], size=n),
            "price": np.where(rng.random(n) < 0.1, np.nan, rng.normal(10, 2, n)),
            "liked": np.where(label == 1, "yes", "no"),
        }
    )
    frame.loc[[3, 9], "review"] = np.nan
    frame.to_csv(path, index=False)
    return path


def test_a_text_column_is_vectorised_and_learns(database, tmp_path):
    csv = reviews_csv(tmp_path / "reviews.csv")
    doc = ConfigStore(database).create(
        {
            "name": "reviews",
            "task": "classification",
            "model_type": "logistic_regression",
            "features": ["review", "shop", "price"],
            "target": "liked",
            "training_csv": str(csv),
            "cv_folds": 3,
        }
    )
    assert doc["feature_types"] == {"review": "text", "shop": "categorical", "price": "numeric"}
    run = train_config(database, "reviews")
    assert run["metrics"]["accuracy"] > 0.95
    model = load_model(database.settings, ConfigStore(database).get("reviews")).model
    rows = [
        {"review": "superb and lovely, never seen words too", "shop": "west", "price": None},
        {"review": None, "shop": None, "price": "12.5"},
    ]
    assert model.predict(rows).tolist()[0] == "yes" and model.predict_proba(rows).shape == (2, 2)


# ------------------------------------------------------------------ XGBoost and LightGBM, stacked

BASES = [
    ("p_lr", "logistic_regression", {}),
    ("p_xgb", "xgboost", {"n_estimators": 30, "max_depth": 3}),
    ("p_lgbm", "lightgbm", {"n_estimators": 30, "num_leaves": 8, "min_child_samples": 5}),
]


def train_bases(database, csv, bases=BASES):
    store = ConfigStore(database)
    for name, model_type, params in bases:
        store.create(penguin_config(name, csv, model_type=model_type, hyperparameters=params))
        train_config(database, name)
    return [store.get(name) for name, _, _ in bases]


def test_xgboost_and_lightgbm_stack_like_stacking_classifier_over_the_same_pipelines(database, penguins_csv):
    configs = train_bases(database, penguins_csv)
    record = create_ensemble(database, "penguin_stack", [c["name"] for c in configs], "logistic_regression")
    assert record["retrained"] == []
    frame = pd.read_csv(penguins_csv)
    types = configs[0]["feature_types"]
    X = typed_frame(frame, types)
    y = frame["species"].to_numpy()
    spec = fold_spec(configs[0])
    train, _ = holdout_split(y, spec)
    reference = StackingClassifier(
        [(c["name"], make_pipeline(c)) for c in configs],
        final_estimator=make_meta_model("classification", "logistic_regression", spec["random_state"]),
        cv=make_splitter(spec),
        stack_method="predict_proba",
    ).fit(X.iloc[train], y[train])
    rows = frame.sample(80, random_state=2)
    got = load_ensemble(database, "penguin_stack").predict_proba(rows)
    assert np.allclose(got, reference.predict_proba(typed_frame(rows, types)), rtol=1e-9, atol=1e-10)
    for c in configs[1:]:  # deterministic: trained again, the same predictions
        again = make_pipeline(c).fit(X.iloc[train], y[train])
        stored = load_model(database.settings, c).model
        assert np.array_equal(stored.predict_proba(rows), again.predict_proba(typed_frame(rows, types)))


def test_gradient_boosting_libraries_take_blanks_as_they_are(database, penguins_csv):
    ConfigStore(database).create(
        penguin_config("raw", penguins_csv, model_type="lightgbm", imputation={"numeric": "none"})
    )
    run = train_config(database, "raw")
    assert run["data"]["imputation"]["numeric"] == "none"
    model = load_model(database.settings, ConfigStore(database).get("raw")).model
    row = {
        "bill_length_mm": None,
        "bill_depth_mm": 18.0,
        "flipper_length_mm": None,
        "island": "Dream",
        "sex": None,
    }
    assert model.predict_proba([row]).shape == (1, 3)
    with pytest.raises(ValidationError, match="imputation.numeric 'none' .* logistic_regression cannot take them"):
        ConfigStore(database).create(penguin_config("bad", penguins_csv, imputation={"numeric": "none"}))


def test_suggestions_export_import_and_deploy_export_work_on_mixed_runs(database, other, penguins_csv, tmp_path):
    configs = train_bases(database, penguins_csv)
    record = suggest_ensemble(database, "penguin_auto", [c["name"] for c in configs], size=6)
    assert {c["name"] for c in record["selection"]["candidates"]} == {c["name"] for c in configs}
    rows = pd.read_csv(penguins_csv).head(30)
    assert load_ensemble(database, "penguin_auto").predict_proba(rows).shape == (30, 3)
    xgb = configs[1]
    archive = tmp_path / "xgb.tar.gz"
    registry.export_run(database, xgb["run_id"], archive)
    registry.import_run(other, archive, by="tester")
    here = registry.load(database, xgb["run_id"], use_cache=False).model.predict_proba(rows)
    there = registry.load(other, xgb["run_id"], use_cache=False).model.predict_proba(rows)
    assert np.array_equal(here, there)
    meta = registry.deploy_export(database, configs[2]["run_id"], tmp_path / "deploy")
    import joblib

    pipeline = joblib.load(meta["pipeline_path"])
    assert np.allclose(
        pipeline.predict_proba(rows), registry.load(database, configs[2]["run_id"]).model.predict_proba(rows)
    )


def test_rows_with_strings_blanks_and_unseen_categories_predict_from_every_entry_point(
    api, database, settings, penguins_csv, tmp_path
):
    train_bases(database, penguins_csv, BASES[:2])
    create_ensemble(database, "pe", ["p_lr", "p_xgb"])
    rows = [
        {
            "bill_length_mm": 39.1,
            "bill_depth_mm": 18.7,
            "flipper_length_mm": 181,
            "island": "Atlantis",
            "sex": None,
        },
        {
            "bill_length_mm": None,
            "bill_depth_mm": "17.5",
            "flipper_length_mm": 200,
            "island": "Dream",
            "sex": "male",
        },
    ]
    expected = load_ensemble(database, "pe").predict_proba(rows)
    answer = api("POST", "/api/predict/ensemble/pe", {"rows": rows})
    assert answer.status_code == 200, answer.get_json()
    got = [[p[f"proba_{c}"] for c in ("Adelie", "Chinstrap", "Gentoo")] for p in answer.get_json()["predictions"]]
    assert np.allclose(got, expected)
    single = api("POST", "/api/predict/model/p_xgb", {"rows": rows})
    assert single.status_code == 200 and len(single.get_json()["predictions"]) == 2
    bad = api("POST", "/api/predict/model/p_lr", {"rows": [{**rows[0], "bill_depth_mm": "deep"}]})
    assert bad.status_code == 422 and "bill_depth_mm" in bad.get_json()["error"]["message"]
    assert "row 0" in bad.get_json()["error"]["message"]
    csv = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "out.csv"
    cli = run_cli(settings, "ensemble", "predict", "pe", "--csv", str(csv), "--out", str(out))
    assert cli.returncode == 0, cli.stderr
    written = pd.read_csv(out)
    assert np.allclose(written[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].to_numpy(), expected)
    with StackingTool(database=database) as tool:
        assert np.allclose(tool.load_ensemble("pe").predict_proba(pd.DataFrame(rows)), expected)


@pytest.mark.parametrize(
    "extra,field,message",
    [
        ({"feature_types": {"body_mass_g": "numeric"}}, "feature_types.body_mass_g", "not one of the features"),
        ({"feature_types": {"island": "ordinal"}}, "feature_types.island", "'numeric', 'categorical' or 'text'"),
        ({"feature_types": {"bill_depth_mm": "text"}}, "feature_types", "holds numbers only"),
        ({"feature_types": {"island": "numeric"}}, "feature_types", "is numeric but line 2 holds 'Torgersen'"),
        ({"imputation": {"numeric": "zero"}}, "imputation.numeric", "is not one of: median, mean"),
        ({"imputation": {"text": "constant"}}, "imputation.text", "not 'text'"),
    ],
)
def test_bad_types_are_refused_at_save_and_nothing_is_written(database, penguins_csv, extra, field, message):
    with pytest.raises(ValidationError) as caught:
        ConfigStore(database).create(penguin_config("bad", penguins_csv, **extra), from_user=True)
    assert message in caught.value.message and field in {e["field"] for e in caught.value.errors}, (
        caught.value.errors
    )
    assert database.configs.count_documents({}) == 0


def test_an_all_blank_column_is_refused_at_save(database, tmp_path):
    frame = palmerpenguins.load_penguins()
    frame["empty"] = np.nan
    frame.to_csv(tmp_path / "blank.csv", index=False)
    with pytest.raises(ValidationError, match="feature 'empty' is blank in every row"):
        ConfigStore(database).create(
            {**penguin_config("blank", tmp_path / "blank.csv"), "features": ["island", "empty"]}
        )
    assert database.configs.count_documents({}) == 0


def test_the_api_and_the_cli_train_mixed_configs(api, database, settings, penguins_csv, tmp_path):
    body = penguin_config("api_lgbm", penguins_csv, model_type="lightgbm", hyperparameters={"n_estimators": 20})
    created = api("POST", "/api/configs", body)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["feature_types"]["island"] == "categorical"
    job = api("POST", "/api/configs/api_lgbm/train").get_json()
    assert wait_job(api, job["job_id"], timeout=120)["status"] == "succeeded"
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(penguin_config("cli_xgb", penguins_csv, model_type="xgboost")))
    added = run_cli(settings, "configs", "add", str(path))
    assert added.returncode == 0, added.stderr
    trained = run_cli(settings, "train", "cli_xgb", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)[0]["status"] == "trained"


def test_the_form_takes_feature_types_and_the_page_shows_them(page, database, penguins_csv):
    from web.testing import csrf_token

    form = {
        "name": "form_mixed",
        "task": "classification",
        "model_type": "lightgbm",
        "target": "species",
        "training_csv": str(penguins_csv),
        "features": "\n".join([*NUMBERS, *CATEGORIES, "year"]),
        "feature_types": "year: categorical\nisland: categorical",
        "imputation": "numeric: none",
        "hyperparameters": '{"n_estimators": 10}',
        "scaler": "none",
        "calibration": "none",
        "cv_folds": "3",
        "random_state": "1",
        "test_size": "0.2",
        "split": "random",
    }
    response = page.post("/configs/new", data={**form, "csrf_token": csrf_token(page)})
    assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    doc = ConfigStore(database).get("form_mixed")
    assert doc["feature_types"]["year"] == "categorical" and doc["feature_types"]["sex"] == "categorical"
    assert doc["feature_types"]["bill_length_mm"] == "numeric" and doc["imputation"] == {"numeric": "none"}
    html = page.get("/configs/form_mixed").get_data(as_text=True)
    assert '<code>year</code> <span class="tag">categorical</span>' in html and "numeric none" in html
    edit = page.get("/configs/form_mixed/edit").get_data(as_text=True)
    assert "year: categorical" in edit and "bill_length_mm: numeric" in edit
    bad = page.post(
        "/configs/new",
        data={**form, "name": "form_bad", "feature_types": "island: ordinal", "csrf_token": csrf_token(page)},
    )
    assert bad.status_code == 422 and "ordinal" in bad.get_data(as_text=True)
    assert ConfigStore(database).find("form_bad") is None


def test_passthrough_of_categorical_features_is_refused_with_nothing_written(database, penguins_csv):
    train_bases(database, penguins_csv, BASES[:2])
    with pytest.raises(ValidationError, match="island, sex are categorical or text"):
        create_ensemble(database, "pt", ["p_lr", "p_xgb"], passthrough=True)
    assert database.ensembles.count_documents({}) == 0
