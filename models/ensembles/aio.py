"""Async entry points for callers that run an event loop: the synchronous core, driven from threads.

There is one core (:mod:`models.ensembles.base_models`, :mod:`models.ensembles.build`); these
functions run it with ``asyncio.to_thread`` so the loop is never blocked, and load several base
models at once, each in its own thread (their database reads, verification and any retraining job
overlap). Results and messages are the core's own, so sync and async callers see the same thing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from models.ensembles.base_models import BaseModelResult, load_base_models
from models.ensembles.build import create_ensemble
from models.store.db import Database

CONCURRENT_BASES = 8  # base models obtained at once by the async entry points


async def aload_base_models(database: Database, names: Any, **options: Any) -> list[BaseModelResult]:
    """:func:`models.ensembles.base_models.load_base_models` for an event loop; base models concurrently."""
    options.setdefault("concurrency", CONCURRENT_BASES)
    return await asyncio.to_thread(load_base_models, database, names, **options)


async def acreate_ensemble(
    database: Database, name: str, base_models: list[Any], **options: Any
) -> dict[str, Any]:
    """:func:`models.ensembles.build.create_ensemble` for an event loop; base models concurrently."""
    options.setdefault("concurrency", CONCURRENT_BASES)
    return await asyncio.to_thread(create_ensemble, database, name, base_models, **options)
