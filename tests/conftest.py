"""Shared fixtures: a real MongoDB-compatible server over the wire, isolated per test.

When ``MONGO_URI`` is set, tests use that server; otherwise one embedded
server is started for the session on a free port with a temporary storage
path. Each test gets its own database name and artifact folder.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from models.artifacts.signing import new_private_key_text
from models.demo import write_games_csv
from models.settings import PROJECT_ROOT, Settings, get_settings
from models.store.db import Database
from models.store.embedded import EmbeddedServer, free_port
from tests.helpers import AUTH, PASSWORD, TOKEN

SMALL_GAMES = 1500


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = os.environ.get("MONGO_URI")
    if uri:
        yield uri
        return
    root = tmp_path_factory.mktemp("mongo")
    server = EmbeddedServer(storage_path=root / "data", port=free_port(), run_dir=root)
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def data_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[str, Path], ...]:
    """Training CSVs live under pytest's temporary folder (and the project's data/ and the tracked test
    fixtures): the DATA_ROOTS of every test, in-process and in the subprocesses it starts (they inherit
    the environment)."""
    roots = (
        ("pytest", tmp_path_factory.getbasetemp()),
        ("project", PROJECT_ROOT / "data"),
        ("fixtures", PROJECT_ROOT / "tests" / "fixtures"),
    )
    with session_env(DATA_ROOTS=os.pathsep.join(f"{name}={folder}" for name, folder in roots)):
        yield roots


@pytest.fixture(scope="session", autouse=True)
def signing_key() -> str:
    """One artifact signing key for the session, as one deployment has (README: Trust): in-process
    settings and every subprocess (CLI runs, Dask workers, "other machines") sign and verify with it."""
    key = new_private_key_text()
    with session_env(ARTIFACT_SIGNING_KEY=key):
        yield key


@contextmanager
def session_env(**values: str):
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def games_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo data set shared by the whole session (read-only for tests)."""
    return write_games_csv(tmp_path_factory.mktemp("data") / "games.csv", n_games=SMALL_GAMES)


@pytest.fixture
def settings(
    mongo_uri: str, tmp_path: Path, data_roots: tuple[tuple[str, Path], ...], signing_key: str
) -> Settings:
    return Settings.from_env({}).with_(
        mongo_uri=mongo_uri,
        mongo_db=f"test_{uuid.uuid4().hex[:12]}",
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        var_dir=tmp_path / "var",
        data_roots=data_roots,
        artifact_signing_key=signing_key,
        server_selection_timeout_ms=3000,
        # tests change the registry from other processes and predict at once; tests/test_serving_cache.py
        # tests the cache itself
        serving_cache_ms=0,
    )


@pytest.fixture
def database(settings: Settings):
    db = Database.connect(settings)
    yield db
    db.client.drop_database(settings.mongo_db)
    db.close()


@pytest.fixture
def app(settings, database):
    """The web app with known credentials (``tests.helpers.PASSWORD`` / ``TOKEN``)."""
    from web import create_app

    return create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)


@pytest.fixture
def api(app):
    """``api(method, path, body=None, auth=True)``: an API call with the bearer token."""
    client = app.test_client()

    def call(method: str, path: str, body: Any = None, auth: bool = True, **kw):
        return client.open(path, method=method, json=body, headers=AUTH if auth else {}, **kw)

    return call


@pytest.fixture
def page(app):
    """A test client logged in to the pages."""
    from web.testing import login

    client = app.test_client()
    assert login(client, PASSWORD).status_code == 302
    return client


@pytest.fixture
def other(settings: Settings, tmp_path: Path):
    """A second, empty installation on the same server: its own database and artifact folder (imports land there)."""
    import uuid

    fresh = settings.with_(mongo_db=f"test_{uuid.uuid4().hex[:12]}", artifact_dir=tmp_path / "other_artifacts")
    db = Database.connect(fresh)
    yield db
    db.client.drop_database(fresh.mongo_db)
    db.close()
