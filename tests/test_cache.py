import threading

import pytest

from models.artifacts.cache import ModelCache
from models.artifacts.loading import load_model
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config


def test_lru_by_count():
    cache = ModelCache(max_items=2, max_bytes=1000)
    cache.put("a", 1, 1)
    cache.put("b", 2, 1)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3, 1)
    assert "b" not in cache and "a" in cache and "c" in cache
    s = cache.stats()
    assert (s.hits, s.evictions, s.items) == (1, 1, 2)


def test_lru_by_bytes():
    cache = ModelCache(max_items=10, max_bytes=100)
    cache.put("a", 1, 60)
    cache.put("b", 2, 60)
    assert "a" not in cache and cache.stats().bytes == 60
    cache.put("huge", 3, 1000)
    assert "huge" not in cache and "b" in cache


def test_counters_and_threads():
    cache = ModelCache(max_items=50, max_bytes=10**6)

    def work(i):
        for j in range(200):
            cache.get_or_load((i, j % 10), lambda j=j: (j, 1))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = cache.stats()
    assert s.hits + s.misses == 8 * 200
    assert s.items <= 50


def test_invalid_limits():
    with pytest.raises(ValueError, match="max_items"):
        ModelCache(max_items=-1)


def test_second_load_is_a_cache_hit(database, settings, games_csv):
    ConfigStore(database).create(cls_config("c", games_csv))
    train_config(database, "c")
    doc = ConfigStore(database).get("c")
    cache = ModelCache()
    first = load_model(settings, doc, cache=cache)
    second = load_model(settings, doc, cache=cache)
    assert (first.source, second.source) == ("artifacts", "cache")
    assert second.model is first.model
    changed = {**doc, "checksums": {**doc["checksums"], "model": "0" * 64}}
    with pytest.raises(ArtifactError, match="signature that does not verify") as err:
        load_model(settings, changed, cache=cache)  # another checksum is another key: no stale hit
    assert err.value.reason == "signature_invalid"
