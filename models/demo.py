"""Deterministic demo data: NBA-like games and a set of configs that train on them.

The games come from a small simulation, so the features carry real signal:
team strength drifts through a season, ratings are noisy views of it, rest
days matter, and home teams win about 58% of the time.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.artifacts.atomic import atomic_write_bytes
from models.store.configs import ConfigStore
from models.store.datarefs import to_stored
from models.store.db import Database

N_TEAMS = 30
GAMES_PER_SEASON = 1230
FEATURES = [
    "home_win_pct_last10",
    "away_win_pct_last10",
    "home_rest_days",
    "away_rest_days",
    "home_off_rating",
    "away_off_rating",
    "home_def_rating",
    "away_def_rating",
    "home_elo",
    "away_elo",
    "home_back_to_back",
    "away_back_to_back",
]
TARGETS = {"classification": "home_win", "regression": "point_diff"}
DEMO_CSV = "data/nba_games.csv"


def generate_games(n_games: int = 24_600, seed: int = 7) -> pd.DataFrame:
    """``n_games`` simulated games; the same ``seed`` gives the same frame, byte for byte."""
    if n_games < 1:
        raise ValueError("n_games must be at least 1")
    rng = np.random.default_rng(seed)
    n_seasons = -(-n_games // GAMES_PER_SEASON)
    rows: list[tuple] = []
    for season in range(n_seasons):
        year = 2025 - n_seasons + season
        strength = rng.normal(0.0, 4.0, N_TEAMS)
        elo = np.full(N_TEAMS, 1500.0)
        last10 = [deque(maxlen=10) for _ in range(N_TEAMS)]
        last_day = np.full(N_TEAMS, -10)
        off_skill = 110 + rng.normal(0, 3, N_TEAMS)
        def_skill = 110 + rng.normal(0, 3, N_TEAMS)
        start = pd.Timestamp(f"{year}-10-20")
        for g in range(min(GAMES_PER_SEASON, n_games - len(rows))):
            day = g * 170 // GAMES_PER_SEASON
            home, away = rng.choice(N_TEAMS, size=2, replace=False)
            strength += rng.normal(0.0, 0.02, N_TEAMS)
            rest_h = int(min(day - last_day[home], 5))
            rest_a = int(min(day - last_day[away], 5))
            form = [np.mean(last10[t]) if last10[t] else 0.5 for t in (home, away)]
            ratings = [off_skill[t] + strength[t] * 0.8 + rng.normal(0, 1.5) for t in (home, away)]
            defs = [def_skill[t] - strength[t] * 0.8 + rng.normal(0, 1.5) for t in (home, away)]
            margin = (
                2.8
                + (strength[home] - strength[away])
                + 0.9 * (rest_h - rest_a)
                + (ratings[0] - defs[1]) * 0.15
                - (ratings[1] - defs[0]) * 0.15
                + rng.normal(0.0, 11.0)
            )
            diff = int(round(margin)) or (1 if rng.random() < 0.55 else -1)
            home_win = int(diff > 0)
            rows.append(
                (
                    f"{year}-{year + 1 - 2000:02d}",
                    (start + pd.Timedelta(days=day)).date().isoformat(),
                    f"T{home:02d}",
                    f"T{away:02d}",
                    round(form[0], 3),
                    round(form[1], 3),
                    rest_h,
                    rest_a,
                    round(ratings[0], 2),
                    round(ratings[1], 2),
                    round(defs[0], 2),
                    round(defs[1], 2),
                    round(elo[home], 1),
                    round(elo[away], 1),
                    int(rest_h == 1),
                    int(rest_a == 1),
                    home_win,
                    diff,
                )
            )
            expected = 1 / (1 + 10 ** ((elo[away] - elo[home] - 60) / 400))
            elo[home] += 20 * (home_win - expected)
            elo[away] -= 20 * (home_win - expected)
            last10[home].append(home_win)
            last10[away].append(1 - home_win)
            last_day[home] = last_day[away] = day
    columns = ["season", "game_date", "home_team", "away_team", *FEATURES, "home_win", "point_diff"]
    return pd.DataFrame(rows, columns=columns)


def drifting_series(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A target that drifts with time (a trend plus noise), one row per day, the rows shuffled so that only
    the ``day`` column (day first: ``31/01/2024``) orders them: what a shuffled split flatters most."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frame = pd.DataFrame(
        {
            "day": (pd.Timestamp("2024-01-01") + pd.to_timedelta(t, unit="D")).strftime("%d/%m/%Y"),
            "t": t.astype(float),
            "x": rng.normal(size=n),
            "y": 0.02 * t + rng.normal(scale=0.3, size=n),
        }
    )
    return frame.sample(frac=1.0, random_state=seed)


def write_games_csv(path: Path, n_games: int = 24_600, seed: int = 7) -> Path:
    """Write the demo games to ``path`` atomically and return it."""
    frame = generate_games(n_games, seed)
    atomic_write_bytes(path, frame.to_csv(index=False).encode())
    return path


def demo_configs(training_csv: str = DEMO_CSV) -> list[dict[str, Any]]:
    """Configs across model types and both tasks, all on the same games and folds (so they stack)."""
    base_cls = {
        "task": "classification",
        "target": "home_win",
        "features": FEATURES[:8],
        "training_csv": training_csv,
        "cv_folds": 5,
        "random_state": 42,
        "tags": ["nba", "demo"],
        # games are validated in time order: each fold is scored on later games than it was fitted on,
        # and the held-out games are the last ones (a shuffled split would let the future leak in)
        "split": "time",
        "time_column": "game_date",
    }
    base_reg = {**base_cls, "task": "regression", "target": "point_diff"}
    return [
        {
            **base_cls,
            "name": "home_win_logreg",
            "model_type": "logistic_regression",
            "hyperparameters": {"C": 1.0},
            "description": "Baseline: logistic regression on team form",
        },
        {
            **base_cls,
            "name": "home_win_rf",
            "model_type": "random_forest",
            "hyperparameters": {"n_estimators": 150, "max_depth": 10, "min_samples_leaf": 3},
            "description": "Random forest on team form and ratings",
        },
        {
            **base_cls,
            "name": "home_win_hgb",
            "model_type": "hist_gradient_boosting",
            "hyperparameters": {"max_iter": 150, "learning_rate": 0.05},
            "scaler": "none",
            "description": "Histogram gradient boosting",
        },
        {
            **base_cls,
            "name": "home_win_nb",
            "model_type": "naive_bayes",
            "calibration": "sigmoid",
            "description": "Gaussian naive Bayes, sigmoid-calibrated",
        },
        {
            **base_cls,
            "name": "home_win_lgbm",
            "model_type": "lightgbm",
            "features": [*FEATURES[:8], "home_team", "away_team"],
            "hyperparameters": {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15},
            "scaler": "none",
            "description": "LightGBM on team form plus the teams themselves (categorical columns)",
        },
        {
            **base_reg,
            "name": "point_diff_ridge",
            "model_type": "ridge",
            "hyperparameters": {"alpha": 1.0},
            "description": "Point differential, ridge regression",
        },
        {
            **base_reg,
            "name": "point_diff_rf",
            "model_type": "random_forest",
            "hyperparameters": {"n_estimators": 100, "max_depth": 8},
            "scaler": "none",
            "description": "Point differential, random forest",
        },
        {
            **base_reg,
            "name": "point_diff_hgb",
            "model_type": "hist_gradient_boosting",
            "hyperparameters": {"max_iter": 100},
            "scaler": "none",
            "description": "Point differential, histogram gradient boosting",
        },
        {
            **base_reg,
            "name": "point_diff_xgb",
            "model_type": "xgboost",
            "hyperparameters": {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.05},
            "scaler": "none",
            "description": "Point differential, XGBoost",
        },
    ]


def install_demo(database: Database, *, games: int = 24_600, force: bool = False) -> dict[str, Any]:
    """Write the games CSV into ``DATA_DIR`` (unless present) and add the demo configs that are missing."""
    settings = database.settings
    path = settings.data_dir / Path(DEMO_CSV).name
    if force or not path.exists():
        write_games_csv(path, games)
    rows = sum(1 for _ in open(path, "rb")) - 1
    store = ConfigStore(database)
    added, kept = [], []
    for cfg in demo_configs(to_stored(str(path), settings)):
        existing = store.find(cfg["name"])
        if existing is None:
            store.create(cfg)
            added.append(cfg["name"])
        elif force:
            store.update(existing["_id"], {k: v for k, v in cfg.items() if k != "name"})
            added.append(cfg["name"])
        else:
            kept.append(cfg["name"])
    return {"csv": str(path), "rows": rows, "added": added, "kept": kept}
