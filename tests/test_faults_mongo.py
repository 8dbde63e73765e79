"""MongoDB unavailable at start and mid-request: clear errors (API 503 + error shape, a readable page,
one CLI sentence + exit 1), and recovery without restarting anything once the server is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.store.db import Database
from models.store.embedded import EmbeddedServer, free_port
from tests.fault_driver_util import ROOT
from tests.helpers import cls_config
from web import create_app
from web.services import get_state
from web.testing import login

PASSWORD = "mongo-fault-pw"
TOKEN = "mongo-fault-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MONGO_SECRET = "Sup3rSecretMongoPw"


@pytest.fixture
def server(tmp_path):
    srv = EmbeddedServer(storage_path=tmp_path / "mongo", port=free_port(), run_dir=tmp_path)
    yield srv
    srv.stop()


def _own_settings(settings, uri):
    return settings.with_(
        mongo_uri=uri,
        mongo_db=f"mf_{uuid.uuid4().hex[:8]}",
        admin_password=PASSWORD,
        api_token=TOKEN,
        secret_key="k" * 32,
        server_selection_timeout_ms=700,
    )


def _assert_503(response, *, api: bool):
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body
    assert "Traceback" not in body and MONGO_SECRET not in body
    if api:
        error = response.get_json()["error"]
        assert error["code"] == "database_unavailable" and "not reachable" in error["message"]
    else:
        assert "Database unavailable" in body and "<html" in body.lower()


def test_mongo_lost_mid_request_then_back_same_app_recovers(server, settings, games_csv):
    server.start()
    own = _own_settings(settings, server.uri)
    database = Database.connect(own)
    app = create_app(own, database)
    client = app.test_client()
    assert login(client, PASSWORD).status_code == 302
    assert client.post("/api/configs", json=cls_config("before", games_csv), headers=AUTH).status_code == 201

    server.kill_hard()
    _assert_503(client.get("/healthz"), api=True)
    _assert_503(client.get("/api/configs", headers=AUTH), api=True)
    _assert_503(client.post("/api/configs", json=cls_config("while_down", games_csv), headers=AUTH), api=True)
    _assert_503(client.get("/configs/"), api=False)

    server.start()  # same port, same data; the app and its Database object are not touched
    assert get_state(app).database is database
    assert client.get("/healthz").status_code == 200
    listed = client.get("/api/configs", headers=AUTH).get_json()
    assert [c["name"] for c in listed["configs"]] == ["before"]  # the refused write did not happen
    assert client.post("/api/configs", json=cls_config("after", games_csv), headers=AUTH).status_code == 201
    assert client.get("/configs/").status_code == 200
    database.client.drop_database(own.mongo_db)
    database.close()


def test_mongo_down_at_start_then_back_and_indexes_are_created(server, settings, games_csv):
    own = _own_settings(settings, server.uri)
    database = Database.connect(own, require_server=False)  # as `cli serve` connects
    app = create_app(own, database)
    client = app.test_client()
    _assert_503(client.get("/healthz"), api=True)
    _assert_503(client.get("/api/configs", headers=AUTH), api=True)
    assert login(client, PASSWORD).status_code == 302
    _assert_503(client.get("/configs/"), api=False)

    server.start()
    assert client.get("/healthz").status_code == 200
    assert client.post("/api/configs", json=cls_config("x", games_csv), headers=AUTH).status_code == 201
    # the unique indexes were created late, not skipped: a duplicate name is still refused
    response = client.post("/api/configs", json=cls_config("x", games_csv), headers=AUTH)
    assert response.status_code == 409
    assert "name_unique" in database.configs.index_information()
    assert database.configs.count_documents({}) == 1
    database.client.drop_database(own.mongo_db)
    database.close()


def test_cli_says_one_sentence_and_exits_1(server, settings, tmp_path):
    """At start (never reachable) and mid-command (lost after connecting): no traceback, no password."""
    uri = f"mongodb://admin:{MONGO_SECRET}@127.0.0.1:{free_port()}"
    env = {**os.environ, "MONGO_URI": uri, "MONGO_TIMEOUT_MS": "500", "VAR_DIR": str(tmp_path / "var")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "configs", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MongoDB at mongodb://***@127.0.0.1:")
    assert "not reachable" in lines[0] and MONGO_SECRET not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr

    server.start()
    own = settings.with_(mongo_uri=server.uri, server_selection_timeout_ms=500)
    runner = CliRunner()
    ok = runner.invoke(cli, ["configs", "list", "--json"], obj=AppContext(own))
    assert ok.exit_code == 0, ok.output
    ctx = AppContext(own)
    ctx.db  # connected (indexes made) before the server goes away  # noqa: B018
    server.kill_hard()
    lost = runner.invoke(cli, ["configs", "list"], obj=ctx)
    assert lost.exit_code == 1
    text = lost.stderr if hasattr(lost, "stderr") else lost.output
    assert "error: MongoDB at mongodb://127.0.0.1:" in text and "stopped answering" in text
    assert "Topology" not in text and "Traceback" not in text


def _get(url, headers=None, timeout=5.0):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_cli_serve_starts_while_mongo_is_down_and_recovers(server, settings, tmp_path):
    """`python -m cli serve` with MongoDB down at start answers 503, then 200 once it is back (no restart)."""
    port = free_port()
    env = {
        **os.environ,
        "MONGO_URI": server.uri,
        "MONGO_DB": f"serve_{uuid.uuid4().hex[:8]}",
        "MONGO_TIMEOUT_MS": "700",
        "ADMIN_PASSWORD": PASSWORD,
        "API_TOKEN": TOKEN,
        "SECRET_KEY": "s" * 32,
        "VAR_DIR": str(tmp_path / "var"),
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline:
            try:
                status, body = _get(base + "/healthz")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert status == 503 and body["error"]["code"] == "database_unavailable"
        status, body = _get(base + "/api/configs", AUTH)
        assert status == 503 and body["error"]["code"] == "database_unavailable"
        server.start()
        assert _get(base + "/healthz")[0] == 200
        status, body = _get(base + "/api/configs", AUTH)
        assert status == 200 and body["count"] == 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
