"""Runs on the same data and folds share one in-memory copy of their row indices, fold ids and targets
(an ensemble of five bases holds one copy, not five); their own predictions stay their own."""

from __future__ import annotations

import numpy as np
import pytest

from models.artifacts.cache import ModelCache
from models.ensembles.base_models import SHARED_SPLIT_ARRAYS, load_oof, share_split_arrays
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config


def test_two_runs_share_their_split_arrays(database, settings, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 5}))
    train_config(database, "lr")
    train_config(database, "rf")
    a = load_oof(settings, store.get("lr"), cache=ModelCache())
    b = load_oof(settings, store.get("rf"), cache=ModelCache())
    shared = [k for k in SHARED_SPLIT_ARRAYS if k in a]
    assert {"train_idx", "test_idx", "fold_ids", "y_train", "y_test"} <= set(shared)
    assert all(a[k] is b[k] for k in shared)
    assert not np.shares_memory(a["oof"], b["oof"]) and a["oof"].shape[0] == len(a["train_idx"])
    with pytest.raises(ValueError, match="read-only"):
        a["y_train"][0] = a["y_train"][0]


def test_different_arrays_are_not_shared():
    x = {"train_idx": np.arange(10), "y_train": np.zeros(10)}
    y = {"train_idx": np.arange(1, 11), "y_train": np.zeros(10)}
    sx, sy = share_split_arrays(x), share_split_arrays(y)
    assert sx["train_idx"] is not sy["train_idx"] and np.array_equal(sy["train_idx"], np.arange(1, 11))
    assert sx["y_train"] is sy["y_train"]
