"""CSV problems not covered in tests/test_training.py: each is a clear error naming the problem, or the
documented handling (models/training/data.py: blank features are imputed, rows without a target dropped).
A refused CSV writes no artifact and leaves the config ``failed`` with the message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.errors import DataError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import FEATS, cls_config, create_then_change_csv, reg_config


@pytest.fixture
def frame(games_csv):
    return pd.read_csv(games_csv).head(300)


def _refused(database, settings, path, message, make=cls_config):
    # saved while the file was good; the save-time check is tested in tests/test_config_data_check.py
    create_then_change_csv(ConfigStore(database), make("bad", path), path.read_bytes())
    with pytest.raises(DataError, match=message):
        train_config(database, "bad")
    doc = ConfigStore(database).get("bad")
    assert doc["status"] == "failed" and doc["error"]["code"] == "data_error"
    assert not settings.artifact_dir.exists() or list(settings.artifact_dir.iterdir()) == []
    assert database.runs.count_documents({}) == 0


def test_whitespace_only_file_is_empty(database, settings, tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n \n\t\n")
    _refused(database, settings, path, "is empty")


def test_wrong_delimiter_says_so(database, settings, frame, tmp_path):
    path = tmp_path / "semi.csv"
    frame.to_csv(path, index=False, sep=";")
    _refused(database, settings, path, "lacks columns: .*seems to use another delimiter than ','")


def test_non_utf8_names_the_byte(database, settings, frame, tmp_path):
    path = tmp_path / "latin.csv"
    text = frame.to_csv(index=False)
    path.write_bytes(text.replace("home_win", "home_win", 1).encode() + "Zürich,1\n".encode("latin-1"))
    _refused(database, settings, path, r"is not UTF-8 text \(byte \d+ is invalid\)")


def test_utf8_bom_is_accepted(database, frame, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    ConfigStore(database).create(cls_config("bom", path))
    assert train_config(database, "bom")["data"]["rows_used"] == len(frame)


def test_huge_numbers_are_refused_clearly(database, settings, frame, tmp_path):
    frame.loc[5, FEATS[0]] = 1e305
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)
    _refused(database, settings, path, "too large to train on")


def test_large_but_finite_numbers_train(database, frame, tmp_path):
    frame[FEATS[0]] = frame[FEATS[0]] * 1e12
    path = tmp_path / "large.csv"
    frame.to_csv(path, index=False)
    ConfigStore(database).create(cls_config("large", path))
    run = train_config(database, "large")
    assert np.isfinite(run["metrics"]["accuracy"])


def test_blanks_are_imputed_and_rows_without_target_dropped(database, frame, tmp_path):
    frame = frame.astype({f: float for f in FEATS[:4]} | {"home_win": float})
    frame.loc[[4], FEATS[3]] = np.nan
    frame.loc[[7, 8], FEATS[2]] = np.nan
    frame.loc[[5], "home_win"] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    ConfigStore(database).create(cls_config("nan", path))
    run = train_config(database, "nan")
    assert run["data"]["rows_dropped"] == 1 and run["data"]["rows_used"] == len(frame) - 1
    assert run["data"]["blank_cells"] == {FEATS[2]: 2, FEATS[3]: 1}
    assert run["data"]["missing_value_policy"] == "rows without a target dropped; blank features imputed"


def test_infinite_feature_values_are_refused_with_the_line(database, settings, frame, tmp_path):
    frame = frame.astype({FEATS[1]: float})
    frame.loc[[3], FEATS[1]] = np.inf
    inf = tmp_path / "inf.csv"
    frame.to_csv(inf, index=False)
    _refused(
        database, settings, inf, rf"feature '{FEATS[1]}' is infinite on line 5; .* infinite values are refused"
    )


def test_too_few_rows_left_after_dropping(database, settings, frame, tmp_path):
    frame["home_win"] = frame["home_win"].astype(float)
    frame.loc[frame.index[5:], "home_win"] = np.nan
    path = tmp_path / "mostly_nan.csv"
    frame.to_csv(path, index=False)
    _refused(database, settings, path, r"only 5 usable rows .* after dropping 295 with a missing target")


def test_constant_feature_column_trains(database, frame, tmp_path):
    """Documented handling: a constant column is kept (scalers leave it at 0); training works."""
    frame[FEATS[0]] = 3.0
    path = tmp_path / "const.csv"
    frame.to_csv(path, index=False)
    for scaler in ("standard", "minmax", "robust"):
        ConfigStore(database).create(cls_config(f"const_{scaler}", path, scaler=scaler))
        run = train_config(database, f"const_{scaler}")
        assert np.isfinite(run["metrics"]["accuracy"])
        importance = {f["feature"]: f["importance"] for f in run["feature_importance"]}
        assert importance[FEATS[0]] == 0.0


def test_constant_regression_target_is_refused(database, settings, frame, tmp_path):
    frame["point_diff"] = 4
    path = tmp_path / "flat.csv"
    frame.to_csv(path, index=False)
    _refused(database, settings, path, "target 'point_diff' is constant", make=reg_config)


def test_rare_class_below_cv_folds_is_refused(database, settings, frame, tmp_path):
    frame["home_win"] = 0
    frame.loc[[0, 1], "home_win"] = 1
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    _refused(database, settings, path, "has only 2 rows; cv_folds=3 needs at least 4")


def test_ragged_rows_are_a_parse_error(database, settings, frame, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(frame.to_csv(index=False) + "1,2,3," + ",".join(["9"] * 60) + "\n")
    _refused(database, settings, path, "cannot be parsed")
