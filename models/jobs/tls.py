"""The cluster's TLS: a deployment's own certificate authority, and who may talk to the scheduler.

Dask's scheduler runs whatever a connected client sends it, so a scheduler that anyone can reach
gives code execution on every worker. With TLS every connection is mutually authenticated: the
scheduler, the workers and the service's clients each hold a certificate signed by the deployment's
CA and refuse peers that do not (``distributed.security.Security``; distributed sets
``CERT_REQUIRED`` on both ends).

``python -m cli cluster certs --out DIR`` makes the CA and one key pair per role (scheduler, worker,
client) in ``DIR``; ``DASK_TLS_DIR=DIR`` makes the service, ``cluster scheduler`` and ``cluster
worker`` use them. A plain ``tcp://`` scheduler on another host is refused unless
``DASK_ALLOW_INSECURE=1`` says otherwise; on the loopback interface it is allowed (only this machine
reaches it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from models.errors import ValidationError
from models.settings import Settings

ROLES = ("scheduler", "worker", "client")
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
VALID_DAYS = 825


def role_files(folder: Path, role: str) -> tuple[Path, Path]:
    """``(certificate, private key)`` of ``role`` in a folder made by :func:`make_certificates`."""
    return folder / f"{role}.pem", folder / f"{role}.key"


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def make_certificates(folder: Path, *, hosts: tuple[str, ...] = (), overwrite: bool = False) -> dict[str, str]:
    """Make a CA and a certificate per role in ``folder``; returns ``{file: path}``.

    Private keys are written with mode 0600, certificates 0644. ``hosts`` (names or IP addresses) go
    into the certificates' subject alternative names, beside ``localhost`` and 127.0.0.1 (Dask checks
    the chain, not the names, but other TLS tools look at them). Refuses to replace an existing CA unless
    ``overwrite``: new certificates would lock out every machine holding the old ones.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    if (folder / CA_CERT).exists() and not overwrite:
        raise ValidationError(
            f"{folder / CA_CERT} exists already; new certificates would lock out every machine that holds "
            "the current ones (use --overwrite to replace them all)",
            field="out",
        )
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    now = dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM

    def key_bytes(key: Any) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ensemble-cache cluster CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    written = {}
    _write(folder / CA_KEY, key_bytes(ca_key), 0o600)
    _write(folder / CA_CERT, ca_cert.public_bytes(pem), 0o644)
    written.update({CA_KEY: str(folder / CA_KEY), CA_CERT: str(folder / CA_CERT)})
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ensemble-cache {role}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = role_files(folder, role)
        _write(key_path, key_bytes(key), 0o600)
        _write(cert_path, cert.public_bytes(pem), 0o644)
        written.update({cert_path.name: str(cert_path), key_path.name: str(key_path)})
    return written


def security_for(settings: Settings, role: str) -> Any:
    """``distributed.security.Security`` for ``role`` from ``DASK_TLS_DIR``, or None without it."""
    if settings.dask_tls_dir is None:
        return None
    from distributed.security import Security

    folder = Path(settings.dask_tls_dir)
    cert, key = role_files(folder, role)
    missing = [str(p) for p in (folder / CA_CERT, cert, key) if not p.is_file()]
    if missing:
        raise ValidationError(
            f"DASK_TLS_DIR={folder} lacks {', '.join(missing)} (make them with `python -m cli cluster certs`)",
            field="DASK_TLS_DIR",
        )
    options = {"tls_ca_file": str(folder / CA_CERT), "require_encryption": True}
    if role == "client":
        options.update(tls_client_cert=str(cert), tls_client_key=str(key))
    elif role == "scheduler":
        options.update(tls_scheduler_cert=str(cert), tls_scheduler_key=str(key))
    else:
        options.update(tls_worker_cert=str(cert), tls_worker_key=str(key))
    return Security(**options)


def cli_tls_options(settings: Settings, role: str) -> list[str]:
    """The ``--tls-*`` options of ``dask scheduler``/``dask worker`` for ``role`` (empty without TLS)."""
    if settings.dask_tls_dir is None:
        return []
    security_for(settings, role)  # the files exist, or a clear error
    folder = Path(settings.dask_tls_dir)
    cert, key = role_files(folder, role)
    return ["--tls-ca-file", str(folder / CA_CERT), "--tls-cert", str(cert), "--tls-key", str(key)]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_address(settings: Settings, address: str, *, what: str = "DASK_SCHEDULER_ADDRESS") -> None:
    """Refuse (ValidationError naming the setting) a scheduler that strangers could use: ``tls://`` with
    ``DASK_TLS_DIR`` is fine; ``tcp://`` only on the loopback interface, unless ``DASK_ALLOW_INSECURE=1``."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tls":
        if settings.dask_tls_dir is None:
            raise ValidationError(
                f"{what}={address} uses TLS but DASK_TLS_DIR is not set (the client's certificate lives there)",
                field="DASK_TLS_DIR",
            )
        return
    if parts.scheme not in ("tcp", "inproc", "ucx", "ws", "wss"):
        raise ValidationError(f"{what}={address}: unknown protocol {parts.scheme!r}", field=what)
    if parts.scheme == "inproc" or settings.dask_allow_insecure or is_loopback(parts.hostname or ""):
        return
    raise ValidationError(
        f"{what}={address} is a plain tcp:// scheduler on another host: anyone who reaches it can run code on "
        "the workers. Use TLS (python -m cli cluster certs, DASK_TLS_DIR, tls://...), or set "
        "DASK_ALLOW_INSECURE=1 if the network itself is trusted",
        field=what,
    )
