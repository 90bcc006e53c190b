"""The gateway's identity: its private key, a CSR naming it, its certificate's lifetime.

Pure functions over bytes (PEM in, PEM/DER out) plus two atomic file writers (the I/O seam
for key material). One identity per device: the key is generated on the gateway
(``edge-agent identity init``) and never leaves it; the certificate comes from the plant's CA
over EST (agent/uplink/est.py) and is renewed by the running agent (agent/uplink/renewal.py).

The gateway is named in the CSR's subject as ``CN={site}/{id}`` (so a broker that takes the
certificate's CN as the user name, Mosquitto's ``use_identity_as_username``, can confine it to
``{prefix}/{site}/{id}/#`` with one ACL pattern: docs/provenance.md, Access control), ``O`` =
the site, and a SAN URI ``urn:tea:gateway:{site}:{id}``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["ec", "ed25519", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def gateway_uri(site: str, gateway_id: str) -> str:
    return f"urn:tea:gateway:{site}:{gateway_id}"


def gateway_cn(site: str, gateway_id: str) -> str:
    return f"{site}/{gateway_id}"


def new_key(kind: KeyType = "ec") -> PrivateKey:
    """A fresh private key: P-256 (default; ES256), Ed25519 (EdDSA) or RSA 3072 (PS256)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | rsa.RSAPrivateKey):
        raise ValueError(  # noqa: TRY004 - a file with the wrong content, as load_pem raises
            f"unsupported key type {type(key).__name__} (expected EC P-256, "
                         "Ed25519 or RSA)")
    return key


def make_csr(key: PrivateKey, site: str, gateway_id: str) -> x509.CertificateSigningRequest:
    """A PKCS#10 request naming the gateway (subject CN and O, SAN URI), signed by its key."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, gateway_cn(site, gateway_id)),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
    ])
    builder = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier(gateway_uri(site, gateway_id))]),
                   critical=False))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@dataclass(frozen=True, slots=True)
class Lifetime:
    not_before: datetime
    not_after: datetime
    serial: int
    subject: str

    @property
    def total(self) -> timedelta:
        return self.not_after - self.not_before

    def renew_at(self, fraction: float) -> datetime:
        """When to renew: ``fraction`` of the lifetime after notBefore (RFC 7030 leaves it to
        the client; two thirds leaves a third of the lifetime for retries)."""
        return self.not_before + self.total * fraction

    def left(self, now: datetime) -> timedelta:
        return self.not_after - now


def lifetime(cert_pem: bytes) -> Lifetime:
    """The first certificate of a PEM file (the leaf)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return Lifetime(cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number,
                    cert.subject.rfc4514_string())


def certs_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def matches(cert_pem: bytes, key: PrivateKey) -> bool:
    """Does the (leaf) certificate carry this key's public key?"""
    cert = x509.load_pem_x509_certificate(cert_pem)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory (created with
    ``mode``: a private key is never readable by others, not even for a moment), fsync, then
    rename over the old file and fsync the directory: a power cut leaves the old or the new
    file, never a half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _new(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def install(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem_bytes: bytes) -> None:
    """Put a renewed certificate and its new key in place, safe against a power cut: both are
    written next to the old ones as ``*.new`` first, then renamed certificate first, key
    second; :func:`recover` finishes an install that a power cut interrupted."""
    write_atomic(_new(key_path), key_pem_bytes, mode=0o600)
    write_atomic(_new(cert_path), cert_pem, mode=0o644)
    os.replace(_new(cert_path), cert_path)
    os.replace(_new(key_path), key_path)


def recover(cert_path: Path, key_path: Path, password: bytes | None = None) -> str | None:
    """After a power cut during :func:`install`: make certificate and key a pair again.
    Returns what was done (for the log), None when there was nothing to do."""
    new_key, new_cert = _new(key_path), _new(cert_path)
    if not new_key.exists():
        if new_cert.exists():
            new_cert.unlink()  # the key never made it: the old pair is intact
            return "an unfinished renewal (certificate only) was discarded"
        return None
    try:
        fresh = load_key(new_key.read_bytes(), password)
    except (OSError, ValueError) as exc:
        new_key.unlink()
        new_cert.unlink(missing_ok=True)
        return f"an unfinished renewal with an unreadable key was discarded ({exc})"
    if new_cert.exists() and matches(new_cert.read_bytes(), fresh):
        os.replace(new_cert, cert_path)
    if cert_path.exists() and matches(cert_path.read_bytes(), fresh):
        os.replace(new_key, key_path)
        return "an interrupted renewal was completed (the new key matches the new certificate)"
    new_key.unlink()
    new_cert.unlink(missing_ok=True)
    return "an unfinished renewal was discarded (the old certificate and key are kept)"
