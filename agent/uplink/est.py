"""EST client (RFC 7030, Enrollment over Secure Transport): the plant CA issues and renews the
gateway's certificate over HTTPS.

* ``GET  {url}/cacerts``: the CA certificates (§4.1; PKCS#7 certs-only, base64 DER).
* ``POST {url}/simpleenroll``: a PKCS#10 CSR (``application/pkcs10``, base64 DER, §4.2.1),
  authenticated with HTTP Basic (§3.2.3) or a bootstrap client certificate (§3.3.2).
* ``POST {url}/simplereenroll``: the same, authenticated with the current certificate (§4.2.2).
* ``202 Accepted`` + ``Retry-After`` (§4.2.3): the CA needs time (manual approval): EstPending.

Blocking (stdlib ``http.client``); the agent runs it in a worker thread (agent/uplink/
renewal.py), the CLI directly. The EST server is always verified: its CA from ``est.ca``, or
the system store, and its host name.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import os
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from agent.config import EstConfig, read_secret_file


class EstError(Exception):
    """The EST server refused or could not be reached; the message says why and what to do."""


class EstPending(EstError):
    """202: the request is queued at the CA; ask again after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class ClientCert:
    cert: Path
    key: Path
    password: str | None = None


def _context(cfg: EstConfig, client: ClientCert | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cfg.ca) if cfg.ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key), client.password)
    return ctx


def parse_certs(body: bytes) -> list[x509.Certificate]:
    """An ``application/pkcs7-mime`` certs-only body: base64 (whitespace allowed) of DER."""
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        certs = pkcs7.load_der_pkcs7_certificates(der)
    except (binascii.Error, ValueError) as exc:
        raise EstError(f"the EST server's answer is not a PKCS#7 certs-only message: {exc}") \
            from exc
    if not certs:
        raise EstError("the EST server's PKCS#7 answer holds no certificate")
    return list(certs)


class EstClient:
    def __init__(self, cfg: EstConfig, *, config_file: str = "<config>") -> None:
        self.cfg = cfg
        url = urllib.parse.urlsplit(cfg.url)
        self.host = url.hostname or ""
        self.port = url.port or 443
        self.path = url.path.rstrip("/") or "/.well-known/est"
        self._config_file = config_file

    def _basic(self) -> str | None:
        cfg = self.cfg
        if cfg.username is None:
            return None
        if cfg.password_file is not None:
            password = read_secret_file(cfg.password_file, "uplink.est.password_file",
                                        file=self._config_file)
        elif cfg.password_env:
            password = os.environ.get(cfg.password_env, "")
            if not password:
                raise EstError(f"uplink.est.password_env: the environment variable "
                               f"{cfg.password_env} is not set (or empty)")
        else:
            password = ""
        token = base64.b64encode(f"{cfg.username}:{password}".encode()).decode()
        return f"Basic {token}"

    def _call(self, method: str, op: str, body: bytes | None, *,
              client: ClientCert | None, basic: str | None) -> bytes:
        headers = {"Accept": "application/pkcs7-mime"}
        if body is not None:
            headers["Content-Type"] = "application/pkcs10"
            headers["Content-Transfer-Encoding"] = "base64"
        if basic is not None:
            headers["Authorization"] = basic
        where = f"{self.cfg.url.rstrip('/')}/{op}"
        try:
            conn = http.client.HTTPSConnection(self.host, self.port,
                                               context=_context(self.cfg, client),
                                               timeout=self.cfg.timeout_s)
            try:
                conn.request(method, f"{self.path}/{op}", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read(1 << 20)
                status, reason = resp.status, resp.reason
                retry_after = resp.getheader("Retry-After")
            finally:
                conn.close()
        except ssl.SSLCertVerificationError as exc:
            raise EstError(f"{where}: the EST server's certificate is not trusted "
                           f"({exc.verify_message}): check uplink.est.ca") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise EstError(f"{where}: cannot reach the EST server: {exc}") from exc
        if status == 200:
            return data
        if status == 202:
            try:
                wait_s = float(retry_after or 60)
            except ValueError:
                wait_s = 60.0
            raise EstPending(f"{where}: the CA accepted the request and asks to come back "
                             f"in {wait_s:g} s (manual approval?)", wait_s)
        text = data[:300].decode("utf-8", "replace").strip()
        hint = {401: "the EST server wants credentials: check uplink.est.username / "
                     "password_file or the bootstrap certificate",
                403: "the EST server refused this identity: ask the CA operator to allow it"
                }.get(status, "see the EST server's log")
        raise EstError(f"{where}: HTTP {status} {reason}{': ' + text if text else ''}; {hint}")

    def cacerts(self) -> list[x509.Certificate]:
        return parse_certs(self._call("GET", "cacerts", None, client=None, basic=None))

    def enroll(self, csr: x509.CertificateSigningRequest, *,
               current: ClientCert | None = None) -> list[x509.Certificate]:
        """simplereenroll with ``current`` (the certificate being renewed), else simpleenroll
        with the bootstrap certificate and/or HTTP Basic. Returns the issued certificate
        first, then any chain the server sent."""
        der = csr.public_bytes(serialization.Encoding.DER)
        body = base64.encodebytes(der)
        cfg = self.cfg
        if current is not None:
            certs = parse_certs(self._call("POST", "simplereenroll", body, client=current,
                                           basic=None))
        else:
            boot = (ClientCert(cfg.bootstrap_cert, cfg.bootstrap_key)
                    if cfg.bootstrap_cert is not None and cfg.bootstrap_key is not None
                    else None)
            certs = parse_certs(self._call("POST", "simpleenroll", body, client=boot,
                                           basic=self._basic()))
        return _leaf_first(certs, csr)


def _leaf_first(certs: list[x509.Certificate],
                csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    mine = csr.public_key().public_bytes(*fmt)
    leaf = [c for c in certs if c.public_key().public_bytes(*fmt) == mine]
    if not leaf:
        raise EstError("the EST server's answer holds no certificate for this key")
    return leaf + [c for c in certs if c is not leaf[0]]
