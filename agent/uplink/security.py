"""Uplink security, the one home of its rules: start-time checks (exit code 2), secrets from
files or the environment, the TLS context, and certificate expiry over whole bundles.

The uplink, ``doctor``, the health message (``/health``) and ``edge-agent status`` all call
these functions; nothing else reads a secret or decodes a certificate. The TLS context itself
is built by ``agent.readers.link.client_ssl_context``, the one builder shared with the network
readers (LLRP over TLS), which sit in a lower layer.

Secret resolution (:func:`resolve_password`, :func:`read_secret`), one precedence everywhere:
``*_file`` first (the file's text with one trailing newline stripped, as ``echo s > f`` writes
it), then ``*_env`` (the variable must be set), then the value written in the config (warned
about at start). The config allows only one source per secret (exit 2 otherwise), so the order
only decides for configs built in code.

Certificate expiry (:func:`cert_expiry`): every certificate of a PEM file counts, and the file
expires with its earliest ``notAfter`` (a CA bundle or a client chain breaks when its first
member does).

Nothing here logs a password, a key or a secret: messages name the file or variable only.
"""

from __future__ import annotations

import functools
import math
import os
import re
import ssl
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.config import AgentConfig, ConfigError, MqttConfig, is_loopback, read_secret_file
from agent.readers.link import client_ssl_context

__all__ = [
    "CertExpiry",
    "SecretError",
    "SecurityReport",
    "build_ssl_context",
    "bundle_not_after",
    "cert_expiry",
    "check_security",
    "file_expiry",
    "read_secret",
    "resolve_password",
]


class SecretError(Exception):
    """A secret (password, command key) could not be read; the message names where from."""


@dataclass(slots=True)
class SecurityReport:
    errors: list[str] = field(default_factory=list)  # refuse to start (exit code 2)
    warnings: list[str] = field(default_factory=list)


def _readable_file(path: Path, what: str, errors: list[str]) -> bool:
    try:
        st = path.stat()
    except OSError as exc:
        errors.append(f"{what} {path}: cannot read it ({exc.strerror})")
        return False
    if not stat.S_ISREG(st.st_mode):
        errors.append(f"{what} {path}: not a regular file")
        return False
    if not os.access(path, os.R_OK):
        errors.append(f"{what} {path}: not readable by this user")
        return False
    return True


def _private_file(path: Path, what: str, errors: list[str]) -> None:
    if not _readable_file(path, what, errors):
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        errors.append(
            f"{what} {path}: permissions {stat.filemode(mode)} let other users read it; "
            f"run: chmod 600 {path}"
        )


def check_security(cfg: AgentConfig) -> SecurityReport:
    """Everything that must be true before the agent may start; errors mean exit code 2."""
    m = cfg.uplink.mqtt
    r = SecurityReport()
    insecure: list[str] = []
    if not m.tls_enabled:
        remote = [f"{h}:{p}" for h, p in m.brokers if not is_loopback(h)]
        if remote:
            insecure.append(f"TLS is off towards {', '.join(remote)} (not loopback): "
                            "credentials and events would cross the network in plain text")
    elif not m.tls.verify:
        insecure.append("tls.verify is false: the broker's certificate and hostname are "
                        "not checked (anyone in the path can impersonate it)")
    for problem in insecure:
        if m.allow_insecure:
            r.warnings.append(f"insecure (allowed by allow_insecure: true): {problem}")
        else:
            r.errors.append(f"uplink.mqtt: {problem}; fix it or set allow_insecure: true")
    if m.tls_enabled:
        if m.tls.ca is not None:
            _readable_file(m.tls.ca, "uplink.mqtt.tls.ca", r.errors)
        if m.tls.cert is not None:
            _readable_file(m.tls.cert, "uplink.mqtt.tls.cert", r.errors)
        if m.tls.key is not None:
            _private_file(m.tls.key, "uplink.mqtt.tls.key", r.errors)
        if m.tls.key_password_file is not None:
            _private_file(m.tls.key_password_file, "uplink.mqtt.tls.key_password_file", r.errors)
    if m.password is not None:
        r.warnings.append("uplink.mqtt.password is written in the configuration file; "
                          "prefer password_file or password_env")
    if m.password_file is not None:
        _private_file(m.password_file, "uplink.mqtt.password_file", r.errors)
    if m.password_env is not None and m.password_env not in os.environ:
        r.errors.append(f"uplink.mqtt.password_env: environment variable {m.password_env} "
                        "is not set")
    signing = cfg.uplink.signing_files
    if signing is not None:
        from agent.uplink.provenance import SigningError, load_signer

        key, cert, password_file = signing
        where = ("uplink.signing" if cfg.uplink.signing.key is not None
                 else "uplink.signing (the mTLS key uplink.mqtt.tls)")
        try:
            load_signer(key, cert, password_file=password_file)
        except SigningError as exc:
            r.errors.append(f"{where}: {exc}")
    c = cfg.uplink.commands
    if c.enabled:
        if c.secret_file is not None:
            _private_file(c.secret_file, "uplink.commands.secret_file", r.errors)
        if c.secret_env is not None and c.secret_env not in os.environ:
            r.errors.append(f"uplink.commands.secret_env: environment variable {c.secret_env} "
                            "is not set")
    return r


