"""Async drivers of :mod:`models.ensembles` for callers that run an event loop.

Database reads and writes (configs, the training claim, the ensemble
document) go through pymongo's ``AsyncMongoClient``; CPU and file work
(loading and verifying artifacts, retraining, fitting the meta-model,
writing files) runs in worker threads via ``asyncio.to_thread``, so the loop
is never blocked. The steps themselves are the synchronous module's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import ModelCache
from models.artifacts.lease import ArtifactLease
from models.artifacts.routing import get_store
from models.ensembles.base_models import (
    BaseModelResult,
    BaseModelsError,
    artifacts_changed,
    fast_load,
    find_configs,
    retrain,
    train_lock_key,
)
from models.ensembles.build import (
    build_ensemble,
    ensemble_exists,
    finish_record,
    remove_files,
    write_ensemble_files,
)
from models.ensembles.compat import check_compatible, check_names, check_request, config_fingerprint
from models.errors import ArtifactError, NotFoundError, ServiceError
from models.progress import Progress, no_progress, scaled
from models.settings import Settings
from models.store.configs import config_filter
from models.store.db import Database
from models.store.locks import AsyncMongoLock

log = logging.getLogger(__name__)


class AsyncDatabase:
    """The project's collections on an ``AsyncMongoClient`` (same names as :class:`models.store.db.Database`)."""

    def __init__(self, settings: Settings, client: AsyncMongoClient | None = None) -> None:
        self.settings = settings
        self.client = client or AsyncMongoClient(
            settings.effective_mongo_uri,
            tz_aware=True,
            serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        )
        self.db = self.client[settings.mongo_db]

    @property
    def configs(self) -> Any:
        return self.db[self.settings.config_collection]

    @property
    def ensembles(self) -> Any:
        return self.db[self.settings.ensembles_collection]

    @property
    def locks(self) -> Any:
        return self.db[self.settings.locks_collection]

    async def close(self) -> None:
        await self.client.close()


async def afetch_configs(adb: AsyncDatabase, names: list[Any]) -> list[dict[str, Any]]:
    docs = await asyncio.gather(*(adb.configs.find_one(config_filter(n)) for n in names))
    return find_configs(dict(zip(names, docs)), names)


async def aobtain_base_model(
    adb: AsyncDatabase,
    database: Database,
    config: dict[str, Any],
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    progress: Progress = no_progress,
    lock_timeout: float | None = None,
    load_model_object: bool = True,
) -> BaseModelResult:
    """:func:`models.ensembles.obtain_base_model` with the claim and config reads on the async client."""
    settings = adb.settings
    t0 = time.perf_counter()
    try:
        model, source, oof = await asyncio.to_thread(
            fast_load,
            settings,
            config,
            store=store,
            cache=cache,
            need_oof=need_oof,
            load_model_object=load_model_object,
        )
        return BaseModelResult(
            config["name"],
            config["_id"],
            config["run_id"],
            model,
            source,
            time.perf_counter() - t0,
            config=config,
            oof=oof,
        )
    except ArtifactError as exc:
        problem = exc
    async with AsyncMongoLock(
        adb.locks, train_lock_key(config), ttl_seconds=settings.lock_ttl_seconds, timeout=lock_timeout
    ) as claim:
        fresh = await adb.configs.find_one({"_id": config["_id"]})
        if fresh is None:
            raise NotFoundError(f"config {config.get('name')!r} no longer exists", field="name")
        if artifacts_changed(config, fresh):
            try:
                model, source, oof = await asyncio.to_thread(
                    fast_load,
                    settings,
                    fresh,
                    store=store,
                    cache=cache,
                    need_oof=need_oof,
                    load_model_object=load_model_object,
                )
                return BaseModelResult(
                    fresh["name"],
                    fresh["_id"],
                    fresh["run_id"],
                    model,
                    source,
                    time.perf_counter() - t0,
                    reason=problem.reason,
                    detail=problem.message,
                    waited_seconds=claim.waited_seconds,
                    config=fresh,
                    oof=oof,
                )
            except ArtifactError as again:
                problem = again
        fresh = await asyncio.to_thread(retrain, database, fresh, problem, store=store, progress=progress)
        model, _, oof = await asyncio.to_thread(
            fast_load,
            settings,
            fresh,
            store=store,
            cache=cache,
            need_oof=need_oof,
            load_model_object=load_model_object,
        )
    return BaseModelResult(
        fresh["name"],
        fresh["_id"],
        fresh["run_id"],
        model,
        "retrained",
        time.perf_counter() - t0,
        reason=problem.reason,
        detail=problem.message,
        waited_seconds=claim.waited_seconds,
        config=fresh,
        oof=oof,
    )


