"""Signatures: the trust root that MongoDB never holds.

Every artifact this installation writes is signed with an Ed25519 key kept outside the database
(``ARTIFACT_SIGNING_KEY``, or the key file ``ARTIFACT_SIGNING_KEY_FILE``, by default
``$VAR_DIR/artifact-signing.key``, generated on first use with mode 0600). Ed25519 rather than
HMAC: a machine or a colleague can check signatures with the public key alone, so other
installations can be trusted (``TRUSTED_KEYS``) without sharing a secret.

An artifact's signature covers its file name (which holds the run id and the kind, so a
signature cannot be moved onto another run's file), its SHA-256, its size and its per-block
checksums (the streaming reader trusts those). Whoever can rewrite a document's checksums
cannot produce a matching signature without the private key, so a forged document is refused
before any byte reaches the unpickler (reasons ``signature_invalid`` / ``signature_missing``).

Signatures are stored as text: ``ed25519:<public key, base64>:<signature, base64>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from models.artifacts.base import ArtifactInfo
from models.errors import ArtifactError
from models.settings import Settings

log = logging.getLogger(__name__)

SCHEME = "ed25519"
ARTIFACT_CONTEXT = b"ensemble-model-cache/artifact/v1\n"
ARCHIVE_CONTEXT = b"ensemble-model-cache/archive-manifest/v1\n"


class SigningKeyError(ValueError):
    """A key (setting or file) that cannot be used."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{what} is not base64") from None
    if len(raw) != size:
        raise SigningKeyError(f"{what} must be {size} bytes (base64), got {len(raw)}")
    return raw


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_key(text: str, what: str = "public key") -> Ed25519PublicKey:
    """A public key from its text: base64 of the 32 raw bytes, optionally prefixed ``ed25519:``."""
    body = text.strip()
    if body.startswith(SCHEME + ":"):
        body = body[len(SCHEME) + 1 :]
    return Ed25519PublicKey.from_public_bytes(_unb64(body, 32, what))


def private_key_text(key: Ed25519PrivateKey) -> str:
    return _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def new_private_key_text() -> str:
    """A fresh private key as ``ARTIFACT_SIGNING_KEY`` or the key file hold it."""
    return private_key_text(Ed25519PrivateKey.generate())


def file_name(stored_path: str) -> str:
    """The artifact's file name, the same in the local folder and in GridFS (``gridfs:<name>``)."""
    name = PurePosixPath(str(stored_path)).name
    return name.split(":", 1)[1] if name.startswith("gridfs:") else name


def artifact_message(ref: dict[str, Any]) -> bytes:
    """What an artifact's signature covers: name, SHA-256, size and per-block digests.

    Format-1 refs (``chunk_sha256``) give the very message they were signed with before format 2 existed;
    format-2 refs add ``chunk_blake3`` and ``format``, so neither can be passed off as the other.
    """
    chunks = ref.get("chunk_sha256")
    body = {
        "name": file_name(ref.get("path") or ""),
        "sha256": ref.get("sha256") or "",
        "size": ref.get("size"),
        "chunk_size": ref.get("chunk_size") if chunks or ref.get("chunk_blake3") else None,
        "chunk_sha256": list(chunks) if chunks else None,
    }
    if ref.get("chunk_blake3") or ref.get("format") is not None:
        body["chunk_blake3"] = list(ref.get("chunk_blake3") or [])
        body["format"] = ref.get("format")
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _split(signature: Any) -> tuple[str, bytes] | None:
    """``(public key text, signature bytes)`` of a stored signature, None when it is malformed."""
    if not isinstance(signature, str):
        return None
    parts = signature.split(":")
    if len(parts) != 3 or parts[0] != SCHEME:
        return None
    try:
        sig = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        return None
    return parts[1], sig


