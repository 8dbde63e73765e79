"""The core of the ensemble model cache: no Flask, no click. ``web``, ``cli`` and ``agents`` call into it.

Rooms, from the bottom up (each imports only the foundation and the rooms below it, never above):

- foundation modules (``settings``, ``errors``, ``timeutil``, ``progress``, ``processes``,
  ``jsonable``, ``estimators``, ``boosting``: XGBoost and LightGBM, ``splits``: how rows are held out and
  folded, ``preprocess``: column types and the preprocessing step, ``tabular``: reading a CSV or Parquet file once,
  hashed as it is read) import nothing of ours but each other.
- ``store/``      MongoDB: the connection, the embedded server, the config schema, configs, runs, locks.
- ``artifacts/``  run files: the store interface (local folder, GridFS), atomic writes, verified
                  reading, the model cache, loading, maintenance and migration.
- ``jobs/``       background jobs: their MongoDB state, the in-process and Dask runners.
- ``training/``   data loading, metrics, training a config, training jobs, training on the cluster.
- ``ensembles/``  stacking math, creating and loading ensembles (sync and async), candidates.
- ``registry/``   versions, search, best, compare, lifecycle, export/import/deploy.
- ``demo``        the demo data set and configs; at the top, it may use any room.

``tests/test_layout.py`` walks every import (late ones included) and enforces this order.
"""

FOUNDATION = (
    "settings",
    "errors",
    "timeutil",
    "progress",
    "processes",
    "jsonable",
    "estimators",
    "boosting",
    "splits",
    "preprocess",
    "tabular",
)
ROOMS = ("store", "artifacts", "jobs", "training", "ensembles", "registry")
TOP = ("demo",)
