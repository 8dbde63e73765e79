"""A bounded, thread-safe LRU of loaded models, keyed by ``(run_id, sha256)``.

Keyed by checksum as well as run id, so a run whose files were replaced is
never served from a stale entry. Bounded by entry count and by bytes (the
artifact file sizes, a fair proxy for memory).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from models.settings import Settings


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    items: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ModelCache:
    """LRU cache. ``get`` counts a hit or a miss; ``put`` evicts the least recently used entries."""

    def __init__(self, max_items: int = 64, max_bytes: int = 2 * 1024**3) -> None:
        if max_items < 0 or max_bytes < 0:
            raise ValueError("max_items and max_bytes must be >= 0")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._stats.misses += 1
                return None
            self._data.move_to_end(key)
            self._stats.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        with self._lock:
            if key in self._data:
                self._stats.bytes -= self._data.pop(key)[1]
            if self.max_items == 0 or size > self.max_bytes:
                return  # too big to keep: callers still get their object, it is just not cached
            self._data[key] = (value, size)
            self._stats.bytes += size
            while len(self._data) > self.max_items or self._stats.bytes > self.max_bytes:
                _, (_, old_size) = self._data.popitem(last=False)
                self._stats.bytes -= old_size
                self._stats.evictions += 1

    def get_or_load(self, key: Hashable, loader: Callable[[], tuple[Any, int]]) -> tuple[Any, bool]:
        """``(value, hit)``: the cached value, or ``loader()``'s ``(value, size)`` stored and returned."""
        value = self.get(key)
        if value is not None:
            return value, True
        value, size = loader()
        self.put(key, value, size)
        return value, False

    def discard(self, predicate: Callable[[Hashable], bool]) -> int:
        with self._lock:
            doomed = [k for k in self._data if predicate(k)]
            for k in doomed:
                self._stats.bytes -= self._data.pop(k)[1]
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._stats.bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._stats.hits, self._stats.misses, self._stats.evictions, len(self._data), self._stats.bytes
            )

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data


_caches: dict[tuple[int, int], ModelCache] = {}
_caches_lock = threading.Lock()


def get_model_cache(settings: Settings) -> ModelCache:
    """The process-wide cache for these limits (one per process, shared by every caller)."""
    key = (settings.cache_max_items, settings.cache_max_bytes)
    with _caches_lock:
        if key not in _caches:
            _caches[key] = ModelCache(*key)
        return _caches[key]
