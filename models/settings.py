"""All configuration in one place, read from the environment.

Nothing else in the project reads ``os.environ``: call :func:`get_settings`.
Paths are resolved against the project root so commands behave the same from
any working directory.
"""
from __future__ import annotations

import os
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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name} must be 1 or 0 (true/false), got {raw!r}")


def _path_list(raw: str) -> tuple[Path, ...] | None:
    """``DATA_ROOTS``: folders separated by ``:`` (``os.pathsep``) or commas; empty -> None (the default)."""
    parts = [p.strip() for chunk in raw.split(os.pathsep) for p in chunk.split(",")]
    paths = tuple(_path(p) for p in parts if p)
    return paths or None


def _trusted_keys(raw: str) -> tuple[str, ...]:
    """``TRUSTED_KEYS``: public keys separated by commas or whitespace, or ``@/path/to/file`` (one a line)."""
    raw = raw.strip()
    if raw.startswith("@"):
        path = _path(raw[1:])
        try:
            raw = path.read_text()
        except OSError as exc:
            raise ValueError(f"environment variable TRUSTED_KEYS names file {path}, which cannot be read: "
                             f"{exc.strerror}") from None
        raw = "\n".join(line for line in raw.splitlines() if not line.lstrip().startswith("#"))
    return tuple(k for k in raw.replace(",", " ").split() if k)


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
    # trust (models/artifacts/signing.py): the Ed25519 key that signs artifacts; MongoDB never holds it
    artifact_signing_key: str | None = None  # base64 of the 32-byte private key; else the key file
    artifact_signing_key_file: Path | None = None  # default: $VAR_DIR/artifact-signing.key (made on first use)
    require_signed: bool = False  # refuse artifacts without a signature (after `artifacts sign --all`)
    trusted_keys: tuple[str, ...] = ()  # public keys (base64) whose artifacts and archives are accepted
    # training data: a config's training_csv must resolve inside one of these folders
    data_roots: tuple[Path, ...] | None = None  # None: (data_dir,)
    max_training_csv_bytes: int = 512 * 1024**2

    @property
    def artifact_cache_dir(self) -> Path:
        """Local read-through cache of GridFS artifacts."""
        return self.var_dir / "artifact-cache"

    @property
    def signing_key_file(self) -> Path:
        return self.artifact_signing_key_file or (self.var_dir / "artifact-signing.key")

    @property
    def effective_data_roots(self) -> tuple[Path, ...]:
        """Folders training CSVs may be read from (``DATA_ROOTS``; default ``DATA_DIR``)."""
        return self.data_roots if self.data_roots else (self.data_dir,)

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
            artifact_cache_bytes=_int(env, "ARTIFACT_CACHE_BYTES", d.artifact_cache_bytes),
            data_dir=_path(env["DATA_DIR"]) if env.get("DATA_DIR") else d.data_dir,
            var_dir=_path(env["VAR_DIR"]) if env.get("VAR_DIR") else d.var_dir,
            embedded_host=env.get("EMBEDDED_MONGO_HOST", d.embedded_host),
            embedded_port=_int(env, "EMBEDDED_MONGO_PORT", d.embedded_port),
            cache_max_items=_int(env, "CACHE_MAX_ITEMS", d.cache_max_items),
            cache_max_bytes=_int(env, "CACHE_MAX_BYTES", d.cache_max_bytes),
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
            artifact_signing_key=env.get("ARTIFACT_SIGNING_KEY") or None,
            artifact_signing_key_file=(_path(env["ARTIFACT_SIGNING_KEY_FILE"])
                                       if env.get("ARTIFACT_SIGNING_KEY_FILE") else None),
            require_signed=_bool(env, "REQUIRE_SIGNED", d.require_signed),
            trusted_keys=_trusted_keys(env.get("TRUSTED_KEYS", "")),
            data_roots=_path_list(env.get("DATA_ROOTS", "")),
            max_training_csv_bytes=_int(env, "MAX_TRAINING_CSV_BYTES", d.max_training_csv_bytes),
        )

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (used by tests and the CLI)."""
        return replace(self, **changes)

    def relative_to_root(self, path: Path) -> str:
        """A path as stored in documents: relative to the project root when inside it, ``/``-separated."""
        try:
            return path.resolve().relative_to(PROJECT_ROOT).as_posix()
        except ValueError:
            return path.resolve().as_posix()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
