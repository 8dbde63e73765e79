"""References as clients give them (like MLflow's ``models:/name@alias``): which model run or which
ensemble version answers. Pure store lookups, so that every room above the store resolves them the same
way (the ensembles room pins base models by reference; the registry and the entry points serve them).

A model reference (:func:`resolve_model`) is one of:

- ``NAME``: the run of ``NAME`` in ``production`` if there is one, else the config's current run (its latest
  training). So once a run is promoted, a retrain never changes what ``NAME`` serves;
- ``NAME@production`` (refused when nothing is in production), ``NAME@staging`` (the highest version in
  staging), ``NAME@latest`` (the highest version), ``NAME@1.2.0``;
- a run id (``20261203_101500_1a2b3c4d``).

An ensemble reference (:func:`resolve_ensemble`) is one of:

- ``NAME``: its version in ``production`` if there is one, else its highest version;
- ``NAME@production``, ``NAME@staging`` (the highest version in staging), ``NAME@latest``, ``NAME@3``;
- the run id of one of its versions.

Every prediction answer names what answered (:meth:`Served.describe`: run id, version, how it was chosen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from models.errors import ConflictError, NotFoundError, ValidationError
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.runs import RunStore
from models.store.versioning import VERSION_RE

RUN_ID_RE = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{8}$")  # a run id, of a model or of an ensemble version
ENSEMBLE_VERSION_RE = re.compile(r"^[1-9]\d*$")


SELECTORS = ("production", "staging", "latest")
SERVED_WORDS = {
    "production": "the production run",
    "staging": "the highest version in staging",
    "latest": "the highest version",
    "version": "the version asked for",
    "run_id": "the run asked for",
    "current": "the latest training; nothing is in production",
}
ENSEMBLE_REFERENCE_HELP = (
    "NAME (production version, else the highest), NAME@production, NAME@staging, NAME@latest, NAME@3 "
    "or the run id of a version"
)
REFERENCE_HELP = "NAME (production run, else latest training), NAME@production, NAME@staging, NAME@latest, NAME@1.2.0 or a run id"


@dataclass(frozen=True)
class Served:
    """The document a prediction loads (a run, or for a config's current run the config itself) and why."""

    doc: dict[str, Any]
    name: str
    run_id: str
    version: str | int | None  # a model run's "1.2.0"; an ensemble version's number
    chosen_by: str  # production | staging | latest | version | run_id | current

    @property
    def words(self) -> str:
        """How the run was chosen, in words (for messages and pages)."""
        return SERVED_WORDS[self.chosen_by]

    def run_document(self, database: Database) -> dict[str, Any]:
        """The registry's run document (a config's current run is looked up; a legacy config is its own)."""
        if self.chosen_by != "current":
            return self.doc
        return RunStore(database).find(self.run_id) or self.doc

    def describe(self) -> dict[str, Any]:
        """The fields every prediction answer carries: what answered and how it was chosen."""
        return {"run_id": self.run_id, "version": self.version, "served": self.chosen_by}


def split_reference(ref: Any, field: str = "name") -> tuple[str, str | None]:
    """``(name, selector)`` of a reference; ValidationError naming ``field`` for a malformed one."""
    return _split(ref, field, f"a model reference: {REFERENCE_HELP}", VERSION_RE, "a version like 1.2.0")


def _split(ref: Any, field: str, what: str, version_re: re.Pattern[str], version: str) -> tuple[str, str | None]:
    """``(name, selector)`` of ``NAME`` or ``NAME@selector``; the selector an alias or matching ``version_re``."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError(f"{field} must be {what}", field=field)
    ref = ref.strip()
    if "@" not in ref:
        return ref, None
    name, _, selector = ref.rpartition("@")
    if not name:
        raise ValidationError(f"reference {ref!r} has no name before '@'", field=field)
    if selector not in SELECTORS and not version_re.match(selector):
        raise ValidationError(
            f"reference {ref!r}: after '@' give production, staging, latest or {version}", field=field
        )
    return name, selector


def _served(doc: dict[str, Any], chosen_by: str) -> Served:
    return Served(doc, doc["name"], doc["run_id"], doc.get("version"), chosen_by)


def resolve_model(database: Database, ref: str, field: str = "name") -> Served:
    """The run that reference ``ref`` serves (see the module docstring).

    NotFoundError naming ``field`` for an unknown name, version or run id, or an alias no run holds;
    ConflictError for a config that was never trained.
    """
    name, selector = split_reference(ref, field)
    runs = RunStore(database)
    if selector is None:
        if RUN_ID_RE.match(name):
            run = runs.find(name)
            if run is not None:
                return _served(run, "run_id")
        production = runs.find_production(name)
        if production is not None:
            return _served(production, "production")
        config = ConfigStore(database).find(name)
        if config is not None:
            if not config.get("run_id"):
                raise ConflictError(
                    f"config {config['name']!r} has not been trained yet; train it first", field=field
                )
            return _served(config, "current")
        latest = runs.latest(name)
        if latest is not None:  # the config is gone, its runs are kept
            return _served(latest, "latest")
        raise NotFoundError(f"no model or run named {name!r}", field=field)
    if selector == "production":
        run = runs.find_production(name)
        if run is None:
            _require_known(runs, name, field)
            raise NotFoundError(f"{name!r} has no run in production; promote one first", field=field)
        return _served(run, "production")
    if selector == "staging":
        run = runs.highest_with_status(name, "staging")
        if run is None:
            _require_known(runs, name, field)
            raise NotFoundError(f"{name!r} has no run in staging", field=field)
        return _served(run, "staging")
    if selector == "latest":
        run = runs.latest(name)
        if run is None:
            _require_known(runs, name, field)
        return _served(run, "latest")
    run = runs.find_version(name, selector)
    if run is None:
        _require_known(runs, name, field)
        raise NotFoundError(f"{name!r} has no version {selector}", field=field)
    return _served(run, "version")


def _require_known(runs: RunStore, name: str, field: str) -> None:
    """NotFoundError saying the name itself is unknown (or never trained), before an alias is blamed."""
    if not runs.has_name(name):
        raise NotFoundError(f"no trained model named {name!r} in the registry", field=field)


# ---------------------------------------------------------------- ensembles


def split_ensemble_reference(ref: Any, field: str = "name") -> tuple[str, str | None]:
    """``(name, selector)`` of an ensemble reference; ValidationError naming ``field`` for a malformed one."""
    return _split(
        ref,
        field,
        f"an ensemble reference: {ENSEMBLE_REFERENCE_HELP}",
        ENSEMBLE_VERSION_RE,
        "a version number like 2",
    )


def _ensemble_served(doc: dict[str, Any], chosen_by: str) -> Served:
    return Served(doc, doc["name"], doc["run_id"], int(doc.get("version") or 1), chosen_by)


def find_ensemble_reference(database: Database, ref: Any, field: str = "name") -> Served | None:
    """What ensemble reference ``ref`` serves, or None when no ensemble has its name or run id (so that
    callers taking a model or an ensemble can try a model next). Errors as :func:`resolve_ensemble` once
    the name is an ensemble's."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    store = EnsembleStore(database)
    name = ref.strip().rpartition("@")[0] if "@" in ref else ref.strip()
    if store.latest(name) is None and not (RUN_ID_RE.match(name) and store.find_by_run(name)):
        return None
    return resolve_ensemble(database, ref, field)


def resolve_ensemble(database: Database, ref: Any, field: str = "name") -> Served:
    """The ensemble version reference ``ref`` serves (see the module docstring).

    ValidationError for a malformed reference; NotFoundError naming ``field`` for an unknown name,
    version or run id, or an alias no version holds (the message lists the versions there are).
    """
    name, selector = split_ensemble_reference(ref, field)
    store = EnsembleStore(database)
    if selector is None:
        if RUN_ID_RE.match(name):
            doc = store.find_by_run(name)
            if doc is not None:
                return _ensemble_served(doc, "run_id")
        production = store.find_production(name)
        if production is not None:
            return _ensemble_served(production, "production")
        latest = store.latest(name)
        if latest is None:
            raise NotFoundError(f"no ensemble named {name!r}", field=field)
        return _ensemble_served(latest, "latest")  # nothing is in production
    versions = store.versions(name)
    if not versions:
        raise NotFoundError(f"no ensemble named {name!r}", field=field)
    have = ", ".join(f"{int(d.get('version') or 1)} ({d.get('stage') or 'none'})" for d in versions)
    if selector == "latest":
        return _ensemble_served(store.latest(name) or versions[-1], "latest")
    if selector in ("production", "staging"):
        doc = store.find_production(name) if selector == "production" else store.highest_with_stage(name, selector)
        if doc is None:
            raise NotFoundError(
                f"ensemble {name!r} has no version in {selector}"
                + ("; promote one first" if selector == "production" else "")
                + f" (versions: {have})",
                field=field,
            )
        return _ensemble_served(doc, selector)
    doc = store.find_version(name, int(selector))
    if doc is None:
        raise NotFoundError(f"ensemble {name!r} has no version {selector} (versions: {have})", field=field)
    return _ensemble_served(doc, "version")
