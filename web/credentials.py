"""The admin password, the API bearer token and the session secret key.

Each comes from :class:`~models.settings.Settings` when set there. Otherwise it
is generated on the first start and kept in the ``secrets_collection``: only a
hash for the password and the token (so a database dump does not reveal
them), the value itself for the secret key (it is needed to sign sessions).
A generated password or token is returned in plain text once, in
``Credentials.generated``, so the ``serve`` command can print it; it is never
logged. A new admin password: ``python -m cli web reset-password`` (:func:`reset_admin_password`); a running
server picks it up at the next login without a restart. A new token: delete its document (or set the variable).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from pymongo.errors import DuplicateKeyError, PyMongoError
from werkzeug.security import check_password_hash, generate_password_hash

from models.errors import ValidationError
from models.settings import Settings
from models.store.db import Database
from models.timeutil import now

log = logging.getLogger(__name__)

PASSWORD_ID = "admin_password"
TOKEN_ID = "api_token"
SECRET_KEY_ID = "secret_key"


def _token_digest(token: str) -> str:
    # A random 256-bit token needs no slow hash; SHA-256 keeps every API call cheap.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Credentials:
    """How to check a password or token, and the secret key.

    A password or token generated at this start waits in ``generated`` until
    :meth:`pop_generated` hands it out (once).
    """

    secret_key: str
    _password: str | None = None
    _password_hash: str | None = None
    _token_digest: str = ""
    generated: dict[str, str] = field(default_factory=dict, repr=False)
    _reload_hash: Callable[[], str | None] | None = field(default=None, repr=False)

    def check_password(self, candidate: str) -> bool:
        """True when ``candidate`` is the admin password (a stored password reset meanwhile counts)."""
        if not candidate:
            return False
        if self._password is not None:
            return hmac.compare_digest(candidate.encode("utf-8"), self._password.encode("utf-8"))
        if self._reload_hash is not None:  # the password may have been reset since this process started
            try:
                self._password_hash = self._reload_hash() or self._password_hash
            except PyMongoError:
                log.warning("could not re-read the admin password hash; using the one read at start")
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


def _stored(
    database: Database, settings: Settings, name: str, make: Callable[[], tuple[str | None, dict]]
) -> tuple[dict, str | None]:
    """The stored document ``name``; creates it from ``make()`` when missing.

    Returns the document and the plain value when this call generated it.
    Two processes starting together agree on one value (insert races lose to the first).
    """
    col = database.db[settings.secrets_collection]
    doc = col.find_one({"_id": name})
    if doc is not None:
        return doc, None
    plain, doc = make()
    doc = {"_id": name, **doc, "created_at": now()}
    try:
        col.insert_one(doc)
    except DuplicateKeyError:
        return col.find_one({"_id": name}), None
    log.warning(
        "generated a new %s and stored it in %s.%s",
        name.replace("_", " "),
        settings.mongo_db,
        settings.secrets_collection,
    )
    return doc, plain


def load_credentials(database: Database, settings: Settings | None = None) -> Credentials:
    """Credentials from ``settings`` (default: the database's), or from (and on first start, into)
    the secrets collection."""
    settings = settings or database.settings
    generated: dict[str, str] = {}

    if settings.secret_key:
        secret_key = settings.secret_key
    else:
        doc, _ = _stored(database, settings, SECRET_KEY_ID, lambda: (None, {"value": secrets.token_hex(32)}))
        secret_key = doc["value"]

    creds = Credentials(secret_key=secret_key, generated=generated)
    if settings.admin_password:
        creds._password = settings.admin_password
    else:

        def make_password() -> tuple[str, dict]:
            plain = secrets.token_urlsafe(12)
            return plain, {"hash": generate_password_hash(plain)}

        doc, plain = _stored(database, settings, PASSWORD_ID, make_password)
        creds._password_hash = doc["hash"]
        col = database.db[settings.secrets_collection]
        creds._reload_hash = lambda: (col.find_one({"_id": PASSWORD_ID}) or {}).get("hash")
        if plain:
            generated["admin_password"] = plain

    if settings.api_token:
        creds._token_digest = _token_digest(settings.api_token)
    else:

        def make_token() -> tuple[str, dict]:
            plain = secrets.token_urlsafe(32)
            return plain, {"sha256": _token_digest(plain)}

        doc, plain = _stored(database, settings, TOKEN_ID, make_token)
        creds._token_digest = doc["sha256"]
        if plain:
            generated["api_token"] = plain
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
    database.db[settings.secrets_collection].replace_one(
        {"_id": PASSWORD_ID},
        {"hash": generate_password_hash(plain), "created_at": now(), "reset": True},
        upsert=True,
    )
    log.warning("the admin password was reset (stored in %s.%s)", settings.mongo_db, settings.secrets_collection)
    return plain