async def aload_base_models(
    adb: AsyncDatabase,
    database: Database,
    names: Any,
    *,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    need_oof: bool = False,
    progress: Progress = no_progress,
    lock_timeout: float | None = None,
    load_model_object: bool = True,
) -> list[BaseModelResult]:
    """Every named base model, obtained concurrently; every failure reported at once."""
    names = check_names(names if isinstance(names, (str, list, tuple)) else list(names))
    configs = await afetch_configs(adb, names)
    store = store or get_store(adb.settings)
    done = 0

    async def one(i: int, config: dict[str, Any]) -> BaseModelResult:
        nonlocal done
        step = scaled(progress, i / len(configs), (i + 1) / len(configs))
        res = await aobtain_base_model(
            adb,
            database,
            config,
            store=store,
            cache=cache,
            need_oof=need_oof,
            progress=lambda f, m: step(f, f"{config['name']}: retraining: {m}"),
            lock_timeout=lock_timeout,
            load_model_object=load_model_object,
        )
        done += 1
        progress(
            done / len(configs),
            f"{res.name}: {res.source}" + (f" ({res.reason})" if res.reason else "") + f" in {res.seconds:.2f}s",
        )
        return res

    outcomes = await asyncio.gather(*(one(i, c) for i, c in enumerate(configs)), return_exceptions=True)
    failures = []
    for config, out in zip(configs, outcomes):
        if isinstance(out, ServiceError):
            failures.append(
                {"name": config["name"], "code": out.code, "message": out.message, "details": out.details}
            )
        elif isinstance(out, BaseException):
            raise out
    if failures:
        raise BaseModelsError(failures)
    return list(outcomes)  # type: ignore[arg-type]


async def acreate_ensemble(
    adb: AsyncDatabase,
    database: Database,
    name: str,
    base_models: list[Any],
    meta_model: str = "logistic_regression",
    *,
    passthrough: bool = False,
    stack_method: str = "auto",
    meta_params: dict[str, Any] | None = None,
    description: str = "",
    progress: Progress = no_progress,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    lock_timeout: float | None = None,
) -> dict[str, Any]:
    """:func:`models.ensembles.create_ensemble` for an event loop (same checks, same result)."""
    started = time.perf_counter()
    request = check_request(name, base_models, meta_model, passthrough, stack_method, meta_params, description)
    settings = adb.settings
    store = store or get_store(settings)
    if await adb.ensembles.find_one({"name": request.name}, {"_id": 1}):
        raise ensemble_exists(request.name)
    progress(0.0, "checking base models")
    configs = await afetch_configs(adb, request.base_models)
    fingerprints = await asyncio.to_thread(lambda: [config_fingerprint(c, settings) for c in configs])
    check_compatible(configs, fingerprints, request)
    check_s = time.perf_counter() - started
    t_load = time.perf_counter()
    results = await aload_base_models(
        adb,
        database,
        [c["_id"] for c in configs],
        store=store,
        cache=cache,
        need_oof=True,
        progress=scaled(progress, 0.05, 0.85),
        lock_timeout=lock_timeout,
        load_model_object=False,
    )
    load_s = time.perf_counter() - t_load
    built = await asyncio.to_thread(
        build_ensemble, request, results, settings, progress=scaled(progress, 0.85, 0.95)
    )
    t_save = time.perf_counter()
    lease = ArtifactLease(database, built.run_id)
    try:
        written = await asyncio.to_thread(write_ensemble_files, store, built, lease)
        try:
            record = finish_record(
                built,
                written,
                started,
                {"check_s": check_s, "load_s": load_s, "save_s": time.perf_counter() - t_save},
            )
            await adb.ensembles.insert_one(record)
        except DuplicateKeyError:
            await asyncio.to_thread(remove_files, store, list(written.values()))
            raise ensemble_exists(request.name) from None
        except BaseException:
            remove_files(store, written.values())
            raise
    finally:
        await asyncio.to_thread(lease.close)
    progress(1.0, "done")
    return record
