"""A real nats-server with its MQTT listener, for the access-control tests (docs/identity.md).

``NatsServer(dir, users=..., tls=...)`` runs its own ``nats-server`` process on free ports of
127.0.0.1 with a generated config in ``dir``: JetStream in ``dir/jetstream`` (NATS's MQTT
needs it for sessions, QoS 1 and retained messages), an MQTT listener with TLS and
``verify_and_map`` (the client certificate is the user: its SAN URI or its subject DN, no
password), the same TLS on the core NATS port, and the ``authorization`` users with their
permissions. It never touches a system
instance: own ports, own config, own store dir::

    users = [gateway_user("lab", "gw-test"), cloud_user("CN=cloud-ingest")]
    with NatsServer(tmp / "nats", users=users, tls=tls) as nats:
        client = mqtt_client(nats, cert, key, "cloud")   # paho, MQTT 3.1.1 (all NATS speaks)

``gateway_user`` writes the NATS form of the Mosquitto ACL (``pattern write trace/%u/#``,
``pattern read trace/%u/cmd/#``); NATS has no ``%u``, so there is one entry per gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.uplink.identity import gateway_uri
from tests.support.mosquitto import Collector, Received, free_port

NATS_MISSING = ("nats-server not found (NATS_SERVER_BIN, PATH, /usr/sbin) "
                "(apt-get install nats-server); the NATS access-control test needs a real one")


def find_nats_server() -> str | None:
    """``NATS_SERVER_BIN`` (a path; empty means none), then PATH, then /usr/sbin."""
    override = os.environ.get("NATS_SERVER_BIN")
    if override is not None:
        return override if override and os.access(override, os.X_OK) else None
    found = shutil.which("nats-server")
    if found:
        return found
    for candidate in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def gateway_user(site: str, gateway_id: str, *, prefix: str = "trace",
                 by: str = "uri") -> dict[str, Any]:
    """One gateway's NATS user: publish under ``{prefix}/{site}/{id}/``, subscribe to its own
    commands. ``by="uri"`` maps the certificate's SAN URI ``urn:tea:gateway:{site}:{id}``;
    ``by="dn"`` its subject ``CN={site}/{id},O={site}`` (NATS matches a DN in either order).

    MQTT ``.../cmd/#`` also matches ``.../cmd`` itself, so both subjects are listed; QoS 1
    subscriptions are JetStream consumers delivering on ``$MQTT.sub.<random>``, which the
    user must be allowed to subscribe to (an MQTT client cannot subscribe to ``$MQTT/...``
    topics itself: NATS refuses them, tested)."""
    base = f"{prefix}.{site}.{gateway_id}"
    user = gateway_uri(site, gateway_id) if by == "uri" else f"CN={site}/{gateway_id},O={site}"
    return {"user": user, "permissions": {
        "publish": [f"{base}.>"],
        "subscribe": [f"{base}.cmd", f"{base}.cmd.>", "$MQTT.sub.>"]}}


def cloud_user(dn: str, *, prefix: str = "trace") -> dict[str, Any]:
    """The traceability cloud's consumer: reads everything, writes only commands."""
    return {"user": dn, "permissions": {
        "publish": [f"{prefix}.*.*.cmd", f"{prefix}.*.*.cmd.>"],
        "subscribe": [prefix, f"{prefix}.>", "$MQTT.sub.>"]}}


class NatsServer:
    def __init__(self, d: Path, *, users: Sequence[dict[str, Any]], tls: Tls) -> None:
        binary = find_nats_server()
        if binary is None:
            raise RuntimeError(NATS_MISSING)
        self.binary = binary
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.users = list(users)
        self.tls = tls
        self.host = "127.0.0.1"
        self.client_port = free_port()
        self.port = free_port()  # the MQTT listener (what the agent connects to)
        self.config = d / "nats.conf"
        self.log_path = d / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        # NATS reads JSON as its config syntax; quoting every value keeps paths and DNs safe.
        tls = {"cert_file": str(self.tls.cert), "key_file": str(self.tls.key),
               "ca_file": str(self.tls.ca), "verify_and_map": True}
        doc = {
            "server_name": f"tea-test-{os.getpid()}",
            "listen": f"{self.host}:{self.client_port}",
            # The core NATS port needs the same certificate mapping: users mapped from
            # certificates have no password, so without it anyone could log in there by
            # sending a user name (tested: tests/e2e/test_e2e_nats_acl.py).
            "tls": tls,
            "jetstream": {"store_dir": str(self.dir / "jetstream")},
            "mqtt": {"listen": f"{self.host}:{self.port}", "tls": tls},
            "authorization": {"users": self.users},
        }
        return json.dumps(doc, indent=2) + "\n"

    def start(self) -> NatsServer:
        self.config.write_text(self.config_text())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited {self.proc.returncode}:\n"
                                   f"{self.log_text()}")
            if "Server is ready" in self.log_text() and _listening(self.host, self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nats-server not ready within 15 s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass(slots=True)
class MqttTestClient:
    """A paho MQTT 3.1.1 client over mutual TLS, with what it received and was answered."""

    client: paho.Client
    received: Collector
    subacks: dict[int, list[int]]  # mid -> granted QoS, or 0x80 (refused), per filter
    pubacks: set[int]

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 5.0) -> list[int]:
        _rc, mid = self.client.subscribe(topic, qos=qos)
        assert mid is not None, f"subscribe {topic!r} not sent"
        _wait(lambda: mid in self.subacks, timeout_s, f"SUBACK for {topic!r}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                timeout_s: float = 5.0) -> None:
        """QoS 1; returns after the PUBACK (which MQTT 3.1.1 gives for a denied message too)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        _wait(lambda: info.mid in self.pubacks, timeout_s, f"PUBACK for {topic!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.02)


def mqtt_client(server: NatsServer, cert: Path, key: Path, client_id: str,
                *, timeout_s: float = 10.0) -> MqttTestClient:
    """Connect with this certificate (the user NATS maps it to) and start paho's thread."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(server.tls.ca))
    ctx.load_cert_chain(str(cert), str(key))
    c.tls_set_context(ctx)
    out = MqttTestClient(c, Collector(), {}, set())
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(_c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            failure.append(str(rc))
        connected.set()

    def on_subscribe(_c: paho.Client, _u: Any, mid: int, rcs: list[Any], _p: Any) -> None:
        out.subacks[mid] = [int(r.value) for r in rcs]

    def on_publish(_c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        out.pubacks.add(mid)

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        out.received.add(Received(m.topic, bytes(m.payload), m.qos, bool(m.retain), None))

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_publish = on_publish
    c.on_message = on_message
    c.connect(server.host, server.port, keepalive=30)
    c.loop_start()
    if not connected.wait(timeout_s) or failure:
        c.loop_stop()
        raise AssertionError(f"{client_id}: no CONNACK success ({failure}):\n"
                             f"{server.log_text()[-3000:]}")
    return out
