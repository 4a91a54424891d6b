"""Certificates and keys of the emulator, kept in its state folder.

Layout (see docs/DEVNOTES.md): ``ca.pem`` / ``ca-key.pem`` (the CA clients trust), ``server.pem``
(server certificate chain and key for 127.0.0.1 and localhost), ``signing-key.pem`` and
``signing-cert.pem`` (the token signing key and its self-signed certificate, published as ``x5c``),
``client-certs/*.pem`` (public certificates registered as credentials of the portal app).
Existing files are reused, so a restarted emulator keeps the CA that clients already trust and the
signing key that verifies tokens already issued.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from entra_emulator.tenant import ClientCertificate

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class PkiMaterial:
    """Paths and key objects loaded from (or created in) a state folder."""

    state_dir: Path
    ca_path: Path
    server_pem_path: Path
    signing_key: rsa.RSAPrivateKey
    signing_cert: x509.Certificate

    def server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.server_pem_path))
        return context


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _certificate_still_valid(path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _load_or_create_ca(state_dir: Path) -> trustme.CA:
    ca_path, key_path = state_dir / "ca.pem", state_dir / "ca-key.pem"
    if ca_path.is_file() and key_path.is_file() and _certificate_still_valid(ca_path):
        return trustme.CA.from_pem(ca_path.read_bytes(), key_path.read_bytes())
    ca = trustme.CA(organization_name="Entra emulator (local testing only)")
    ca_path.write_bytes(ca.cert_pem.bytes())
    _write_private(key_path, ca.private_key_pem.bytes())
    # A new CA invalidates any server certificate signed by the old one.
    (state_dir / "server.pem").unlink(missing_ok=True)
    return ca


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def load_or_create(state_dir: Path) -> PkiMaterial:
    """Make the state folder's CA, server certificate and signing key, reusing what exists."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = _load_or_create_ca(state_dir)
    server_path = state_dir / "server.pem"
    if not (server_path.is_file() and _certificate_still_valid(server_path)):
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1", common_name="127.0.0.1")
        chain = leaf.private_key_pem.bytes() + b"".join(b.bytes() for b in leaf.cert_chain_pems)
        _write_private(server_path, chain)

    key_path, cert_path = state_dir / "signing-key.pem", state_dir / "signing-cert.pem"
    if key_path.is_file() and cert_path.is_file() and _certificate_still_valid(cert_path):
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path} does not hold an RSA key")
        signing_key = loaded
        signing_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    else:
        signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing_cert = _self_signed(signing_key, "accounts.emulator.local")
        _write_private(
            key_path,
            signing_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(signing_cert.public_bytes(serialization.Encoding.PEM))
    return PkiMaterial(
        state_dir=state_dir,
        ca_path=state_dir / "ca.pem",
        server_pem_path=server_path,
        signing_key=signing_key,
        signing_cert=signing_cert,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def certificate_thumbprint_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 digest of the DER certificate: Entra's ``x5t`` / ``kid`` (base64url-encoded)."""
    return hashlib.sha1(  # noqa: S324 - x5t is defined as SHA-1 (RFC 7515), not a security choice
        cert.public_bytes(serialization.Encoding.DER)
    ).digest()


def client_certificate_from_pem(pem: bytes) -> ClientCertificate:
    """A registered certificate credential from a PEM certificate (the first one in the file)."""
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return ClientCertificate(
        sha1_thumbprint=certificate_thumbprint_sha1(cert),
        sha256_thumbprint=hashlib.sha256(der).digest(),
        public_key=cert.public_key(),
        subject=cert.subject.rfc4514_string(),
        not_after_epoch=cert.not_valid_after_utc.timestamp(),
    )


def load_client_certificates(state_dir: Path) -> list[ClientCertificate]:
    """Every ``client-certs/*.pem`` in the state folder, as credentials of the portal app."""
    folder = state_dir / "client-certs"
    if not folder.is_dir():
        return []
    return [client_certificate_from_pem(p.read_bytes()) for p in sorted(folder.glob("*.pem"))]


def create_client_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """Create an RSA key and a self-signed certificate for a client credential.

    Writes ``<name>.pem`` (the certificate, to register with the emulator) and ``<name>-key.pem``
    (key followed by certificate, the file a client such as MSAL loads). Returns both paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, name)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert_pem)
    _write_private(key_path, key_pem + cert_pem)
    return cert_path, key_path
