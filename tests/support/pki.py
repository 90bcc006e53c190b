"""A plant PKI made with ``cryptography``: root CA -> intermediate CA -> gateway certificates,
and CRLs, for the trust-path tests of ``edge-agent verify`` (docs/provenance.md).

Certificates follow RFC 5280 as a real CA issues them (CA: basicConstraints + keyUsage
keyCertSign; every certificate: key identifiers; gateways: clientAuth and the SAN URI
``urn:tea:gateway:{site}:{id}`` with CN ``{site}/{id}``, as ``edge-agent identity`` asks).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.uplink.identity import gateway_uri


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: Any) -> bytes:
    out: bytes = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return out


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


@dataclass(slots=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    revoked: list[tuple[int, datetime, x509.ReasonFlags | None]] = field(default_factory=list)

    def issue_ca(self, cn: str, *, start: datetime, days: float = 365) -> Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name(cn), key, start, days)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .sign(self.key, hashes.SHA256()))
        return Ca(cert, key)

    def issue_gateway(self, site: str, gateway_id: str, *, start: datetime,
                      days: float = 30, san_uri: str | None = None
                      ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A gateway's certificate valid from ``start`` for ``days`` (its SAN URI may be
        overridden, to make one that names another gateway)."""
        key = ec.generate_private_key(ec.SECP256R1())
        uri = san_uri or gateway_uri(site, gateway_id)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{site}/{gateway_id}"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, site)])
        cert = (self._builder(subject, key, start, days)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(uri)]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, key

    def issue_client(self, cn: str, *, start: datetime, days: float = 30
                     ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A plain TLS client certificate (CN only), e.g. the cloud's consumer."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name(cn), key, start, days)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, key

    def issue_server(self, *, start: datetime, days: float = 30
                     ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A server certificate for 127.0.0.1 / localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name("localhost"), key, start, days)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, key

    def _builder(self, subject: x509.Name, key: Any, start: datetime,
                 days: float) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + timedelta(days=days))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False))

    def revoke(self, cert: x509.Certificate, at: datetime,
               reason: x509.ReasonFlags | None = None) -> None:
        self.revoked.append((cert.serial_number, at, reason))

    def crl(self, now: datetime) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now).next_update(now + timedelta(days=7)))
        for serial, at, reason in self.revoked:
            r = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            if reason is not None:
                r = r.add_extension(x509.CRLReason(reason), critical=False)
            b = b.add_revoked_certificate(r.build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def root_ca(cn: str = "Plant Root CA", *, start: datetime | None = None,
            days: float = 3650) -> Ca:
    start = start or datetime.now(UTC) - timedelta(days=1)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Ca(cert, key)


def write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path
