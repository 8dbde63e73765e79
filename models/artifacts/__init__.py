"""Run files: where they live, how they are written, and how they are verified before loading.

Holds: ``base`` (``ArtifactStore``: the small interface every backend implements;
``ArtifactInfo``, ``artifact_name``, the writers), ``local`` (``LocalArtifactStore``: one folder,
``ARTIFACT_DIR``), ``gridfs`` (``GridFSArtifactStore`` and its content-addressed ``DiskCache``),
``routing`` (``RoutingStore``, ``get_store``: the configured store, reading wherever a path
points), ``atomic`` (temp file, fsync, ``os.replace``), ``blocks`` (per-block digests: BLAKE3 in artifact
format 2, SHA-256 in format 1), ``signing`` (``Signer``, ``get_signer``: the
Ed25519 key MongoDB never holds; every written artifact is signed), ``verified`` (``read_verified``,
``fetch_pickle``, ``VerifiedReader``: no byte is read before the signature verified, and none reaches
the unpickler before its block's digest matched), ``cache`` (``ModelCache``: the in-process LRU), ``predictor`` (``TrainedModel``: a
loaded model that predicts on a DataFrame), ``loading`` (``load_model``: a run's files ->
``TrainedModel``, through the cache), ``maintenance`` (verify, repair, orphans), ``lease``
(``ArtifactLease``: files written but not yet committed, protected from gc by the server's clock),
``migrate`` (move files between the local folder and GridFS, resumably), ``relocate`` (rewrite
paths that only one machine understands), ``legacy`` (documents of the reference system, not adopted)
and ``prediction_csv`` (prediction tables as CSV, formula-like cells escaped).

May import: the foundation modules and ``models.store``.

Public names: import them from their module, e.g. ``from models.artifacts.routing import get_store``,
``from models.artifacts.loading import load_model``.
"""
