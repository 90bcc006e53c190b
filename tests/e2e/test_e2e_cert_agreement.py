"""One certificate expiry everywhere (issue 10 item 2): with a CA bundle whose SECOND
certificate expires first, the health message on the broker, ``edge-agent status``, /status on
the HTTP door and ``doctor`` all name that earliest expiry, because they all call
agent/uplink/security.py."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import MqttConfig, TlsConfig
from agent.uplink.security import cert_expiry
from tests.support.harness import (
    AgentProcess,
    SimProcess,
    agent_cli,
    agent_status,
    durable_collector,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.tlscerts import make_ca, make_pki, tls_listener_lines


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
    http_port = free_port()
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"tls": {"ca": str(bundle)}, "health_interval_s": 1},
                       extra={"status": {"socket": str(tmp_path / "agent.sock")},
                              "http": {"listen": f"127.0.0.1:{http_port}"}})
    with durable_collector(broker, "trace/lab/gw-test/health", "cert-sub",
                           tls_ca=pki.ca) as sub:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            sub.wait_count(1, timeout_s=30)
            snap = agent_status(cfg)
            wait_until(lambda: _http_status(http_port) is not None, 10, "the HTTP door")
            http_snap = _http_status(http_port)
            doctor = agent_cli("doctor", "-c", str(cfg))
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    health = [json.loads(m.payload) for m in sub.messages]

    msg_ca = health[-1]["certificates"]["ca"]
    assert msg_ca["notAfter"].startswith(day), msg_ca
    assert 11 <= msg_ca["daysLeft"] <= 12, msg_ca
    assert snap["certificates"]["ca"]["notAfter"] == msg_ca["notAfter"]
    assert snap["certificates"]["ca"]["daysLeft"] == msg_ca["daysLeft"]
    assert http_snap is not None
    assert http_snap["certificates"]["ca"]["notAfter"] == msg_ca["notAfter"]
    row = re.search(r"^certificate ca\s+(\w+)\s+(.*)$", doctor.stdout, re.M)
    assert row, doctor.stdout + doctor.stderr
    assert row.group(1) == "WARN", row.group(0)  # 12 days <= cert_expiry_warn_days (30)
    assert msg_ca["warning"] is True  # the same rule in the health message
    assert f"({day})" in row.group(2), row.group(0)
    assert re.search(r"broker 127\.0\.0\.1:\d+ MQTT login\s+PASS", doctor.stdout), doctor.stdout


def _http_status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except OSError:
        return None
