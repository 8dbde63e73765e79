"""Training a model config: data in, verified artifacts and a run document out.

Holds: ``data`` (``load_training_data``: the CSV, read with clear errors), ``metrics``
(classification and regression metrics, which direction is better), ``train``
(``fit_config``: scaler + model, stratified k-fold with out-of-fold predictions, held-out split,
final fit; ``train_config``: all of it for a stored config, committed by the config update),
``service`` (the one entry point: ``submit_training`` queues a config's training job, one per
config across processes, and ``train_bounded`` queues or joins it and waits; on a Dask cluster the
job runs on a worker), ``folds`` (``cluster_folds``: CV folds
over the Dask workers when ``CV_JOBS`` asks), ``sweep`` (``create_sweep``: one config per
combination of hyperparameter values), ``adopt`` (``adopt_legacy``: a reference-system document's files
as a verified run with out-of-fold predictions, after the admin's trust), ``estimate`` (how long a
training should take, from past runs; slow-type warnings), ``headline`` (the metric tables show first),
``sklearn_warnings`` (which of scikit-learn's warnings reach the user).

May import: the foundation modules, ``models.store``, ``models.artifacts`` and ``models.jobs``.

Public names: import them from their module, e.g. ``from models.training.train import train_config``,
``from models.training.service import submit_training``.
"""
