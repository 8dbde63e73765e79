"""Reading training data at scale (issue 27): one read, the SHA-256 on the way, and Parquet files.

The one-pass reader (pandas' parser, the SHA-256 fed beside it) must give exactly the frame the whole-text
``pandas.read_csv`` gave (types, values, blanks, rows) and the same SHA-256, or hand the file to that path; a
Parquet file trains like the CSV of the same data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math

import numpy as np
import pandas as pd
import pytest

from models.errors import DataError, ValidationError
from models.store.columns import data_problems, read_header
from models.store.configs import ConfigStore
from models.tabular import read_csv_hashed
from models.training.data import load_training_data
from models.training.estimate import count_rows
from models.training.train import train_config


def pandas_frame(raw: bytes) -> pd.DataFrame:
    """What the loader gave before the one-pass reader: the whole text decoded, then pandas."""
    return pd.read_csv(io.StringIO(raw.decode("utf-8-sig")), low_memory=False)


def assert_same_frame(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert got.index.equals(expected.index)
    for column in expected.columns:
        assert repr(got[column].dtype) == repr(expected[column].dtype), column
        for a, b in zip(expected[column].tolist(), got[column].tolist()):
            assert type(a) is type(b), (column, a, b)
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (column, a, b)


CSVS = {
    "numbers": "a,b,c\n1,2.5,x\n3,-4.25e-3,y\n5,1e5,z\n",
    "bom_crlf_blank_lines": "\ufeffa,b\r\n\r\n1,x\r\n\r\n3,y\r\n",
    "quoted": 'a,b\n"1","he said ""hi"", ok"\n2,"two\nlines"\n3,"a,b"\n',
    "strings_booleans_blanks": "a,b,c,d\nTrue,1,,x\nFalse,,NA,\nTRUE,3,null,None\n",
    "mixed_types": "a,b\n1,x\n2,3\nfoo,4\n",
    "dates_and_times": "t,v\n2020-01-01,1\n2020-01-02 10:00,2\n,3\n",
    "times_only": "t,v\n10:00,1\n11:00:30,2\n",
    "numbers_padded_with_spaces": "a,b\n 1.5,2\n2.5 ,3\n",
    "integers_with_plus": "a,b\n+1,2\n2,3\n",
    "hexadecimal": "a,b\n0x1F,1\n2,2\n",
    "inf_and_nan_words": "a,b\ninf,1\nNAN,2\n",
    "beyond_int64": "a,b\n18446744073709551615,1\n2,2\n",
    "duplicate_and_empty_names": "a,a,\n1,2,3\n",
    "single_column_with_space_lines": "a\n1\n   \n3\n",
    "no_trailing_newline": "a,b\n1,2",
    "late_type_change": "a,b\n" + "".join(f"{i},{i}\n" for i in range(60_000)) + "word,2.5\n",
    "long_digits": "a\n0.123456789012345678901234\n4.9406564584124654e-324\n",
    # pandas' chunked read types each chunk on its own: numbers first, a word after the first chunk
    "type_change_after_a_chunk": "a\n" + "1\n" * 600_000 + "word\n",
}


@pytest.mark.parametrize("name", sorted(CSVS))
def test_the_csv_reader_gives_the_frame_and_hash_pandas_gave(tmp_path, name):
    raw = CSVS[name].encode()
    path = tmp_path / f"{name}.csv"
    path.write_bytes(raw)
    frame, sha = read_csv_hashed(path)
    if frame is None:  # handed to the whole-text path: only a column whose type changes along the file
        assert name == "type_change_after_a_chunk", name
        return
    assert sha == hashlib.sha256(raw).hexdigest()
    assert_same_frame(pandas_frame(raw), frame)


def test_the_common_files_are_read_in_one_pass_not_handed_back(tmp_path):
    for name in sorted(set(CSVS) - {"type_change_after_a_chunk"}):
        path = tmp_path / f"{name}.csv"
        path.write_text(CSVS[name])
        assert read_csv_hashed(path)[0] is not None, name


def mixed_frame(rows: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.standard_normal(rows),
            "x2": rng.integers(0, 50, rows),
            "colour": rng.choice(["red", "green", "blue"], rows),
            "flag": rng.choice([True, False], rows),
            "day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
        }
    )
    frame["y"] = ((frame["x1"] + (frame["colour"] == "red")) > 0.3).astype(int)
    frame.loc[[4, 17], "x1"] = np.nan
    frame.loc[[8], "colour"] = np.nan
    frame.loc[[30, 31], "y"] = np.nan  # dropped rows: counted
    return frame


def config_for(name: str, training_csv: str, **extra) -> dict:
    return {
        "name": name,
        "task": "classification",
        "model_type": "logistic_regression",
        "features": ["x1", "x2", "colour", "flag"],
        "target": "y",
        "training_csv": training_csv,
        "cv_folds": 3,
        "random_state": 5,
        **extra,
    }


def test_the_loader_keeps_the_hash_rows_types_and_fingerprint_of_the_pandas_path(tmp_path, settings, monkeypatch):
    path = tmp_path / "mixed.csv"
    mixed_frame().to_csv(path, index=False)
    config = config_for("m", str(path), split="time", time_column="day")
    fast = load_training_data(config, settings)
    monkeypatch.setattr("models.training.data.read_csv_hashed", lambda p: (None, None))  # the pandas path
    slow = load_training_data(config, settings)
    assert fast.file_sha256 == slow.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fast.fingerprint("y") == slow.fingerprint("y")
    assert (fast.rows_read, fast.rows_used, fast.rows_dropped) == (
        slow.rows_read,
        slow.rows_used,
        slow.rows_dropped,
    )
    assert (slow.rows_read, slow.rows_used, slow.rows_dropped) == (120, 118, 2)
    assert fast.feature_types == slow.feature_types and fast.blank_cells == slow.blank_cells
    pd.testing.assert_frame_equal(fast.X, slow.X)
    assert np.array_equal(fast.y, slow.y) and fast.y.dtype == slow.y.dtype
    assert np.array_equal(fast.split_values, slow.split_values)
    assert fast.split_labels.tolist() == slow.split_labels.tolist()


def test_bad_csvs_keep_their_messages(tmp_path, settings):
    cases = {
        "empty.csv": (b"  \n", "is empty"),
        "latin1.csv": ("a,y\ncaf\xe9,1\n".encode("latin-1"), "is not UTF-8 text (byte 7 is invalid)"),
        "ragged.csv": (b"a,y\n1,2\n1,2,3\n", "cannot be parsed"),
        "header.csv": (b"x1,x2,colour,flag,y\n", "has a header but no rows"),
    }
    for name, (raw, message) in cases.items():
        (tmp_path / name).write_bytes(raw)
        config = config_for(name, str(tmp_path / name), features=["a"]) if name != "header.csv" else None
        config = config or config_for(name, str(tmp_path / name))
        with pytest.raises(DataError) as caught:
            load_training_data(config, settings)
        assert message in caught.value.message and repr(str(tmp_path / name)) in caught.value.message, (
            name,
            caught.value.message,
        )


def test_a_parquet_file_trains_like_the_csv_of_the_same_data(database, tmp_path):
    frame = mixed_frame()
    csv, parquet = tmp_path / "same.csv", tmp_path / "same.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    store = ConfigStore(database)
    a = store.create(config_for("from_csv", str(csv)))
    b = store.create(config_for("from_parquet", str(parquet)))
    assert (
        a["feature_types"]
        == b["feature_types"]
        == {
            "x1": "numeric",
            "x2": "numeric",
            "colour": "categorical",
            "flag": "numeric",
        }
    )
    assert read_header(parquet) == list(frame.columns)
    assert count_rows(str(parquet)) == count_rows(str(csv)) == 120
    run_csv, run_parquet = train_config(database, "from_csv"), train_config(database, "from_parquet")
    assert run_parquet["data"]["file_sha256"] == hashlib.sha256(parquet.read_bytes()).hexdigest()
    for key in ("rows_read", "rows_used", "rows_dropped", "n_train", "n_test", "class_distribution"):
        assert run_parquet["data"][key] == run_csv["data"][key], key
    assert run_parquet["metrics"] == run_csv["metrics"]
    assert run_parquet["cv"] == run_csv["cv"]


def test_a_parquet_time_split_orders_rows_like_the_csv(settings, tmp_path):
    frame = mixed_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.pq", index=False)
    extra = {"split": "time", "time_column": "day"}
    from_csv = load_training_data(config_for("t", str(tmp_path / "t.csv"), **extra), settings)
    from_pq = load_training_data(config_for("t", str(tmp_path / "t.pq"), **extra), settings)
    assert np.array_equal(from_csv.split_values, from_pq.split_values)
    assert np.array_equal(from_csv.kept_rows, from_pq.kept_rows)
    pd.testing.assert_frame_equal(from_csv.X, from_pq.X)


def test_a_bad_parquet_file_is_refused_naming_it_and_nothing_is_written(database, tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    name = str(bad)
    problems = data_problems(config_for("bad", name))
    assert problems and problems[0]["field"] == "training_csv"
    assert f"training Parquet file {name!r} is not a readable Parquet file" in problems[0]["message"]
    with pytest.raises(ValidationError) as caught:
        ConfigStore(database).create(config_for("bad", name))
    assert name in caught.value.message and "Traceback" not in caught.value.message
    assert database.configs.count_documents({}) == 0
    with pytest.raises(DataError) as loaded:
        load_training_data(config_for("bad", name), database.settings)
    assert loaded.value.message.startswith(f"training Parquet file {name!r} is not a readable Parquet file")
    assert count_rows(name) is None


def test_a_parquet_file_missing_a_column_is_refused_at_save(database, tmp_path):
    path = tmp_path / "cols.parquet"
    mixed_frame().drop(columns=["colour"]).to_parquet(path, index=False)
    with pytest.raises(ValidationError, match="feature 'colour' is not a column of"):
        ConfigStore(database).create(config_for("cols", str(path)))
    assert database.configs.count_documents({}) == 0


def test_the_fallback_is_logged(tmp_path, caplog):
    path = tmp_path / "late.csv"
    path.write_text(CSVS["type_change_after_a_chunk"])
    with caplog.at_level(logging.INFO, logger="models.tabular"):
        assert read_csv_hashed(path) == (None, None)
    assert "late.csv is read again, as a whole" in caplog.text and "type changes" in caplog.text