class Signer:
    """This installation's private key and the public keys it trusts."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        trusted: tuple[str, ...] = (),
        require_signed: bool = True,
        source: str = "",
    ) -> None:
        self._key = private_key
        self.public_key = public_key_text(private_key.public_key())
        self.source = source
        self.require_signed = require_signed
        self._trusted: dict[str, Ed25519PublicKey] = {self.public_key: private_key.public_key()}
        for i, text in enumerate(trusted):
            try:
                key = parse_public_key(text, f"TRUSTED_KEYS entry {i + 1}")
            except (SigningKeyError, ValueError) as exc:
                raise SigningKeyError(str(exc)) from None
            self._trusted[public_key_text(key)] = key

    @property
    def trusted_keys(self) -> list[str]:
        return sorted(self._trusted)

    def sign(self, context: bytes, message: bytes) -> str:
        return f"{SCHEME}:{self.public_key}:{_b64(self._key.sign(context + message))}"

    def signer_of(self, context: bytes, message: bytes, signature: Any) -> str | None:
        """The public key (text) of a trusted key that made ``signature`` over ``message``; else None."""
        parts = _split(signature)
        if parts is None:
            return None
        key = self._trusted.get(parts[0])
        if key is None:
            return None
        try:
            key.verify(parts[1], context + message)
        except InvalidSignature:
            return None
        return parts[0]

    # ---- artifacts

    def sign_info(self, info: ArtifactInfo) -> ArtifactInfo:
        return replace(info, signature=self.sign(ARTIFACT_CONTEXT, artifact_message(info.to_dict())))

    def sign_ref(self, ref: dict[str, Any]) -> str:
        return self.sign(ARTIFACT_CONTEXT, artifact_message(ref))

    def artifact_state(self, ref: dict[str, Any]) -> str:
        """``signed`` (by this installation or a trusted key), ``unsigned`` or ``invalid``."""
        signature = ref.get("signature")
        if not signature:
            return "unsigned"
        return "signed" if self.signer_of(ARTIFACT_CONTEXT, artifact_message(ref), signature) else "invalid"

    def check_ref(self, ref: dict[str, Any], state: str | None = None) -> None:
        """Refuse an artifact whose signature does not verify (before any byte of it is read); ``state`` is
        :meth:`artifact_state` of this very ref when the caller has it already."""
        path = ref.get("path") or ""
        state = state or self.artifact_state(ref)
        if state == "signed":
            return
        if state == "invalid":
            raise ArtifactError(
                f"artifact file {path} has a signature that does not verify with this "
                "installation's key or a trusted key (its recorded checksums were changed, or "
                "it was signed elsewhere); it was not loaded",
                reason="signature_invalid",
                path=path,
            )
        if self.require_signed:
            raise ArtifactError(
                f"artifact file {path} is not signed, and unsigned artifacts are refused "
                "(REQUIRE_SIGNED, on by default); it was not loaded. Artifacts written before "
                "signing: check them, then run `python -m cli artifacts sign --all`; "
                "reference-system documents: `python -m cli artifacts adopt NAME --trust`",
                reason="signature_missing",
                path=path,
            )
        log.warning(
            "artifact %s is not signed; loading it on its checksum alone because REQUIRE_SIGNED=0. "
            "Run `python -m cli artifacts sign --all` and remove REQUIRE_SIGNED=0",
            path,
        )


# ---------------------------------------------------------------- the key

_lock = threading.Lock()
_signers: dict[tuple[Any, ...], Signer] = {}


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SigningKeyError(
            f"the artifact signing key file {path} cannot be read ({exc.strerror}); check "
            "ARTIFACT_SIGNING_KEY_FILE / VAR_DIR"
        ) from None


def _create_key_file(path: Path) -> str:
    """Generate a key into ``path`` (mode 0600) unless another process did first; return its text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = new_private_key_text()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made meanwhile
            log.warning(
                "generated a new artifact signing key in %s (share it, or its public key, with the "
                "other machines of this deployment: see the README)",
                path,
            )
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def write_key_file(path: Path, text: str) -> Path:
    """Write a key's text to ``path`` with mode 0600 (atomically; an existing file is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text.strip() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_private_key(settings: Settings) -> tuple[Ed25519PrivateKey, str]:
    """The signing key and where it came from: the setting, else the key file (made on first use)."""
    if settings.artifact_signing_key:
        text, source = settings.artifact_signing_key, "ARTIFACT_SIGNING_KEY"
    else:
        path = settings.signing_key_file
        text = _read_key_file(path) if path.exists() else _create_key_file(path)
        source = str(path)
    try:
        raw = _unb64(text, 32, f"the artifact signing key ({source})")
    except SigningKeyError as exc:
        raise SigningKeyError(
            f"{exc}; expected the base64 text of an Ed25519 private key "
            "(`python -m cli artifacts key --generate` prints one)"
        ) from None
    return Ed25519PrivateKey.from_private_bytes(raw), source


def get_signer(settings: Settings) -> Signer:
    """This installation's signer (cached per key source, trusted keys and REQUIRE_SIGNED)."""
    ident = (
        settings.artifact_signing_key,
        str(settings.signing_key_file),
        settings.trusted_keys,
        settings.require_signed,
    )
    with _lock:
        signer = _signers.get(ident)
        if signer is None:
            key, source = load_private_key(settings)
            signer = Signer(
                key, trusted=settings.trusted_keys, require_signed=settings.require_signed, source=source
            )
            _signers[ident] = signer
        return signer
