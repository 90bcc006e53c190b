"""A real CA (made with ``cryptography``) behind an EST endpoint (RFC 7030) over real TLS, for
the identity tests: ``/cacerts``, ``/simpleenroll`` (HTTP Basic or a client certificate of
this CA), ``/simplereenroll`` (a valid client certificate of this CA whose subject matches the
CSR). Certificates are issued for ``lifetime_s`` seconds, so renewal can be watched in a test.

``EstServer(dir)`` starts it on a free port of 127.0.0.1 in a thread; ``.url``, ``.ca_pem``;
``.server_cert`` / ``.server_key`` (a server certificate for 127.0.0.1 from the same CA, which
a Mosquitto listener can use too); ``.issue(name)`` makes a client certificate directly.
Faults: ``fail_next`` (503 for the next N enroll requests), ``pending_next`` (202 once).
"""

from __future__ import annotations

import base64
import http.server
import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class EstServer:
    def __init__(self, d: Path, *, username: str = "gw", password: str = "enroll-pw",
                 lifetime_s: float = 3600.0) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.username, self.password = username, password
        self.lifetime_s = lifetime_s
        self.fail_next = 0
        self.pending_next = 0
        self.issued: list[x509.Certificate] = []
        self.requests: list[tuple[str, int]] = []  # (path, status)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC) - timedelta(minutes=5)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Plant CA")])
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   # RFC 5280 4.2.1.3: a CA's keyUsage names keyCertSign (verify --ca checks)
                   .add_extension(x509.KeyUsage(
                       digital_signature=False, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                       self.ca_key.public_key()), critical=False)
                   .sign(self.ca_key, hashes.SHA256()))
        self.ca_pem = d / "est-ca.pem"
        self.ca_pem.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self.issue("server", server=True, days=30)
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/.well-known/est"

    def _sign(self, subject: x509.Name, public_key: Any, *, seconds: float,
              server: bool = False, san: x509.SubjectAlternativeName | None = None
              ) -> x509.Certificate:
        now = datetime.now(UTC) - timedelta(seconds=1)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.ca.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + timedelta(seconds=seconds))
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.ca_key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            if san is not None:
                builder = builder.add_extension(san, critical=False)
        return builder.sign(self.ca_key, hashes.SHA256())

    def issue(self, name: str, *, cn: str | None = None, server: bool = False,
              days: float = 1.0) -> tuple[Path, Path]:
        """A key and certificate of this CA (CN ``cn`` or ``name``), written to the dir."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)])
        cert = self._sign(subject, key.public_key(), seconds=days * 86400, server=server)
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return cert_path, key_path

    # ------------------------------------------------------------------ server

    def start(self) -> EstServer:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        ctx.load_verify_locations(str(self.ca_pem))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # Basic auth or a client certificate
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", *, pkcs7_body: bool = False,
                      headers: dict[str, str] | None = None) -> None:
                server.requests.append((self.path, status))
                self.send_response(status)
                if pkcs7_body:
                    self.send_header("Content-Type", "application/pkcs7-mime; "
                                     "smime-type=certs-only")
                    self.send_header("Content-Transfer-Encoding", "base64")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _peer(self) -> x509.Certificate | None:
                der = self.connection.getpeercert(binary_form=True)
                return x509.load_der_x509_certificate(der) if der else None

            def do_GET(self) -> None:
                if self.path.endswith("/cacerts"):
                    der = pkcs7.serialize_certificates([server.ca], serialization.Encoding.DER)
                    self._send(200, base64.encodebytes(der), pkcs7_body=True)
                else:
                    self._send(404)

            def do_POST(self) -> None:
                op = self.path.rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if op not in ("simpleenroll", "simplereenroll"):
                    self._send(404)
                    return
                peer = self._peer()
                if op == "simplereenroll" and peer is None:
                    self._send(401, b"simplereenroll needs the current certificate")
                    return
                if op == "simpleenroll" and peer is None:
                    want = "Basic " + base64.b64encode(
                        f"{server.username}:{server.password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self._send(401, b"bad credentials",
                                   headers={"WWW-Authenticate": 'Basic realm="est"'})
                        return
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self._send(503, b"CA busy")
                    return
                if server.pending_next > 0:
                    server.pending_next -= 1
                    self._send(202, headers={"Retry-After": "1"})
                    return
                csr = x509.load_der_x509_csr(base64.b64decode(b"".join(body.split())))
                if op == "simplereenroll" and peer is not None and peer.subject != csr.subject:
                    self._send(403, b"subject changed")
                    return
                try:
                    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    san_value: x509.SubjectAlternativeName | None = san.value
                except x509.ExtensionNotFound:
                    san_value = None
                cert = server._sign(csr.subject, csr.public_key(), seconds=server.lifetime_s,
                                    san=san_value)
                server.issued.append(cert)
                der = pkcs7.serialize_certificates([cert], serialization.Encoding.DER)
                self._send(200, base64.encodebytes(der), pkcs7_body=True)

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="est-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> EstServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
