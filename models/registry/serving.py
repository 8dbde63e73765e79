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
    "find_ensemble_reference",
    "resolve_ensemble",
    "resolve_model",
    "split_ensemble_reference",
    "split_reference",
]
