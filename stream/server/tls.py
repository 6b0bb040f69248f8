"""HTTPS for ``deepwatch serve``: the server's SSL context, and self-signed certificates for trials.

Browsers share a camera or a screen only with a secure page (HTTPS, or http://localhost), so a
server other machines reach must speak TLS: with a real certificate, a self-signed one made here
(each browser must accept it once), or behind a reverse proxy that terminates TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

CERT_FILE_NAME = "deepwatch-cert.pem"
KEY_FILE_NAME = "deepwatch-key.pem"
# Long enough for a trial, short enough that a forgotten self-signed certificate expires.
SELF_SIGNED_VALIDITY_DAYS = 90
# Names every self-signed certificate also covers, so the same files work on this machine.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message names the file and the problem."""


def server_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side SSL context (TLS 1.2 or newer) from PEM files; raises ``TlsError``."""
    for what, path in (("certificate", cert_path), ("key", key_path)):
        if not Path(path).is_file():
            raise TlsError(f"TLS {what} file {path!r} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as error:
        raise TlsError(
            f"cannot use TLS certificate {cert_path!r} with key {key_path!r}: {error.reason or error} "
            "(both must be PEM files, and the key must belong to the certificate)"
        ) from error
    except OSError as error:
        raise TlsError(f"cannot read TLS certificate or key: {error.strerror or error}") from error
    return context


@dataclass(frozen=True)
class CertificateFiles:
    """Where ``write_self_signed`` put the certificate and its key, and the names it covers."""

    cert_path: Path
    key_path: Path
    names: tuple[str, ...]


def write_self_signed(directory: str | os.PathLike[str], host_name: str) -> CertificateFiles:
    """Write a self-signed certificate for ``host_name`` (a DNS name or an IP address, plus the
    loopback names) and its private key into ``directory`` as PEM files.

    The key file is readable by its owner only. Existing files are never overwritten: an error
    says which one is in the way. Raises ``TlsError`` on a bad name or an unwritable directory.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host_name = host_name.strip()
    if not host_name or any(character.isspace() for character in host_name) or len(host_name) > 253:
        raise TlsError(f"certificate host name must be a DNS name or an IP address, got {host_name!r}")
    folder = Path(directory)
    cert_path, key_path = folder / CERT_FILE_NAME, folder / KEY_FILE_NAME
    for path in (cert_path, key_path):
        if path.exists():
            raise TlsError(f"{path} already exists; remove it or choose another directory")
    names = tuple(dict.fromkeys((host_name, *LOOPBACK_NAMES)))
    alternative_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative_names.append(x509.DNSName(name))

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(key_bytes)
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as error:
        raise TlsError(f"cannot write the certificate into {folder}: {error.strerror or error}") from error
    return CertificateFiles(cert_path=cert_path, key_path=key_path, names=names)
