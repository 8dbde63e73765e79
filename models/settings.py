"""All configuration in one place, read from the environment.

Nothing else in the project reads ``os.environ``: call :func:`get_settings`.
Paths are resolved against the project root so commands behave the same from
any working directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_bytes(raw: str | int, name: str = "size") -> int:
    """A byte count from ``4294967296``, ``4GB`` (10**9), ``512MiB`` (2**20), ``1.5 GiB``; ValueError naming ``name``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value: float = raw
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(raw))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise ValueError(f"{name} must be a number of bytes, optionally with a unit (B, KB, MB, GB, TB, "
                             f"KiB, MiB, GiB, TiB), got {raw!r}")
        value = float(m.group(1)) * _UNITS[unit]
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return int(value)


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return parse_bytes(raw, f"environment variable {name}")


ROOT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_DATA_ROOT = "data"


def _data_roots(env: Mapping[str, str], data_dir: Path) -> tuple[tuple[str, Path], ...]:
    """Named data roots: ``data`` is ``DATA_DIR``; ``DATA_ROOTS`` adds ``name=path`` entries
    (separated by ``os.pathsep``; a bare path is named after its folder)."""
    roots: dict[str, Path] = {DEFAULT_DATA_ROOT: data_dir}
    for entry in (env.get("DATA_ROOTS") or "").split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, raw = entry.partition("=")
        if not sep:
            name, raw = Path(entry).name.lower(), entry
        if not ROOT_NAME.fullmatch(name) or not raw.strip():
            raise ValueError(f"environment variable DATA_ROOTS: entry {entry!r} must be name=path with a name of "
                             "lower-case letters, digits, '_' or '-' (starting with a letter)")
        roots[name] = _path(raw.strip())
    return tuple(roots.items())


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ValueError(f"environment variable {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Service settings. Build with :meth:`from_env`; override with :meth:`with_`."""

    mongo_uri: str | None = None
    mongo_db: str = "ensemble_cache"
    config_collection: str = "model_config"
    runs_collection: str = "model_runs"
    ensembles_collection: str = "ensembles"
    jobs_collection: str = "jobs"
    locks_collection: str = "locks"
    secrets_collection: str = "service_secrets"
    artifact_dir: Path = field(default_factory=lambda: _path("cli/models"))
    artifact_store: str = "local"
    artifact_cache_bytes: int = 4 * 1024**3
    data_dir: Path = field(default_factory=lambda: _path("data"))
    # named data roots; ``training_csv`` is stored as ``@<root>/<path>`` so every machine resolves it in its own
    # copy of the root. Empty: only ``data`` = ``data_dir`` (see :attr:`named_data_roots`).
    data_roots: tuple[tuple[str, Path], ...] = ()
    var_dir: Path = field(default_factory=lambda: _path("var"))
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 27018
    cache_max_items: int = 64
    cache_max_bytes: int = 2 * 1024**3
    job_workers: int = 2
    dask_scheduler_address: str | None = None  # set: jobs and slow-path retrains run on this Dask cluster
    cv_jobs: int = 1  # joblib n_jobs for the CV folds of one fit (1 = one after another, as before)
    lock_ttl_seconds: int = 600
    server_selection_timeout_ms: int = 5000
    admin_password: str | None = None
    api_token: str | None = None
    secret_key: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 5000
    max_content_length: int = 16 * 1024 * 1024
    log_level: str = "INFO"

    @property
    def artifact_cache_dir(self) -> Path:
        """Local read-through cache of GridFS artifacts."""
        return self.var_dir / "artifact-cache"

    @property
    def named_data_roots(self) -> dict[str, Path]:
        """Root name -> folder on this machine; ``data`` is ``DATA_DIR`` unless ``DATA_ROOTS`` names it."""
        return {DEFAULT_DATA_ROOT: self.data_dir, **dict(self.data_roots)}

    @property
    def mongo_dir(self) -> Path:
        return self.var_dir / "mongo"

    @property
    def uses_embedded(self) -> bool:
        return not self.mongo_uri

    @property
    def effective_mongo_uri(self) -> str:
        return self.mongo_uri or f"mongodb://{self.embedded_host}:{self.embedded_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()
        data_dir = _path(env["DATA_DIR"]) if env.get("DATA_DIR") else d.data_dir
        return cls(
            mongo_uri=env.get("MONGO_URI") or None,
            mongo_db=env.get("MONGO_DB", d.mongo_db),
            config_collection=env.get("CONFIG_COLLECTION", d.config_collection),
            runs_collection=env.get("RUNS_COLLECTION", d.runs_collection),
            ensembles_collection=env.get("ENSEMBLES_COLLECTION", d.ensembles_collection),
            jobs_collection=env.get("JOBS_COLLECTION", d.jobs_collection),
            locks_collection=env.get("LOCKS_COLLECTION", d.locks_collection),
            secrets_collection=env.get("SECRETS_COLLECTION", d.secrets_collection),
            artifact_dir=_path(env["ARTIFACT_DIR"]) if env.get("ARTIFACT_DIR") else d.artifact_dir,
            artifact_store=_choice(env, "ARTIFACT_STORE", d.artifact_store, ("local", "gridfs")),
            artifact_cache_bytes=_bytes(env, "ARTIFACT_CACHE_BYTES", d.artifact_cache_bytes),
            data_dir=data_dir,
            data_roots=_data_roots(env, data_dir)[1:],
            var_dir=_path(env["VAR_DIR"]) if env.get("VAR_DIR") else d.var_dir,
            embedded_host=env.get("EMBEDDED_MONGO_HOST", d.embedded_host),
            embedded_port=_int(env, "EMBEDDED_MONGO_PORT", d.embedded_port),
            cache_max_items=_int(env, "CACHE_MAX_ITEMS", d.cache_max_items),
            cache_max_bytes=_bytes(env, "CACHE_MAX_BYTES", d.cache_max_bytes),
            job_workers=_int(env, "JOB_WORKERS", d.job_workers),
            dask_scheduler_address=env.get("DASK_SCHEDULER_ADDRESS") or None,
            cv_jobs=_int(env, "CV_JOBS", d.cv_jobs),
            lock_ttl_seconds=_int(env, "LOCK_TTL_SECONDS", d.lock_ttl_seconds),
            server_selection_timeout_ms=_int(env, "MONGO_TIMEOUT_MS", d.server_selection_timeout_ms),
            admin_password=env.get("ADMIN_PASSWORD") or None,
            api_token=env.get("API_TOKEN") or None,
            secret_key=env.get("SECRET_KEY") or None,
            web_host=env.get("WEB_HOST", d.web_host),
            web_port=_int(env, "WEB_PORT", d.web_port),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", d.max_content_length),
            log_level=env.get("LOG_LEVEL", d.log_level),
        )

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (used by tests and the CLI)."""
        return replace(self, **changes)



def environment_with_project_path() -> dict[str, str]:
    """This process's environment with the project root first on ``PYTHONPATH``, for child processes
    (Dask scheduler and workers) that must import ``models`` wherever they are started from."""
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != PROJECT_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *parts])
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
