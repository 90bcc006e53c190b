"""Provenance the cloud can verify (docs/provenance.md): chained documents, detached JWS.

Pure apart from reading key files in :func:`load_signer` / :func:`load_verify_key`.

* :func:`document_bytes` builds an EPCISDocument once, with its place in the gateway's chain
  (``tea:gateway``, ``tea:chainId``, ``tea:seq``, ``tea:prevHash`` or ``tea:chainStart``,
  ``tea:gaps``); those bytes are frozen in the buffer and are what is signed and sent.
* :class:`Signer` makes a detached compact JWS (RFC 7515 Appendix F): ``header..signature``,
  the standard JWS signing input ``BASE64URL(header) || '.' || BASE64URL(payload)`` over the
  exact payload bytes, with the payload left out. The protected header names the algorithm
  (from the key: ES256, EdDSA, PS256), ``x5t#S256`` of the signing certificate and ``x5c``
  (the certificate, then any intermediates its file holds).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.buffer.chain import ChainLink
from agent.pipeline.epcis import CONTEXT, iso_ms

if TYPE_CHECKING:
    # cryptography and joserfc are imported where a key is loaded or a signature made or
    # checked: an agent that does not sign never pays their ~9 MB of RSS (issue 12).
    from cryptography import x509
    from joserfc.jwk import ECKey, OKPKey, RSAKey

JWS_PROPERTY = "tea-jws"  # MQTT 5 user property carrying the detached JWS
SIGNATURES_SUFFIX = "signatures"  # MQTT 3.1.1: {base}/signatures carries them (see docs)
ALGORITHMS = ("ES256", "EdDSA", "Ed25519", "PS256")  # accepted by verify


class SigningError(Exception):
    """The signing key or certificate cannot be used; the message says which and why."""


@cache
def _registry_class() -> Any:
    from joserfc import jws

    class _Registry(jws.JWSRegistry):
        """joserfc warns that "EdDSA" is ambiguous (RFC 9864: it covers Ed448 too). Our keys
        are Ed25519, checked when loaded, so the generic name is unambiguous here; the brief's
        wire contract names EdDSA, and verify also accepts the fully specified "Ed25519".
        Limits: a document may be as large as the broker takes; the header carries ``x5c``."""

        max_header_length = 16 * 1024
        max_payload_length = 256 * 1024 * 1024  # MQTT's own limit

        def get_alg(self, name: str) -> Any:
            if name == "EdDSA":
                if self.allowed and name not in self.allowed:
                    return super().get_alg(name)
                return self.algorithms[name]
            return super().get_alg(name)

    return _Registry


def _registry() -> Any:
    return _registry_class()(algorithms=list(ALGORITHMS))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256_ref(payload: bytes) -> str:
    return "sha-256:" + hashlib.sha256(payload).hexdigest()


def document_bytes(payloads: Sequence[str], created: datetime, *, gateway: str,
                   link: ChainLink) -> bytes:
    """The EPCISDocument around stored event JSON (not re-parsed), placed in the chain."""
    head: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_ms(created),
        "tea:gateway": gateway,
        "tea:chainId": link.chain_id,
        "tea:seq": link.seq,
    }
    if link.prev_hash is not None:
        head["tea:prevHash"] = link.prev_hash
    if link.chain_start is not None:
        head["tea:chainStart"] = link.chain_start
    if link.gaps:
        head["tea:gaps"] = list(link.gaps)
    text = json.dumps(head, separators=(",", ":"), sort_keys=False)
    return (text[:-1] + ',"epcisBody":{"eventList":[' + ",".join(payloads) + "]}}").encode()


# Room the chain fields take in a document (with a few gaps), for splitting before freezing.
CHAIN_FIELDS_BYTES = 700


def _alg_of(key: Any) -> tuple[str, type[ECKey] | type[OKPKey] | type[RSAKey]]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise SigningError(f"EC keys must be on P-256 (ES256); this one is {key.curve.name}")
        return "ES256", ECKey
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA", OKPKey
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SigningError(f"RSA keys must have 2048 bits or more; this one has "
                               f"{key.key_size}")
        return "PS256", RSAKey
    raise SigningError(f"unsupported key type {type(key).__name__}; expected P-256, Ed25519 "
                       "or RSA")


def cert_thumbprint(cert: x509.Certificate) -> str:
    """``x5t#S256``: base64url SHA-256 of the certificate's DER (RFC 7515 §4.1.8)."""
    return b64url(cert.fingerprint(hashes_sha256()))


