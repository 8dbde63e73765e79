"""Shared benchmark scaffolding: a throwaway embedded server and folders, nothing touches var/ or cli/models."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from models.settings import Settings
from models.store.db import Database
from models.store.embedded import EmbeddedServer, free_port


@contextlib.contextmanager
def bench_database(root: Path | None = None) -> Iterator[Database]:
    """A Database on its own embedded server with temporary data, artifact and var folders."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        base = Path(root or tmp)
        server = EmbeddedServer(storage_path=base / "mongo", port=free_port(), run_dir=base)
        server.start()
        settings = Settings.from_env({}).with_(
            mongo_uri=server.uri,
            mongo_db=f"bench_{uuid.uuid4().hex[:8]}",
            artifact_dir=base / "artifacts",
            data_dir=base / "data",
            var_dir=base / "var",
        )
        database = Database.connect(settings)
        try:
            yield database
        finally:
            database.close()
            server.stop()


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls (the median resists a noisy neighbour better than the mean)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
