"""The admin password, the API bearer token and the session secret key: never in the database.

Each comes from :class:`~models.settings.Settings` when set there (``ADMIN_PASSWORD``, ``API_TOKEN``,
``SECRET_KEY``). Otherwise it lives in the web secrets file (``WEB_SECRETS_FILE``, default
``$VAR_DIR/web-secrets.json``, mode 0600, like the artifact signing key): a hash for the password and the
token, the key itself. Missing ones are generated on the first start; a generated password or token is
returned in plain text once, in ``Credentials.generated``, so ``serve`` can print it (never logged).

Whoever can write MongoDB therefore cannot become the admin: there is no hash to replace and no key to
sign a cookie with (sessions are also checked against records keyed by an HMAC under that key, see
:mod:`web.sessions`). Installations that kept these in the ``secrets_collection`` move them to the file
on start and the documents are removed; the old secret key is not kept (a database reader may have seen
it), so everyone logs in again once.

A new admin password: ``python -m cli web reset-password`` (:func:`reset_admin_password`); a running
server reads the file again at the next login. Several web servers share the file (or the variables).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError
from werkzeug.security import check_password_hash, generate_password_hash

from models.artifacts.signing import write_key_file
from models.errors import ValidationError
from models.settings import Settings
from models.store.db import Database
from models.store.sessions import SessionStore

log = logging.getLogger(__name__)

_file_lock = threading.Lock()


def _token_digest(token: str) -> str:
    # A random 256-bit token needs no slow hash; SHA-256 keeps every API call cheap.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_secrets(path: Path) -> dict[str, Any]:
    """The secrets file's entries ({} when it does not exist); group/other access is removed."""
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        os.chmod(path, 0o600)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"the web secrets file {path} cannot be read: {exc}", field="WEB_SECRETS_FILE"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"the web secrets file {path} does not hold an object", field="WEB_SECRETS_FILE")
    return data


def write_secrets(path: Path, data: dict[str, Any]) -> None:
    write_key_file(path, json.dumps(data, indent=2, sort_keys=True))


@dataclass
class Credentials:
    """How to check a password or token, and the secret key.

    A password or token generated at this start waits in ``generated`` until :meth:`pop_generated`
    hands it out (once).
    """

    secret_key: str
    _password: str | None = None
    _password_hash: str | None = None
    _token_digest: str = ""
    generated: dict[str, str] = field(default_factory=dict, repr=False)
    _file: Path | None = field(default=None, repr=False)

    def check_password(self, candidate: str) -> bool:
        """True when ``candidate`` is the admin password (a password reset meanwhile counts)."""
        if not candidate:
            return False
        if self._password is not None:
            return hmac.compare_digest(candidate.encode("utf-8"), self._password.encode("utf-8"))
        if self._file is not None:  # the password may have been reset since this process started
            try:
                self._password_hash = read_secrets(self._file).get("admin_password_hash") or self._password_hash
            except (OSError, ValidationError):
                log.warning("could not re-read %s; using the password hash read at start", self._file)
        return bool(self._password_hash) and check_password_hash(self._password_hash, candidate)

    def check_token(self, candidate: str) -> bool:
        """True when ``candidate`` is the API bearer token."""
        if not candidate or not self._token_digest:
            return False
        return hmac.compare_digest(_token_digest(candidate), self._token_digest)

    def pop_generated(self) -> dict[str, str]:
        """The secrets generated at this start (``admin_password``, ``api_token``), handed out once."""
        out = dict(self.generated)
        self.generated.clear()
        return out

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return "Credentials(<hidden>)"


def _migrate_from_database(database: Database, data: dict[str, Any]) -> bool:
    """Move what an older version kept in MongoDB into ``data``; True when the file must be written."""
    try:
        legacy = SessionStore(database).take_legacy_secrets()
    except PyMongoError:
        log.warning("could not look for secrets an older version stored in the database (unreachable)")
        return False
    if not legacy:
        return False
    if "admin_password" in legacy and "admin_password_hash" not in data:
        data["admin_password_hash"] = legacy["admin_password"].get("hash")
    if "api_token" in legacy and "api_token_sha256" not in data:
        data["api_token_sha256"] = legacy["api_token"].get("sha256")
    if "secret_key" in legacy:  # not kept: a database reader may know it; sessions signed with it end
        try:
            SessionStore(database).revoke_all()
        except PyMongoError:
            log.warning("could not end the sessions of the old secret key (database unreachable)")
    log.warning(
        "moved the web secrets out of %s.%s into the secrets file; everyone logs in again once",
        database.settings.mongo_db,
        database.settings.secrets_collection,
    )
    return True


def load_credentials(database: Database, settings: Settings | None = None) -> Credentials:
    """Credentials from ``settings`` (default: the database's), else from (and on first start, into) the
    web secrets file; secrets an older version kept in the database move there first."""
    settings = settings or database.settings
    path = settings.web_secrets_path
    generated: dict[str, str] = {}
    with _file_lock:
        data = read_secrets(path)
        changed = _migrate_from_database(database, data)
        if not settings.secret_key and not data.get("secret_key"):
            data["secret_key"] = secrets.token_hex(32)
            changed = True
        if not settings.admin_password and not data.get("admin_password_hash"):
            generated["admin_password"] = secrets.token_urlsafe(12)
            data["admin_password_hash"] = generate_password_hash(generated["admin_password"])
            changed = True
        if not settings.api_token and not data.get("api_token_sha256"):
            generated["api_token"] = secrets.token_urlsafe(32)
            data["api_token_sha256"] = _token_digest(generated["api_token"])
            changed = True
        if changed:
            write_secrets(path, data)
            log.warning(
                "web secrets kept in %s (mode 0600; share it with every web server of this deployment)", path
            )
    creds = Credentials(secret_key=settings.secret_key or data["secret_key"], generated=generated)
    if settings.admin_password:
        creds._password = settings.admin_password
    else:
        creds._password_hash = data["admin_password_hash"]
        creds._file = path
    creds._token_digest = _token_digest(settings.api_token) if settings.api_token else data["api_token_sha256"]
    return creds


MIN_PASSWORD_CHARS = 8


def reset_admin_password(database: Database, settings: Settings | None = None, password: str | None = None) -> str:
    """Store a new admin password (``password``, or a generated one) and return it in plain text, once.

    Refused (ValidationError) when ``ADMIN_PASSWORD`` is set: the environment wins, change it there.
    """
    settings = settings or database.settings
    if settings.admin_password:
        raise ValidationError(
            "ADMIN_PASSWORD is set in the environment, so the stored password is not used; "
            "change the variable instead",
            field="ADMIN_PASSWORD",
        )
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(f"the password must have at least {MIN_PASSWORD_CHARS} characters", field="password")
    plain = password if password is not None else secrets.token_urlsafe(12)
    path = settings.web_secrets_path
    with _file_lock:
        data = read_secrets(path)
        data["admin_password_hash"] = generate_password_hash(plain)
        write_secrets(path, data)
    log.warning("the admin password was reset (in %s)", path)
    return plain
