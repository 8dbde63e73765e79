"""All configuration in one place, read from the environment.

Nothing else in the project reads ``os.environ``: call :func:`get_settings`.
Paths are resolved against the project root so commands behave the same from
any working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

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


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(raw: str | int, name: str = "size") -> int:
    """A byte count from ``4294967296``, ``4GB`` (10**9), ``512MiB`` (2**20), ``1.5 GiB``; ValueError naming ``name``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value: float = raw
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(raw))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise ValueError(
                f"{name} must be a number of bytes, optionally with a unit (B, KB, MB, GB, TB, "
                f"KiB, MiB, GiB, TiB), got {raw!r}"
            )
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
            raise ValueError(
                f"environment variable DATA_ROOTS: entry {entry!r} must be name=path with a name of "
                "lower-case letters, digits, '_' or '-' (starting with a letter)"
            )
        roots[name] = _path(raw.strip())
    return tuple(roots.items())


def _trusted_keys(raw: str) -> tuple[str, ...]:
    """``TRUSTED_KEYS``: public keys separated by commas or whitespace, or ``@/path/to/file`` (one a line)."""
    raw = raw.strip()
    if raw.startswith("@"):
        path = _path(raw[1:])
        try:
            raw = path.read_text()
        except OSError as exc:
            raise ValueError(
                f"environment variable TRUSTED_KEYS names file {path}, which cannot be read: {exc.strerror}"
            ) from None
        raw = "\n".join(line for line in raw.splitlines() if not line.lstrip().startswith("#"))
    return tuple(k for k in raw.replace(",", " ").split() if k)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ValueError(f"environment variable {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name} must be 1/0 (or true/false), got {env.get(name)!r}")


