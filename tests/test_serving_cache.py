"""The predict routes reuse what a reference resolved to for SERVING_CACHE_MS: no registry reads on a hit, a
change made through the app is served at once, one made elsewhere at most SERVING_CACHE_MS later."""

from __future__ import annotations

import time

import pytest
from pymongo import monitoring

from models import registry
from models.registry.serving import ServingCache, serving_cache
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import AUTH, FEATS, PASSWORD, TOKEN, cls_config
from web import create_app


def test_the_cache_keeps_values_for_its_window_and_never_errors():
    cache, calls = ServingCache(0.2), []

    def make():
        calls.append(1)
        return len(calls)

    assert cache.get("k", make) == 1 and cache.get("k", make) == 1 and len(calls) == 1
    time.sleep(0.25)
    assert cache.get("k", make) == 2  # the window passed: resolved again
    cache.clear()
    assert cache.get("k", make) == 3

    def fails():
        raise LookupError("no such name")

    for _ in range(2):
        with pytest.raises(LookupError):
            cache.get("bad", fails)
    assert ServingCache(0).get("k", make) == 4 and ServingCache(0).get("k", make) == 5  # 0: no cache


class Reads(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


@pytest.fixture
def cached(settings, database, games_csv):
    """The app with a one-minute serving cache, a config trained twice, run A in production."""
    settings = settings.with_(serving_cache_ms=60_000)
    ConfigStore(database).create(cls_config("cached", games_csv))
    a = train_config(database, "cached")
    registry.promote(database, a["run_id"], by="test")
    b = train_config(database, "cached")
    own = Database.connect(settings)  # the app's database carries the app's settings (the cache's window)
    app = create_app(settings.with_(api_token=TOKEN, admin_password=PASSWORD), own)
    client = app.test_client()
    rows = [dict.fromkeys(FEATS, 1.0)]
    yield {"settings": settings, "client": client, "rows": rows, "A": a["run_id"], "B": b["run_id"]}
    serving_cache(settings).clear()
    own.close()


def predict(world, ref="cached"):
    response = world["client"].post(f"/api/predict/model/{ref}", json={"rows": world["rows"]}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_a_cached_reference_is_served_without_registry_reads(cached, database):
    assert predict(cached)["run_id"] == cached["A"]
    listener = Reads()
    monitoring.register(listener)  # applies to clients made from here on: a fresh app and client
    try:
        fresh = Database.connect(cached["settings"])
        app = create_app(cached["settings"].with_(api_token=TOKEN, admin_password=PASSWORD), fresh)
        client = app.test_client()
        first = client.post("/api/predict/model/cached", json={"rows": cached["rows"]}, headers=AUTH)
        assert first.status_code == 200 and first.get_json()["run_id"] == cached["A"]
        listener.commands.clear()
        again = client.post("/api/predict/model/cached", json={"rows": cached["rows"]}, headers=AUTH)
        assert again.status_code == 200 and again.get_json()["run_id"] == cached["A"]
        assert [c for c in listener.commands if c in ("find", "aggregate", "count")] == []
        fresh.close()
    finally:
        monitoring._LISTENERS.command_listeners.remove(listener)


def test_a_change_made_elsewhere_waits_for_the_window_one_made_through_the_app_is_served_at_once(cached, database):
    assert predict(cached)["run_id"] == cached["A"]
    registry.promote(database, cached["B"], by="another process")  # not through this app: A is demoted
    assert predict(cached)["run_id"] == cached["A"]  # within SERVING_CACHE_MS the resolution is reused
    response = cached["client"].post(
        f"/api/registry/runs/{cached['A']}/status", json={"status": "archived"}, headers=AUTH
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert predict(cached)["run_id"] == cached["B"]  # a change through the app: resolved afresh at once
    registry.set_status(database, cached["A"], "staging", by="another process")
    registry.promote(database, cached["A"], by="another process")
    assert predict(cached)["run_id"] == cached["B"]
    serving_cache(cached["settings"]).clear()  # what the window's end does
    assert predict(cached)["run_id"] == cached["A"]
