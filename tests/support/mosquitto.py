"""A real Mosquitto broker for tests, and a small MQTT 5 subscriber to watch what it delivers.

``Mosquitto`` runs its own ``mosquitto`` process on a free port of 127.0.0.1 with a generated
config, password file, ACL file and persistence directory in a private temp dir::

    with Mosquitto(users={"edge": "pw"}, acl=["user edge", "topic write trace/#"]) as broker:
        ...
        broker.restart()        # same port, same data dir: persisted sessions survive

Gotcha (docs/design.md §6): started as root, Mosquitto drops to the ``mosquitto`` user and then
cannot write its database into a private temp dir; we add ``user root`` when running as root.

``collect(broker, "trace/#")`` runs a paho MQTT 5 subscriber on its own network thread and
collects every message it receives; ``wait_for(predicate, timeout_s)`` blocks until one matches
(call it through ``asyncio.to_thread`` from async tests).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "BrokerError",
    "Collector",
    "Mosquitto",
    "Received",
    "collect",
    "find_mosquitto",
    "password_line",
]


class BrokerError(RuntimeError):
    """The test broker could not be started (the message carries its log)."""


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary, or None.

    ``MOSQUITTO_BIN`` in the environment wins (a path; empty or missing means "none"), then
    PATH, then /usr/sbin (Debian installs it there, often outside a user's PATH).
    """
    override = os.environ.get("MOSQUITTO_BIN")
    if override is not None:
        return override if override and os.access(override, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def password_line(user: str, password: str) -> str:
    """One password-file line in Mosquitto's ``$6$`` format: base64(sha512(password + salt))."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (brokers, HTTP doors)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_free_port = free_port


class Mosquitto:
    """One real Mosquitto process with its own config and data dir.

    users:       username -> password; a password file is written and anonymous access is
                 turned off unless ``allow_anonymous=True`` is passed explicitly.
    acl:         lines of an ACL file (``user edge`` / ``topic write trace/#`` ...).
    max_packet_size, max_inflight_messages, message_size_limit: broker limits (omitted if None).
    extra:       further config lines, written after the generated ones (TLS, per-listener...).
    """

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        acl: Sequence[str] | None = None,
        allow_anonymous: bool | None = None,
        max_packet_size: int | None = None,
        max_inflight_messages: int | None = None,
        message_size_limit: int | None = None,
        persistence: bool = True,
        autosave_interval_s: int | None = None,
        extra: Sequence[str] = (),
        verbose: bool = False,
        start_timeout_s: float = 10.0,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto binary not found on PATH or in /usr/sbin")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self.users = dict(users or {})
        self.acl = list(acl) if acl is not None else None
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.max_packet_size = max_packet_size
        self.max_inflight_messages = max_inflight_messages
        self.message_size_limit = message_size_limit
        self.persistence = persistence
        self.autosave_interval_s = autosave_interval_s
        self.extra = list(extra)
        self.verbose = verbose
        self.start_timeout_s = start_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="mosquitto-test-")
        self.dir = Path(self._tmp.name)
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._closed = False

    # ------------------------------------------------------------------ config

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if self.verbose:
            lines.append("log_type debug")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.data_dir}/"]
            if self.autosave_interval_s is not None:
                lines.append(f"autosave_interval {self.autosave_interval_s}")
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            lines.append(f"password_file {pw}")
        if self.acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text("".join(line + "\n" for line in self.acl))
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if self.max_packet_size is not None:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if self.max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {self.max_inflight_messages}")
        if self.message_size_limit is not None:
            lines.append(f"message_size_limit {self.message_size_limit}")
        lines += self.extra
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Mosquitto:
        """Start on a free port (or the port it had, after stop/kill) and wait until it listens."""
        if self._closed:
            raise BrokerError("this broker was closed")
        if self.running:
            return self
        if self.port:
            self._spawn()
            return self
        for _attempt in range(5):  # a free port can be taken between probe and bind
            self.port = _free_port()
            try:
                self._spawn()
            except BrokerError:
                if "Address already in use" not in self.log_text():
                    raise
                continue
            return self
        raise BrokerError(f"could not find a free port\n{self.log_text()}")

    def _spawn(self) -> None:
        self.conf_path.write_text(self.config_text())
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                self._close_log()
                raise BrokerError(f"mosquitto exited with code {code} at start\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto did not listen on {self.host}:{self.port} within "
                    f"{self.start_timeout_s}s\n{self.log_text()}"
                )
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM and wait: Mosquitto saves its persistence file on the way out."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused broker would not act on SIGTERM
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: nothing is saved since the last autosave."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None
        self._close_log()

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets open but answers nothing (no PUBACKs)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self, *, hard: bool = False) -> None:
        """Stop (or kill, if ``hard``) and start again on the same port and data dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def log_text(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout_s: float = 5.0) -> str:
        """Block until ``needle`` appears in the log; return the log (raise on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.log_text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the mosquitto log:\n{text}")
            time.sleep(0.02)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        if self._closed:
            return
        self.kill()
        self._close_log()
        self._closed = True
        self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mosquitto({self.host}:{self.port}, running={self.running})"


# ---------------------------------------------------------------------------- subscriber


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


class Collector:
    """Messages received by a test subscriber; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[Received] = []

    def add(self, msg: Received) -> None:
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout_s: float = 5.0
    ) -> list[Received]:
        """Block until at least one message matches; return all matching ones so far."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [m for m in self._messages if predicate(m)]
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:40]) for m in self._messages]
                    raise AssertionError(f"no matching message within {timeout_s}s; got {seen}")
                self._cond.wait(remaining)

    def wait_count(
        self, n: int, predicate: Callable[[Received], bool] | None = None, timeout_s: float = 5.0
    ) -> list[Received]:
        """Block until at least ``n`` messages (matching ``predicate``) arrived."""
        pred = predicate or (lambda _m: True)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [m for m in self._messages if pred(m)]
                if len(found) >= n:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(found)} of {n} messages within {timeout_s}s")
                self._cond.wait(remaining)


@contextlib.contextmanager
def collect(
    broker: Mosquitto,
    topic: str,
    *,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 5.0,
) -> Iterator[Collector]:
    """Subscribe to ``topic`` (MQTT 5, own network thread) until the block ends."""
    collector = Collector()
    subscribed = threading.Event()
    connected = threading.Event()
    failure: list[str] = []

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-collector-{os.getpid()}-{id(collector):x}",
        protocol=paho.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(
        c: paho.Client, _u: Any, _f: paho.ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            failure.append(f"connect refused: {rc}")
            connected.set()
            return
        connected.set()
        c.subscribe(topic, qos=qos)

    def on_subscribe(
        _c: paho.Client, _u: Any, _mid: int, rcs: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(rc.is_failure for rc in rcs):
            failure.append(f"subscribe refused: {[str(r) for r in rcs]}")
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        props = getattr(m, "properties", None)
        collector.add(Received(m.topic, bytes(m.payload), m.qos, bool(m.retain), props))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s) and not failure:
            failure.append("no SUBACK")
        if failure:
            raise AssertionError(f"collector on {topic!r}: {failure[0]}\n{broker.log_text()}")
        yield collector
    finally:
        client.disconnect()
        client.loop_stop()