def _non_negative(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ValueError(f"environment variable {name} must be 0 or more, got {value}")
    return value


# Upper bounds of size-like hyperparameters (a config above one is refused when saved and when it
# trains). HYPERPARAMETER_LIMITS="n_estimators=5000,max_iter=20000" changes some of them. The other
# numeric hyperparameters have fixed bounds (models/estimators.py FIXED_BOUNDS).
DEFAULT_HYPERPARAMETER_LIMITS: dict[str, int] = {
    "n_estimators": 2000,  # forests, gradient boosting
    "max_iter": 100_000,  # linear models, MLP, hist gradient boosting
    "max_depth": 100,  # trees
    "max_leaf_nodes": 100_000,  # trees, hist gradient boosting
    "n_neighbors": 1000,  # k nearest neighbours
    "hidden_layer_size": 4096,  # each entry of hidden_layer_sizes
    "hidden_layers": 20,  # how many entries hidden_layer_sizes has
    "max_bins": 255,  # hist gradient boosting (its own maximum)
    "cache_size": 2000,  # SVM kernel cache, MB
    "num_leaves": 131_072,  # LightGBM leaves per tree
    "max_leaves": 131_072,  # XGBoost leaves per tree
    "max_bin": 1024,  # XGBoost histogram bins
    "batch_size": 100_000,  # MLP minibatch rows
    "leaf_size": 10_000,  # k nearest neighbours (ball/kd tree leaves)
    "min_samples_split": 1_000_000,  # trees, as a row count (a fraction is at most 1 anyway)
    "min_samples_leaf": 1_000_000,  # trees, hist gradient boosting, as a row count
    "max_samples": 10_000_000,  # forests' bootstrap rows, as a row count
    "max_features": 100_000,  # trees, as a column count
    "max_fun": 1_000_000,  # MLP (lbfgs) function evaluations
    "n_iter_no_change": 10_000,  # early stopping patience
    "degree": 10,  # SVM polynomial kernel
}


def _limits(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    limits = dict(DEFAULT_HYPERPARAMETER_LIMITS)
    raw = env.get(name) or ""
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in DEFAULT_HYPERPARAMETER_LIMITS:
            raise ValueError(
                f"environment variable {name}: {part!r} must be name=number with a name among "
                f"{', '.join(DEFAULT_HYPERPARAMETER_LIMITS)}"
            )
        try:
            number = int(value)
        except ValueError:
            raise ValueError(
                f"environment variable {name}: the limit of {key} must be an integer, got {value.strip()!r}"
            ) from None
        if number < 1:
            raise ValueError(f"environment variable {name}: the limit of {key} must be at least 1, got {number}")
        limits[key] = number
    return tuple(sorted(limits.items()))


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
    data_roots: tuple[tuple[str, Path] | Path, ...] | None = ()
    var_dir: Path = field(default_factory=lambda: _path("var"))
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 27018
    cache_max_items: int = 64
    cache_max_bytes: int = 2 * 1024**3
    serving_cache_ms: int = 1000  # how long a predict route reuses what a reference resolved to (0: never)
    job_workers: int = 2
    dask_scheduler_address: str | None = None  # set: jobs and slow-path retrains run on this Dask cluster
    cv_jobs: int = 1  # joblib n_jobs for the CV folds of one fit (1 = one after another, as before)
    # the cluster's TLS (mutual authentication): a folder made by `cluster certs` (ca.pem and the role's pair)
    dask_tls_dir: Path | None = None
    dask_allow_insecure: bool = False  # allow a plain tcp:// scheduler on another host (no TLS): explicit only
    server_selection_timeout_ms: int = 5000
    admin_password: str | None = None
    api_token: str | None = None
    secret_key: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 5000
    web_connection_limit: int = 2000  # open connections waitress accepts (idle ones included)
    web_channel_timeout: int = 30  # seconds an idle or slow connection is kept before it is closed
    max_content_length: int = 16 * 1024 * 1024
    log_level: str = "INFO"
    train_timeout_seconds: int = 3600  # a training or ensemble job is stopped after this long (0 = no limit)
    train_memory_limit_mb: int = 0  # address-space cap of a job's worker process (0 = none)
    hyperparameter_limits: tuple[tuple[str, int], ...] = tuple(sorted(DEFAULT_HYPERPARAMETER_LIMITS.items()))
    session_cookie_secure: bool = False  # mark the session cookie Secure (serve behind TLS)

    progress_interval_seconds: int = 5  # CLI progress lines on a non-terminal stderr: at least this often
    # trust (models/artifacts/signing.py): the Ed25519 key that signs artifacts; MongoDB never holds it
    artifact_signing_key: str | None = None  # base64 of the 32-byte private key; else the key file
    artifact_signing_key_file: Path | None = None  # default: $VAR_DIR/artifact-signing.key (made on first use)
    web_secrets_file: Path | None = None  # default: $VAR_DIR/web-secrets.json (mode 0600, made on first start)
    allow_http_trust: bool = False  # ALLOW_HTTP_TRUST=1: import/adopt with trust over HTTP (they unpickle)
    require_signed: bool = True  # refuse artifacts without a signature (0: load them with a warning)
    trusted_keys: tuple[str, ...] = ()  # public keys (base64) whose artifacts and archives are accepted
    # training data: a config's training_csv must resolve inside a data root (see named_data_roots)
    max_training_csv_bytes: int = 512 * 1024**2
    # run archives (models/registry/archive.py): bounds of what an import decompresses, checked as it streams
    max_archive_bytes: int = 1024**3  # all members together, uncompressed
    max_archive_member_bytes: int = 512 * 1024**2  # any one member, uncompressed
    max_sweep_job_hours: int = 48  # a sweep's estimated training time, all its configs together

    @property
    def hyperparameter_limit(self) -> dict[str, int]:
        """The upper bounds of size-like hyperparameters, by name."""
        return dict(self.hyperparameter_limits)

    @property
    def artifact_cache_dir(self) -> Path:
        """Local read-through cache of GridFS artifacts."""
        return self.var_dir / "artifact-cache"

    @property
    def named_data_roots(self) -> dict[str, Path]:
        """Root name -> folder on this machine; ``data`` is ``DATA_DIR`` unless ``DATA_ROOTS`` names it.
        An entry given as a bare folder (``with_(data_roots=(folder,))``) is named after that folder."""
        roots: dict[str, Path] = {DEFAULT_DATA_ROOT: self.data_dir}
        for entry in self.data_roots or ():
            name, folder = entry if isinstance(entry, tuple) else (Path(entry).name.lower(), entry)
            roots[name] = Path(folder)
        return roots

    @property
    def signing_key_file(self) -> Path:
        return self.artifact_signing_key_file or (self.var_dir / "artifact-signing.key")

    @property
    def web_secrets_path(self) -> Path:
        """Where the web app's password hash, token digest and secret key live (never in MongoDB)."""
        return self.web_secrets_file or (self.var_dir / "web-secrets.json")

    @property
    def effective_data_roots(self) -> tuple[Path, ...]:
        """Folders training CSVs may be read from: every named data root (``DATA_DIR`` and ``DATA_ROOTS``)."""
        return tuple(self.named_data_roots.values())

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
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
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
            serving_cache_ms=_non_negative(env, "SERVING_CACHE_MS", d.serving_cache_ms),
            job_workers=_int(env, "JOB_WORKERS", d.job_workers),
            dask_scheduler_address=env.get("DASK_SCHEDULER_ADDRESS") or None,
            cv_jobs=_int(env, "CV_JOBS", d.cv_jobs),
            dask_tls_dir=_path(env["DASK_TLS_DIR"]) if env.get("DASK_TLS_DIR") else None,
            dask_allow_insecure=_bool(env, "DASK_ALLOW_INSECURE", d.dask_allow_insecure),
            server_selection_timeout_ms=_int(env, "MONGO_TIMEOUT_MS", d.server_selection_timeout_ms),
            admin_password=env.get("ADMIN_PASSWORD") or None,
            api_token=env.get("API_TOKEN") or None,
            secret_key=env.get("SECRET_KEY") or None,
            web_host=env.get("WEB_HOST", d.web_host),
            web_port=_int(env, "WEB_PORT", d.web_port),
            web_connection_limit=_int(env, "WEB_CONNECTION_LIMIT", d.web_connection_limit),
            web_channel_timeout=_int(env, "WEB_CHANNEL_TIMEOUT", d.web_channel_timeout),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", d.max_content_length),
            log_level=env.get("LOG_LEVEL", d.log_level),
            train_timeout_seconds=_non_negative(env, "TRAIN_TIMEOUT_SECONDS", d.train_timeout_seconds),
            train_memory_limit_mb=_non_negative(env, "TRAIN_MEMORY_LIMIT_MB", d.train_memory_limit_mb),
            hyperparameter_limits=_limits(env, "HYPERPARAMETER_LIMITS"),
            session_cookie_secure=_bool(env, "SESSION_COOKIE_SECURE", d.session_cookie_secure),
            progress_interval_seconds=max(_int(env, "PROGRESS_INTERVAL_SECONDS", d.progress_interval_seconds), 1),
            artifact_signing_key=env.get("ARTIFACT_SIGNING_KEY") or None,
            artifact_signing_key_file=(
                _path(env["ARTIFACT_SIGNING_KEY_FILE"]) if env.get("ARTIFACT_SIGNING_KEY_FILE") else None
            ),
            web_secrets_file=_path(env["WEB_SECRETS_FILE"]) if env.get("WEB_SECRETS_FILE") else None,
            allow_http_trust=_bool(env, "ALLOW_HTTP_TRUST", d.allow_http_trust),
            require_signed=_bool(env, "REQUIRE_SIGNED", d.require_signed),
            trusted_keys=_trusted_keys(env.get("TRUSTED_KEYS", "")),
            max_training_csv_bytes=_int(env, "MAX_TRAINING_CSV_BYTES", d.max_training_csv_bytes),
            max_archive_bytes=_bytes(env, "MAX_ARCHIVE_BYTES", d.max_archive_bytes),
            max_archive_member_bytes=_bytes(env, "MAX_ARCHIVE_MEMBER_BYTES", d.max_archive_member_bytes),
            max_sweep_job_hours=_int(env, "MAX_SWEEP_JOB_HOURS", d.max_sweep_job_hours),
        )

    def with_(self, **changes) -> Settings:
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
