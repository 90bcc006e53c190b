"""Real processes for end-to-end tests: reader-sim on a pty, edge-agent run, buffer inspection."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.support.mosquitto import Mosquitto, Received
from tests.support.sim import SimProcess as SimProcess

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    def __init__(self, config: Path, log_path: Path, *extra: str) -> None:
        self.config = config
        self.log_path = log_path
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--log-level", "DEBUG", *self.extra, "run", "-c",
             str(self.config)],
            stdout=log, stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        log.close()

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop(self) -> int:
        return self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def agent_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``edge-agent ARGS`` as a subprocess (exit code, stdout, stderr as text)."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60, check=False, input=stdin)


def agent_status(cfg: Path) -> dict[str, Any]:
    """``edge-agent status --json -c CFG`` of the running agent (asserting it answered)."""
    proc = agent_cli("status", "--json", "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


class BrokerAddress(Protocol):
    """Where the agent connects: a Mosquitto, or a NatsServer's MQTT listener."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


def write_config(
    path: Path,
    *,
    reader_port: str,
    broker: BrokerAddress,
    buffer: Path,
    reader: dict[str, Any] | None = None,
    mqtt: dict[str, Any] | None = None,
    buffer_extra: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    cfg: dict[str, Any] = {
        "gateway": {"id": "gw-test", "site": "lab"},
        # mode every_read: the end-to-end tests account for every committed read by its
        # tea:readId; presence mode (the product default) folds reads and is tested in
        # tests/test_e2e_presence.py (pass reader={"mode": "presence", ...}).
        "readers": [{"name": "r1", "driver": "r2000", "port": reader_port, "baudrate": 115200,
                     "reconnect_max_s": 1.0, "mode": "every_read", **(reader or {})}],
        "buffer": {"path": str(buffer), **(buffer_extra or {})},
        "uplink": {"mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "trace",
                            "publish_timeout_s": 5, "reconnect_min_s": 0.1,
                            "reconnect_max_s": 1.0, **(mqtt or {})}},
    }
    cfg.update(extra or {})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


EVENTS_TOPIC = "trace/lab/gw-test/events"


def metric(text: str, name: str) -> float:
    """One sample's value from a /metrics text (``name`` with its labels, if any)."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in metrics:\n{text}"
    return float(m.group(1))


def events_of(messages: Iterable[Received]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.topic.endswith("/events"):
            doc = json.loads(m.payload)
            assert doc["type"] == "EPCISDocument"
            out.extend(doc["epcisBody"]["eventList"])
    return out


def read_ids(events: Iterable[dict[str, Any]]) -> dict[str, str]:
    """readId -> eventID for every read carried by the events (asserting duplicates agree)."""
    seen: dict[str, str] = {}
    for e in events:
        for r in e.get("tea:reads", []):
            rid = r["tea:readId"]
            if rid in seen:
                assert seen[rid] == e["eventID"], f"read {rid} re-sent with another eventID"
            seen[rid] = e["eventID"]
    return seen


def all_committed_delivered(messages: Iterable[Received], db: Path) -> bool:
    """Every read id the buffer ever assigned (1..last) was delivered and the buffer is empty.

    For ``mode: every_read``, where each event carries its ``tea:readId``; ``read_ids`` also
    asserts that a read delivered twice came with the same eventID both times."""
    state = buffer_state(db)
    got = {int(r.rsplit(":", 1)[1]) for r in read_ids(events_of(messages))}
    return (state["reads"] == 0 and state["outbox"] == 0 and state["last_read_id"] > 0
            and got >= set(range(1, state["last_read_id"] + 1)))


def buffer_state(db: Path) -> dict[str, int]:
    """Read-only look into the agent's buffer (WAL readers never block the writer)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        def one(sql: str) -> int:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return {
            "reads": one("SELECT count(*) FROM reads"),
            "outbox": one("SELECT count(*) FROM outbox"),
            "last_read_id": one("SELECT seq FROM sqlite_sequence WHERE name = 'reads'"),
        }
    finally:
        con.close()


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.1,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):
            if predicate():
                return
        time.sleep(every_s)
    extra = f"\n{diagnostics()}" if diagnostics else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{extra}")


@contextlib.contextmanager
def durable_collector(broker: Mosquitto, topic: str, client_id: str, *,
                      username: str | None = None, password: str | None = None,
                      tls_ca: Path | None = None,
                      tls_client: tuple[Path, Path] | None = None) -> Any:
    """A QoS 1 subscriber with a persistent session (clean start off, session expiry 1 h), so
    messages queued for it survive its own reconnects and a graceful broker restart; with a
    broker user (``username``/``password``), over TLS verified by ``tls_ca`` when given, with
    a client certificate ``tls_client`` (cert, key) for a broker that requires one."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tests.support.mosquitto import Collector

    collector = Collector()
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600

    def on_connect(c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(topic, qos=1)

    def on_subscribe(_c: paho.Client, _u: Any, _m: int, _rcs: Any, _p: Any) -> None:
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        collector.add(Received(m.topic, bytes(m.payload), m.qos, bool(m.retain),
                               getattr(m, "properties", None)))

    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca is not None:
        import ssl

        ctx = ssl.create_default_context(cafile=str(tls_ca))
        if tls_client is not None:
            ctx.load_cert_chain(str(tls_client[0]), str(tls_client[1]))
        client.tls_set_context(ctx)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(1, 2)
    client.connect(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert subscribed.wait(10), "durable collector: no SUBACK"
        yield collector
    finally:
        client.disconnect()
        client.loop_stop()
