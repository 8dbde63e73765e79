"""Stacking ensembles built from stored runs instead of retraining.

Holds: ``stacking`` (the math, no database: meta-model options, meta-features, ``fit_meta_model``,
``StackedEnsemble``), ``compat`` (which configs stack together; ``check_request``),
``base_models`` (``obtain_base_model``, ``load_base_models``: cache, verified artifacts, or a
retrain under a MongoDB lock), ``build`` (``create_ensemble``, ``load_ensemble``,
``delete_ensemble`` and the ensembles collection), ``aio`` (the same on ``AsyncMongoClient``),
``service`` (``candidates``, ``submit_ensemble``: what the web form and API need), ``selection``
(Caruana's greedy selection with replacement, nested honest scores, ``WeightedAverage``: the math, no
database), ``suggest`` (``suggest_ensemble``, ``submit_suggestion``: candidates, the OOF library, storing the
``weighted`` or ``stacked`` choice), ``plan`` (which base models will be trained first, why, and
about how long).

May import: the foundation modules, ``models.store``, ``models.artifacts``, ``models.jobs`` and
``models.training``.

Public names: import them from their module, e.g. ``from models.ensembles.build import create_ensemble``.
"""
