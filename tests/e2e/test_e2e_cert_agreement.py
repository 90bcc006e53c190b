"""One certificate expiry everywhere (issue 10 item 2): with a CA bundle whose SECOND
certificate expires first, the health message on the broker, ``edge-agent status``, /status on
the HTTP door and ``doctor`` all name that earliest expiry, because they all call
agent/uplink/security.py."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig, TlsConfig
from agent.uplink.security import cert_expiry
from tests.support.harness import AgentProcess, SimProcess, wait_until, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.tlscerts import make_ca, make_pki, tls_listener_lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_bundle_whose_second_cert_expires_first_is_reported_alike_everywhere(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    pki = make_pki(tmp_path / "pki")  # its CA (30 days) signs the broker's certificate
    short = make_ca(tmp_path / "short", "short-ca", days=12)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + short.read_bytes())  # the 2nd expires first
    from datetime import UTC, datetime
    (expected,) = cert_expiry(MqttConfig(host="b.example", tls=TlsConfig(ca=bundle)),
                              datetime.now(UTC))
    assert expected.not_after is not None
    day = expected.not_after.strftime("%Y-%m-%d")

    broker = mosquitto_factory(extra=tls_listener_lines(pki))
    health: list[dict[str, Any]] = []
    got = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="cert-sub", protocol=paho.MQTTv5)
    sub.tls_set_context(ssl.create_default_context(cafile=str(pki.ca)))

    def on_message(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        health.append(json.loads(m.payload))
        got.set()

    sub.on_connect = lambda c, *_: c.subscribe("trace/lab/gw-test/health", qos=1)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()

    http_port = _free_port()
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"tls": {"ca": str(bundle)}, "health_interval_s": 1},
                       extra={"status": {"socket": str(tmp_path / "agent.sock")},
                              "http": {"listen": f"127.0.0.1:{http_port}"}})
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        assert got.wait(30), agent.log_text()
        status = subprocess.run([sys.executable, "-m", "agent", "status", "-c", str(cfg),
                                 "--json"], capture_output=True, text=True, timeout=30,
                                check=True)
        snap = json.loads(status.stdout)
        wait_until(lambda: _http_status(http_port) is not None, 10, "the HTTP door")
        http_snap = _http_status(http_port)
        doctor = subprocess.run([sys.executable, "-m", "agent", "doctor", "-c", str(cfg)],
                                capture_output=True, text=True, timeout=60, check=False)
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
        sub.loop_stop()
        sub.disconnect()

    msg_ca = health[-1]["certificates"]["ca"]
    assert msg_ca["notAfter"].startswith(day), msg_ca
    assert 11 <= msg_ca["daysLeft"] <= 12, msg_ca
    assert snap["certificates"]["ca"]["notAfter"] == msg_ca["notAfter"]
    assert snap["certificates"]["ca"]["daysLeft"] == msg_ca["daysLeft"]
    assert http_snap is not None
    assert http_snap["certificates"]["ca"]["notAfter"] == msg_ca["notAfter"]
    row = re.search(r"^certificate ca\s+(\w+)\s+(.*)$", doctor.stdout, re.M)
    assert row, doctor.stdout + doctor.stderr
    assert row.group(1) == "WARN", row.group(0)  # 12 days < doctor's 30-day warning
    assert f"({day})" in row.group(2), row.group(0)
    assert re.search(r"broker 127\.0\.0\.1:\d+ MQTT login\s+PASS", doctor.stdout), doctor.stdout


def _http_status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except OSError:
        return None
