import hashlib

from models.demo import FEATURES, demo_configs, generate_games, install_demo
from models.store.schema import validate_config


def test_generator_is_deterministic():
    a = generate_games(800, seed=3).to_csv(index=False).encode()
    b = generate_games(800, seed=3).to_csv(index=False).encode()
    c = generate_games(800, seed=4).to_csv(index=False).encode()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert a != c


def test_generated_games_look_like_basketball():
    df = generate_games(3000)
    assert len(df) == 3000
    assert set(FEATURES) <= set(df.columns)
    assert 0.52 < df["home_win"].mean() < 0.66  # home advantage
    assert ((df["point_diff"] > 0) == (df["home_win"] == 1)).all()
    assert df["home_rest_days"].between(0, 5).all()
    assert df["home_win_pct_last10"].between(0, 1).all()


def test_demo_configs_are_valid_and_cover_both_tasks():
    configs = [validate_config(c) for c in demo_configs()]
    assert len(configs) >= 6
    assert {c["task"] for c in configs} == {"classification", "regression"}
    assert len({c["model_type"] for c in configs}) >= 4


def test_install_demo_is_idempotent(database):
    first = install_demo(database, games=600)
    assert first["rows"] == 600 and len(first["added"]) >= 6
    second = install_demo(database, games=600)
    assert second["added"] == [] and sorted(second["kept"]) == sorted(first["added"])
    assert database.configs.count_documents({}) == len(first["added"])
