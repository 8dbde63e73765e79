"""Which run answers a prediction: model references as clients give them (like MLflow's ``models:/name@alias``).

A reference is one of:

- ``NAME``: the run of ``NAME`` in ``production`` if there is one, else the config's current run (its latest
  training). So once a run is promoted, a retrain never changes what ``NAME`` serves;
- ``NAME@production`` (refused when nothing is in production), ``NAME@staging`` (the highest version in
  staging), ``NAME@latest`` (the highest version), ``NAME@1.2.0``;
- a run id (``20261203_101500_1a2b3c4d``).

The entry points that use a model (the predict API, ``cli predict``, ``models deploy-export``) resolve through
:func:`resolve_model`, and every answer names the run id and version that answered (:meth:`Served.describe`).
Ensembles have references too (``NAME``, ``NAME@production``, ``NAME@3``, a version's run id;
:func:`resolve_ensemble`), and their base models are pinned by model reference at creation. The resolvers
live in :mod:`models.store.references` (pure store lookups, usable by the ensembles room); this module is
the registry's name for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from models.settings import Settings
from models.store.references import (
    ENSEMBLE_REFERENCE_HELP,
    REFERENCE_HELP,
    SELECTORS,
    SERVED_WORDS,
    Served,
    find_ensemble_reference,
    resolve_ensemble,
    resolve_model,
    split_ensemble_reference,
    split_reference,
)

__all__ = [
    "ENSEMBLE_REFERENCE_HELP",
    "REFERENCE_HELP",
    "SELECTORS",
    "SERVED_WORDS",
    "Served",
    "ServingCache",
    "find_ensemble_reference",
    "resolve_ensemble",
    "resolve_model",
    "serving_cache",
    "split_ensemble_reference",
    "split_reference",
]


T = TypeVar("T")


class ServingCache:
    """What references resolved to, kept ``SERVING_CACHE_MS`` (default 1 s) for the predict routes.

    A predict request would otherwise read the registry 4-5 times to learn which run answers (the production
    run, the config's current run, the ensemble version) before predicting from a model already in memory;
    that was a quarter of its time (bench/serving_profile.py). Within the window the same reference is served
    by the same run without a database read; a promotion, retrain or deletion made through this process
    clears the cache at once (the web app does so after every successful change), one made elsewhere (the CLI,
    another machine) is served at most ``SERVING_CACHE_MS`` later. Errors (unknown names) are never cached.
    """

    MAX_ENTRIES = 4096

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        """The value cached for ``key`` if still fresh, else ``make()`` (cached when it returns)."""
        if self.seconds <= 0:
            return make()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = make()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self.seconds, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_caches: dict[tuple[str, str], ServingCache] = {}
_caches_lock = threading.Lock()


def serving_cache(settings: Settings) -> ServingCache:
    """This process's serving cache for the database ``settings`` names."""
    key = (settings.effective_mongo_uri, settings.mongo_db)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None or cache.seconds != settings.serving_cache_ms / 1000:
            cache = _caches[key] = ServingCache(settings.serving_cache_ms / 1000)
        return cache