def hashes_sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


@dataclass(frozen=True, slots=True)
class Signer:
    alg: str
    thumbprint: str  # x5t#S256 of the certificate
    # The certificate and the intermediates its file holds (base64 DER, leaf first), so a
    # verifier holding only the root CA can build the path.
    x5c: tuple[str, ...]
    _key: Any  # joserfc key

    @property
    def jws_bytes(self) -> int:
        """An upper bound of one detached JWS's length: the header (with x5c, which grows
        with every intermediate) and a signature of up to 4096-bit RSA."""
        header = {"alg": self.alg, "x5t#S256": self.thumbprint, "x5c": list(self.x5c)}
        return len(b64url(json.dumps(header).encode())) + 2 + 700

    def sign(self, payload: bytes) -> str:
        """Detached compact JWS over ``payload``: ``header..signature``."""
        from joserfc import jws

        header = {"alg": self.alg, "x5t#S256": self.thumbprint, "x5c": list(self.x5c)}
        full = jws.serialize_compact(header, payload, self._key, registry=_registry())
        h, _p, s = full.split(".")
        return f"{h}..{s}"


def signer_from_pem(key_pem: bytes, cert_pem: bytes, *, password: bytes | None = None) -> Signer:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"cannot load the private key: {exc}") from exc
    try:
        # The file may hold the chain (leaf first, then intermediates, as TLS wants it): all
        # of it goes into x5c (RFC 7515 4.1.6), so a verifier holding only the root CA can
        # build the path.
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise SigningError(f"cannot load the certificate: {exc}") from exc
    cert = chain[0]
    alg, cls = _alg_of(key)
    pub = cert.public_key()
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if pub.public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise SigningError("the certificate does not belong to the key (public keys differ)")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    x5c = tuple(base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in chain)
    return Signer(alg, cert_thumbprint(cert), x5c, cls.import_key(pem))


def key_file_problem(path: Path) -> str | None:
    """Why a signing key file may not be used (permissions), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"permissions {stat.filemode(mode)} let other users read it; run: chmod 600 "
                f"{path}")
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def load_signer(key: Path, cert: Path, *, password_file: Path | None = None) -> Signer:
    problem = key_file_problem(key)
    if problem is not None:
        raise SigningError(f"signing key {key}: {problem}")
    password = password_file.read_bytes().strip() if password_file is not None else None
    try:
        return signer_from_pem(key.read_bytes(), cert.read_bytes(), password=password)
    except OSError as exc:
        raise SigningError(f"cannot read {exc.filename}: {exc.strerror}") from exc


# ----------------------------------------------------------------------------- verifying


@dataclass(frozen=True, slots=True)
class VerifyKey:
    thumbprint: str
    key: Any  # joserfc public key
    subject: str


def verify_key_from_cert(cert: x509.Certificate) -> VerifyKey:
    from cryptography.hazmat.primitives import serialization

    pub = cert.public_key()
    _alg, cls = _alg_of(pub)
    pem = pub.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return VerifyKey(cert_thumbprint(cert), cls.import_key(pem), cert.subject.rfc4514_string())


def jws_header(detached: str) -> dict[str, Any]:
    h = detached.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    if not isinstance(data, dict):
        raise ValueError("the JWS header is not a JSON object")  # noqa: TRY004 - parse error
    return data


def verify_detached(detached: str, payload: bytes, key: VerifyKey) -> str | None:
    """None when ``detached`` is a valid signature of ``payload`` by ``key``; else why not."""
    parts = detached.split(".")
    if len(parts) != 3 or parts[1]:
        return "not a detached compact JWS (header..signature)"
    try:
        header = jws_header(detached)
    except ValueError as exc:
        return f"unreadable JWS header: {exc}"
    if header.get("alg") not in ALGORITHMS:
        return f"algorithm {header.get('alg')!r} not accepted"
    if header.get("x5t#S256") != key.thumbprint:
        return "signed with another certificate (x5t#S256 differs)"
    from joserfc import jws
    from joserfc.errors import JoseError

    try:
        jws.deserialize_compact(f"{parts[0]}.{b64url(payload)}.{parts[2]}", key.key,
                                registry=_registry())
    except (JoseError, ValueError) as exc:
        return f"signature does not verify ({type(exc).__name__})"
    return None
