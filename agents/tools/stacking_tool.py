"""The stacking tool: what scripts, agents and the web app call to build and use ensembles.

A thin façade over :mod:`models.ensembles` (the logic lives there: base_models, build, aio)::

    tool = StackingTool()                      # settings from the environment
    record = tool.create_ensemble("home_win_stack", ["home_win_logreg", "home_win_rf"])
    # no meta_model: scikit-learn's default for the task (record["meta_model_default"] says which)
    for base in record["base_models"]:
        print(base["name"], base["source"], base["reason"], base["seconds"])
    proba = tool.load_ensemble("home_win_stack").predict_proba(frame)
    # lifecycle: re-create as version 2 (bases pinned by reference), promote, serve by reference
    tool.create_ensemble("home_win_stack", ["home_win_logreg@production", "home_win_rf"], new_version=True)
    tool.promote_ensemble("home_win_stack@1", "production")
    answer = tool.predict_answer("home_win_stack@production", frame)  # names run_id, version, served

Ensembles are named by reference everywhere here: ``NAME`` (its production version, else its highest),
``NAME@production``, ``NAME@staging``, ``NAME@latest``, ``NAME@3`` or a version's run id. Base models
are model references (``NAME``, ``NAME@production``, ``NAME@1.2.0``, a run id); each version records
the base runs it used.

Base models come from the in-process cache, else their verified artifacts
(fast path), else they are retrained from their training CSV (slow path,
once, even when several callers need them at the same time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import ModelCache, get_model_cache
from models.artifacts.routing import get_store
from models.ensembles import aio as acore
from models.ensembles import base_models as bases
from models.ensembles import build as core
from models.ensembles import suggest
from models.ensembles import versions as lifecycle
from models.ensembles.base_models import BaseModelResult
from models.ensembles.stacking import StackedEnsemble
from models.errors import ValidationError
from models.progress import Progress, no_progress
from models.settings import Settings, get_settings
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.adopt import adopt_legacy

__all__ = ["BaseModelResult", "StackingTool"]


class StackingTool:
    """Build, load and use stacking ensembles over trained model configs.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to the environment's settings (or ``database.settings``).
    database : Database, optional
        An open database; connected lazily from ``settings`` when omitted.
    store, cache : optional
        Artifact store and model cache; the configured ones by default.
    lock_timeout : float, optional
        Longest wait (seconds) for a training of the same model that another caller runs (the slow
        path joins it instead of training twice); None waits until that training job ends (it is
        bounded by ``TRAIN_TIMEOUT_SECONDS``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        database: Database | None = None,
        *,
        store: ArtifactStore | None = None,
        cache: ModelCache | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        if lock_timeout is not None and lock_timeout < 0:
            raise ValueError(f"lock_timeout must be >= 0 or None, got {lock_timeout!r}")
        self.settings = settings or (database.settings if database is not None else get_settings())
        self._database = database
        self._owns_database = database is None
        self.store = store or get_store(self.settings)
        self.cache = cache or get_model_cache(self.settings)
        self.lock_timeout = lock_timeout

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = Database.connect(self.settings)
        return self._database

    def close(self) -> None:
        if self._database is not None and self._owns_database:
            self._database.close()
            self._database = None

    def __enter__(self) -> StackingTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ base models

    def _load_model_from_config(self, config: dict[str, Any] | str) -> BaseModelResult:
        """One base model: fast path (cache, else verified artifacts), else slow path (retrain once).

        ``config`` is a config document or a config name. The result's ``source`` is ``cache``,
        ``artifacts`` or ``retrained``; ``reason`` says why the fast path failed (``field_missing``,
        ``file_missing``, ``checksum_mismatch``, ``unpickle_error``, ...); ``seconds`` how long it took.
        Raises BaseModelUnavailableError naming the config, the artifact problem and the data problem
        when neither path works.
        """
        if not isinstance(config, dict):
            config = ConfigStore(self.database).get(config)
        return bases.obtain_base_model(
            self.database, config, store=self.store, cache=self.cache, lock_timeout=self.lock_timeout
        )

    def load_base_models(
        self, names: Iterable[str], *, progress: Progress | None = None, with_oof: bool = False
    ) -> list[BaseModelResult]:
        """Every named base model; every failure is reported at once (BaseModelsError)."""
        return bases.load_base_models(
            self.database,
            list(names),
            store=self.store,
            cache=self.cache,
            need_oof=with_oof,
            progress=progress or no_progress,
            lock_timeout=self.lock_timeout,
        )

    # -------------------------------------------------------------- ensembles

    def create_ensemble(
        self,
        name: str,
        base_models: list[str],
        meta_model: str | None = None,
        passthrough: bool = False,
        stack_method: str = "auto",
        progress: Progress | None = None,
        *,
        meta_params: dict[str, Any] | None = None,
        description: str = "",
        new_version: bool = False,
    ) -> dict[str, Any]:
        """Create and store the ensemble ``name``; return its record (with its ``version``).

        ``base_models`` are model references (``NAME``, ``NAME@production``, ``NAME@1.2.0``, a run id);
        the runs used are pinned by run id. ``new_version``: when ``name`` exists, store version N+1
        beside the older ones (without it a taken name is refused).

        ``meta_model``: logistic_regression (classification), linear_regression or ridge_cv
        (regression), ridge, random_forest or gradient_boosting; None (the default): scikit-learn's
        default for the bases' task (logistic_regression for classification, ridge_cv for regression),
        and the record's ``meta_model_default`` says which and why. ``stack_method``: auto,
        predict_proba (classification) or predict. ``passthrough`` also gives the meta-model the raw
        feature columns.
        """
        return core.create_ensemble(
            self.database,
            name,
            base_models,
            meta_model,
            passthrough=passthrough,
            stack_method=stack_method,
            meta_params=meta_params,
            description=description,
            progress=progress or no_progress,
            store=self.store,
            cache=self.cache,
            lock_timeout=self.lock_timeout,
            new_version=new_version,
        )

    def suggest_ensemble(
        self,
        name: str,
        from_configs: list[str] | None = None,
        *,
        all_compatible: bool = False,
        metric: str | None = None,
        size: int | None = None,
        method: str = "greedy",
        meta_model: str | None = None,
        stack_top: int | None = None,
        description: str = "",
        new_version: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Choose and store an ensemble from the candidates' stored out-of-fold predictions; return its record.

        Candidates: ``from_configs`` and, with ``all_compatible``, every trained config sharing their task,
        target, data and folds. ``method``: ``greedy`` (Caruana's selection with replacement for ``size``
        steps; a ``weighted`` ensemble), ``stack`` (``meta_model`` over the ``stack_top`` best) or ``both``
        (the better honest score). ``metric``: log_loss (default), brier, accuracy, roc_auc; rmse (default),
        mae, r2. ``record["selection"]`` holds the steps, the weights and the honest nested score beside the
        best single candidate's on the same rows. ``new_version``: when ``name`` exists, store the suggestion
        as its next version (refused otherwise, naming the flag).
        """
        return suggest.suggest_ensemble(
            self.database,
            name,
            from_configs,
            all_compatible=all_compatible,
            metric=metric,
            size=size,
            method=method,
            meta_model=meta_model,
            stack_top=stack_top,
            description=description,
            new_version=new_version,
            progress=progress or no_progress,
            store=self.store,
            cache=self.cache,
        )

    def adopt_legacy(self, name: str, *, trust: bool = False, progress: Progress | None = None) -> dict[str, Any]:
        """Adopt a reference-system config's files (checksums, out-of-fold predictions) without retraining it.

        Refused unless ``trust`` is True (nothing is read before that: loading a pickle runs code);
        ``file_missing`` when a file is gone. Returns the new run.
        """
        return adopt_legacy(
            self.database,
            name,
            trust=trust,
            requested_by="stacking",
            progress=progress or no_progress,
            store=self.store,
        )

    def load_ensemble(self, ref: str) -> StackedEnsemble:
        """The ensemble version ``ref`` serves as an object with ``predict(frame)`` / ``predict_proba(frame)``;
        its ``served`` names the run id, version and how it was chosen."""
        return core.load_ensemble(self.database, ref, store=self.store, cache=self.cache)

    def get_ensemble(self, ref: str) -> dict[str, Any]:
        return core.get_ensemble(self.database, ref)

    def promote_ensemble(
        self,
        ref: str,
        to: str = "production",
        *,
        by: str | None = "stacking",
        reason: str | None = None,
        demote_to: str = "staging",
    ) -> dict[str, Any]:
        """Move ensemble version ``ref`` (a plain name: its highest version) to ``to`` (production, staging,
        archived, none); promoting demotes the current production version to ``demote_to``."""
        return lifecycle.set_stage(self.database, ref, to, by=by, reason=reason, demote_to=demote_to)

    def ensemble_history(self, name: str) -> dict[str, Any]:
        """Every version of ensemble ``name`` with its stage, creation time, base runs and metrics."""
        return lifecycle.history(self.database, name)

    def list_ensembles(self) -> list[dict[str, Any]]:
        return core.list_ensembles(self.database)

    def delete_ensemble(self, name: str) -> dict[str, Any]:
        return core.delete_ensemble(self.database, name, store=self.store)

    def predict(
        self, ref: str, data: pd.DataFrame | str | Path | list | dict, *, proba: bool = False
    ) -> np.ndarray:
        """Predictions of the ensemble version ``ref`` serves for a DataFrame, records, or a CSV path
        (:meth:`predict_answer` also says which version answered)."""
        data = _frame(data)
        ensemble = self.load_ensemble(ref)
        return ensemble.predict_proba(data) if proba else ensemble.predict(data)

    def predict_answer(self, ref: str, data: pd.DataFrame | str | Path | list | dict) -> dict[str, Any]:
        """``{"ensemble", "run_id", "version", "served", "predictions": [records]}``: the prediction table
        of the version ``ref`` serves, with what answered."""
        data = _frame(data)
        ensemble = self.load_ensemble(ref)
        table = ensemble.predict_table(data)
        return {"ensemble": ensemble.name, **ensemble.served, "predictions": table.to_dict(orient="records")}

    # ------------------------------------------------------------------ async

    async def aload_base_models(
        self, names: Iterable[str], *, progress: Progress | None = None, with_oof: bool = False
    ) -> list[BaseModelResult]:
        """:meth:`load_base_models` for an event loop: the same core in threads, base models at once."""
        database = await asyncio.to_thread(lambda: self.database)  # connecting may start the server
        return await acore.aload_base_models(
            database,
            list(names),
            store=self.store,
            cache=self.cache,
            need_oof=with_oof,
            progress=progress or no_progress,
            lock_timeout=self.lock_timeout,
        )

    async def acreate_ensemble(
        self,
        name: str,
        base_models: list[str],
        meta_model: str | None = None,
        passthrough: bool = False,
        stack_method: str = "auto",
        progress: Progress | None = None,
        *,
        meta_params: dict[str, Any] | None = None,
        description: str = "",
        new_version: bool = False,
    ) -> dict[str, Any]:
        """:meth:`create_ensemble` for an event loop: the same core in threads, base models at once."""
        database = await asyncio.to_thread(lambda: self.database)
        return await acore.acreate_ensemble(
            database,
            name,
            base_models,
            meta_model=meta_model,
            passthrough=passthrough,
            stack_method=stack_method,
            meta_params=meta_params,
            description=description,
            progress=progress or no_progress,
            store=self.store,
            cache=self.cache,
            lock_timeout=self.lock_timeout,
            new_version=new_version,
        )


def _frame(data: pd.DataFrame | str | Path | list | dict) -> pd.DataFrame | list | dict:
    """``data``, a CSV path read into a DataFrame (ValidationError naming ``data`` when it is missing)."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise ValidationError(f"data file {str(data)!r} not found", field="data")
        return pd.read_csv(path)
    return data
