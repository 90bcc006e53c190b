"""Test PKI made with the openssl CLI at test time: a CA, a server certificate for
127.0.0.1/localhost, client certificates (valid and expired) and an unrelated CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _key(name: str, d: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-out", f"{name}.key", cwd=d)
    (d / f"{name}.key").chmod(0o600)


def _ca(name: str, d: Path, *, days: int = 30) -> None:
    _key(name, d)
    # keyUsage: RFC 5280 4.2.1.3 wants keyCertSign on a CA, and verify's path validation
    # checks it (openssl's default v3_ca leaves it out).
    _run("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days",
         str(days), "-subj", f"/CN=Test {name}", "-addext",
         "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_ca(d: Path, name: str, *, days: int) -> Path:
    """A self-signed CA valid for ``days`` days; returns its PEM path (key next to it)."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(name, d, days=days)
    return d / f"{name}.pem"


def _leaf(name: str, ca: str, d: Path, *, days: int, server: bool) -> None:
    _key(name, d)
    _run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
         cwd=d)
    ext = d / f"{name}.ext"
    keyids = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    if server:
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "extendedKeyUsage=serverAuth\n" + keyids)
    else:
        # The gateway identity of the e2e configs (lab/gw-test), as `identity init` asks.
        ext.write_text("subjectAltName=URI:urn:tea:gateway:lab:gw-test\n"
                       "extendedKeyUsage=clientAuth\n" + keyids)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-extfile", ext.name,
         cwd=d)


@dataclass(frozen=True, slots=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    other_ca: Path


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    _ca("ca", d)
    _ca("otherca", d)
    _leaf("server", "ca", d, days=30, server=True)
    _leaf("client", "ca", d, days=10, server=False)
    _leaf("expired", "ca", d, days=-1, server=False)
    return Pki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "expired.pem", d / "expired.key", d / "otherca.pem")


def tls_listener_lines(pki: Pki, *, require_certificate: bool = False) -> list[str]:
    """Lines for Mosquitto(extra=...): they apply to the generated listener."""
    lines = [f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}"]
    if require_certificate:
        lines += ["require_certificate true", "use_identity_as_username false"]
    return lines
