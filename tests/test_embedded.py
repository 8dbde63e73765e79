import socket

import pytest
from pymongo import MongoClient

from models.errors import EmbeddedServerError
from models.store.embedded import EmbeddedServer, free_port


def test_data_survives_restart(tmp_path):
    server = EmbeddedServer(storage_path=tmp_path / "data", port=free_port(), run_dir=tmp_path)
    server.start()
    try:
        with MongoClient(server.uri) as client:
            client.t.c.insert_one({"k": 1})
        assert server.stop() is True
        assert server.status()["running"] is False
        server.start()
        with MongoClient(server.uri) as client:
            assert client.t.c.find_one({"k": 1}) is not None
    finally:
        server.stop()
    assert not server.pid_file.exists()


def test_port_taken_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        server = EmbeddedServer(storage_path=tmp_path / "data", port=port, run_dir=tmp_path)
        with pytest.raises(EmbeddedServerError, match=f"port {port}"):
            server.start()
    assert not server.pid_file.exists()


def test_missing_binary_is_a_clear_error(tmp_path, monkeypatch):
    import models.store.embedded as embedded

    monkeypatch.setattr(embedded, "BINARY", "no-such-secantusd")
    server = EmbeddedServer(storage_path=tmp_path / "data", port=free_port(), run_dir=tmp_path)
    with pytest.raises(EmbeddedServerError, match="no-such-secantusd.*not found"):
        server.start()


def test_stop_when_not_running(tmp_path):
    server = EmbeddedServer(storage_path=tmp_path / "data", port=free_port(), run_dir=tmp_path)
    assert server.stop() is False
    assert server.status() == {**server.status(), "running": False, "pid": None}