def read_secret(file: Path | None, env: str | None, what: str) -> str | None:
    """The secret from a file or an environment variable (see the module docstring); None
    when neither is given. Raises :class:`SecretError` naming where it looked."""
    if file is not None:
        try:
            return read_secret_file(file, what)
        except ConfigError as exc:
            raise SecretError(exc.issues[0].message) from None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"{what}: environment variable {env} is not set")
        return value
    return None


def resolve_password(cfg: MqttConfig) -> str | None:
    """The broker password: password_file, then password_env, then password."""
    secret = read_secret(cfg.password_file, cfg.password_env, "uplink.mqtt password")
    return secret if secret is not None else cfg.password


def build_ssl_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verified TLS (CA file or the system store, hostname checked), client cert if given."""
    t = cfg.tls
    # verify off is refused at start unless allow_insecure (check_security).
    key_password = (read_secret(t.key_password_file, None, "uplink.mqtt.tls.key_password_file")
                    if t.cert is not None and t.key is not None else None)
    return client_ssl_context(t, key_password)


@dataclass(frozen=True, slots=True)
class CertExpiry:
    name: str  # "client" | "ca"
    path: str
    not_after: datetime | None  # None: could not be read
    days_left: float | None

    @property
    def expired(self) -> bool:
        return self.days_left is not None and self.days_left < 0


_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


def _parse_not_after(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)
    except ValueError:
        return None


def _pem_not_after(pem: bytes) -> datetime | None:
    """notAfter of one PEM certificate: CPython's own decoder (it reads a file, so the block
    goes through a private temporary file), ``openssl x509 -enddate`` as fall-back."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is not None:
        try:
            with tempfile.NamedTemporaryFile(suffix=".pem") as f:
                f.write(pem)
                f.flush()
                return _parse_not_after(str(decode(f.name)["notAfter"]))
        except (OSError, ssl.SSLError, KeyError, ValueError):
            pass
    try:
        out = subprocess.run(  # fixed argv, no shell
            ["/usr/bin/openssl", "x509", "-noout", "-enddate"],
            input=pem, capture_output=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _parse_not_after(out.decode(errors="replace").strip().removeprefix("notAfter="))


def bundle_not_after(path: Path) -> list[datetime | None]:
    """notAfter of every certificate in a PEM file, in file order (None: that block could
    not be decoded); empty if the file cannot be read or holds no certificate."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return [_pem_not_after(m.group(0) + b"\n") for m in _PEM_CERT.finditer(data)]


def _not_after(path: Path) -> datetime | None:
    """The earliest notAfter of the certificates in the file: for a client certificate with
    its chain and for a CA bundle alike, the first one to expire breaks the connection.
    Cached per (path, mtime, size): /metrics and status ask often, a renewal changes mtime."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _cached_not_after(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _cached_not_after(path: str, _mtime_ns: int, _size: int) -> datetime | None:
    known = [na for na in bundle_not_after(Path(path)) if na is not None]
    return min(known) if known else None


def cert_expiry(cfg: MqttConfig, now: datetime) -> list[CertExpiry]:
    """Expiry of the client certificate and of the CA bundle: for each file the earliest
    notAfter of all the certificates it holds."""
    out: list[CertExpiry] = []
    if not cfg.tls_enabled:
        return out
    for name, path in (("client", cfg.tls.cert), ("ca", cfg.tls.ca)):
        if path is not None:
            out.append(file_expiry(name, path, now))
    return out


def file_expiry(name: str, path: Path, now: datetime) -> CertExpiry:
    """One PEM file's expiry: the earliest notAfter of all its certificates (None: none
    could be read), days left rounded down to a tenth."""
    na = _not_after(path)
    days = None if na is None else math.floor((na - now).total_seconds() / 86400 * 10) / 10
    return CertExpiry(name, str(path), na, days)
