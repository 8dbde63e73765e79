"""MongoDB: everything that reads or writes the database's documents, and the embedded server.

Holds: ``db`` (``Database``: the connection, collections and indexes; ``reconnect``),
``embedded`` (``EmbeddedServer``: SecantusDB started as a separate process), ``schema``
(``ModelConfig``, ``validate_config``: the typed config schema), ``configs`` (``ConfigStore``:
CRUD with compare-and-swap, ``recover_interrupted_trainings``), ``runs`` (``RunStore``: one
document per training), ``versioning`` (the version rules), ``jobs`` (the job documents: states, claims, commit marks,
recovery), ``ensembles`` (``EnsembleStore``), ``leases`` (``LeaseStore``: artifact files not committed
yet), ``documents`` (the stores whose documents name artifact files), ``locks`` (``LockTimeoutError``), ``datarefs`` (``@<root>/<path>``: data sets named so that
every machine resolves them)., ``data_roots`` (``check_data_root``: a
training CSV only from inside ``DATA_ROOTS``), ``columns`` (``check_training_columns``: the CSV
exists and names every feature and the target, checked when a config is saved)

May import: the foundation modules only (``models.settings``, ``models.errors``, ...).

Public names: import them from their module, e.g. ``from models.store.db import Database``,
``from models.store.configs import ConfigStore``, ``from models.store.runs import RunStore``.
"""
