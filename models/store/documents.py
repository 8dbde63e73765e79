"""The stores whose documents name artifact files, by collection, for the code that walks them all
(garbage collection, migration between backends)."""

from __future__ import annotations

from typing import Any, Protocol

from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.runs import RunStore


class ArtifactHolder(Protocol):
    def artifact_documents(self) -> list[dict[str, Any]]: ...

    def replace_paths(self, doc_id: Any, old: dict[str, str], new: dict[str, str]) -> bool: ...


def artifact_holders(database: Database) -> dict[str, ArtifactHolder]:
    """``collection name -> store`` for configs, runs and ensembles (the documents that name files)."""
    return {"configs": ConfigStore(database), "runs": RunStore(database), "ensembles": EnsembleStore(database)}
