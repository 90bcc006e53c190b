"""Admin password, sessions and CSRF for the technician's page.

The password is stored only as a scrypt hash (``hashlib.scrypt``, stdlib) in one line:
``scrypt$N$r$p$<salt b64>$<hash b64>``. A session is a random token in an HttpOnly,
SameSite=Strict cookie; each session has its own CSRF token, which every state-changing
request sends back in the ``X-CSRF-Token`` header. Failed logins are limited per client.

Sessions survive the restart that applies a config from the page: with a ``store`` file
(``web-sessions.json`` next to the buffer, mode 0600) they are written on login/logout and at
most every SAVE_EVERY_S while used, as SHA-256 hashes of the session tokens (the token itself
is only in the browser's cookie), the CSRF token and the wall-clock time of the last use; at
start the ones idle for less than ``idle_s`` are loaded. A wall clock that stepped between
(no RTC before NTP) makes them look idle too long, or from the future: they are dropped.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD = 8
COOKIE = "edge_agent_session"
SET_PASSWORD_HINT = "edge-agent set-admin-password -c CONFIG"  # noqa: S105 - a command


class PasswordFileError(Exception):
    pass


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def read_password_hash(path: Path | None) -> str | None:
    """The stored hash, or None when no password is set (no key, no file, empty file)."""
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PasswordFileError(f"{path}: {exc.strerror or exc}") from exc
    if not text:
        return None
    if not text.startswith("scrypt$"):
        raise PasswordFileError(f"{path}: not a password hash written by "
                                f"`{SET_PASSWORD_HINT}`")
    return text


def write_password_file(path: Path, password: str, *, group: str | None = None) -> None:
    """Atomically (temp + rename), mode 0600; with ``group``: that group may read it (0640),
    e.g. the service's group when root writes the file for it. KeyError: no such group."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    gid = grp.getgrnam(group).gr_gid if group is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o600 if gid is None else 0o640)
        with os.fdopen(fd, "w") as f:
            f.write(hash_password(password) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


SAVE_EVERY_S = 30.0


def token_key(token: str) -> str:
    """What is kept of a session token (in memory and in the store): its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    token: str  # "" for a session loaded from the store (only the browser has it)
    csrf: str
    client: str
    last_used: float
    key: str = ""


@dataclass(slots=True)
class LoginLimiter:
    """At most ``max_failures`` failed logins per client within ``window_s``."""

    max_failures: int = 5
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        now = self.clock()
        recent = [t for t in self._failures.get(client, []) if now - t < self.window_s]
        self._failures[client] = recent
        if len(recent) < self.max_failures:
            return 0.0
        return self.window_s - (now - recent[0])

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(self.clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


@dataclass(slots=True)
class Sessions:
    idle_s: float = 1800.0
    clock: Callable[[], float] = time.monotonic
    max_sessions: int = 32
    store: Path | None = None  # persisted here (0600) across restarts; None: memory only
    wall: Callable[[], float] = time.time
    _by_token: dict[str, Session] = field(default_factory=dict)  # by token_key()
    _saved_at: float | None = None
    _store_failed: bool = False

    def create(self, client: str) -> Session:
        self._expire()
        if len(self._by_token) >= self.max_sessions:  # drop the least recently used
            oldest = min(self._by_token.values(), key=lambda s: s.last_used)
            del self._by_token[oldest.key]
        token = secrets.token_urlsafe(32)
        s = Session(token, secrets.token_urlsafe(32), client, self.clock(), token_key(token))
        self._by_token[s.key] = s
        self.save()
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        self._expire()
        s = self._by_token.get(token_key(token))
        if s is not None:
            s.last_used = self.clock()
            if self._saved_at is None or s.last_used - self._saved_at > SAVE_EVERY_S:
                self.save()
        return s

    def drop(self, token: str | None) -> None:
        if token and self._by_token.pop(token_key(token), None) is not None:
            self.save()

    def _expire(self) -> None:
        now = self.clock()
        for t in [t for t, s in self._by_token.items() if now - s.last_used > self.idle_s]:
            del self._by_token[t]

    # -- the store -----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the sessions to the store (temp + rename, 0600); a failure is logged once."""
        if self.store is None:
            return
        now, wall = self.clock(), self.wall()
        self._saved_at = now
        doc = {"version": 1, "sessions": [
            {"key": s.key, "csrf": s.csrf, "client": s.client,
             "lastUsed": round(wall - (now - s.last_used), 3)}
            for s in self._by_token.values()]}
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.store.parent, prefix=f".{self.store.name}.")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(doc, f)
                os.replace(tmp, self.store)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if not self._store_failed:
                self._store_failed = True
                log.warning("http: logins are not kept across restarts: cannot write %s: %s",
                            self.store, exc.strerror or exc)
            return
        self._store_failed = False

    def load(self) -> int:
        """Sessions from the store still within ``idle_s`` (by the wall clock); how many."""
        if self.store is None:
            return 0
        try:
            if self.store.stat().st_mode & 0o077:
                log.warning("http: %s is readable by others: ignored (logins start afresh)",
                            self.store)
                return 0
            doc = json.loads(self.store.read_text())
            entries = doc["sessions"]
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("http: %s cannot be read (%s): logins start afresh", self.store, exc)
            return 0
        now, wall = self.clock(), self.wall()
        for e in entries if isinstance(entries, list) else []:
            try:
                key, csrf, client = str(e["key"]), str(e["csrf"]), str(e["client"])
                age = wall - float(e["lastUsed"])
            except (KeyError, TypeError, ValueError):
                continue
            if 0 <= age <= self.idle_s and len(key) == 64 and len(self._by_token) < \
                    self.max_sessions:
                self._by_token[key] = Session("", csrf, client, now - age, key)
        return len(self._by_token)


def csrf_ok(session: Session | None, header: str | None) -> bool:
    return session is not None and header is not None and hmac.compare_digest(
        session.csrf.encode(), header.encode())
