"""Job work that travels as ids: a worker rebuilds it with **its own** settings and database.

A job's work is usually a closure over the submitter's :class:`~models.store.db.Database`;
sent to a Dask worker as it is, the worker would write where the submitting
machine's ``ARTIFACT_STORE``/``ARTIFACT_DIR`` say and connect to its
``MONGO_URI``. :class:`RemoteWork` names the work instead: a function of this
project, given as the function object (``RemoteWork(run_training, {...})``; it
travels as its import path, see :func:`work_path`) and plain keyword arguments
(ids, names, flags). In this process it runs with the database it
was given; on a worker, :func:`run_remote_job` builds ``get_settings()`` from
the worker's environment, connects, and calls the same function. Nothing of
the submitter's settings is pickled.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.progress import Progress
from models.store.db import Database

ALLOWED_PREFIX = "models."


def work_path(fn: Callable[..., Any] | str) -> str:
    """The import path (``"package.module:function"``) of a module-level function of this project;
    a path given as a string is checked and returned as it is."""
    if isinstance(fn, str):
        resolve_target(fn)
        return fn
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not name or "<" in name or "." in name:
        raise ValueError(f"remote work must be a module-level function, got {fn!r}")
    path = f"{module}:{name}"
    if resolve_target(path) is not fn:
        raise ValueError(f"remote work {path} does not resolve back to {fn!r}")
    return path


def resolve_target(target: str) -> Callable[..., Any]:
    """The function ``target`` (``"package.module:function"``) names; only functions of this project."""
    if not isinstance(target, str) or not target.startswith(ALLOWED_PREFIX) or ":" not in target:
        raise ValueError(
            f"remote work must name a function of this project as 'models.<module>:<function>', got {target!r}"
        )
    fn = pkgutil.resolve_name(target)
    if not callable(fn):
        raise ValueError(f"remote work {target!r} is not a function")
    return fn


@dataclass
class RemoteWork:
    """``target(database, progress, **kwargs)`` as a job's work function; pickles as ``target``'s import
    path and ``kwargs``. ``target`` is the function itself (or its import path)."""

    target: Any  # Callable or "package.module:function"; stored as the path
    kwargs: dict[str, Any]
    database: Database | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.target = work_path(self.target)  # a bad target fails at submission, not on a worker

    def __getstate__(self) -> dict[str, Any]:
        return {"target": self.target, "kwargs": self.kwargs, "database": None}

    def bind(self, database: Database) -> RemoteWork:
        """The same work on ``database`` (a worker's own)."""
        return RemoteWork(self.target, dict(self.kwargs), database=database)

    def __call__(self, progress: Progress) -> dict[str, Any] | None:
        if self.database is None:
            raise RuntimeError(f"remote work {self.target} has no database; bind it first")
        return resolve_target(self.target)(self.database, progress, **self.kwargs)
