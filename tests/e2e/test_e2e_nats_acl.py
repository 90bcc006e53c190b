"""Access control on NATS's MQTT listener, as docs/identity.md configures it (issue 14).

A real nats-server (own ports, config and JetStream store dir; tests/support/nats.py) with an
MQTT listener over TLS and ``verify_and_map``: the client certificate is the user, no
password. Per-gateway permissions confine gateway A (``lab/gw-test``, mapped by its subject
DN) and gateway B (``lab/gw-other``, mapped by its SAN URI) to their own topics. The real
agent runs as A with its certificate (MQTT 3.1.1, all NATS speaks; signatures on the sibling
topic): its documents reach the cloud's subscriber and verify against the root CA. A's
certificate publishing under B's topics is dropped by NATS (MQTT 3.1.1 still PUBACKs it), so
the subscriber never sees it, while B's own message on the same topic arrives; A may not
subscribe to B's commands.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from agent.uplink.provenance import jws_header
from tests.support.harness import AgentProcess, SimProcess, agent_cli, wait_until, write_config
from tests.support.nats import (
    NATS_MISSING,
    NatsServer,
    Tls,
    cloud_user,
    find_nats_server,
    gateway_user,
    mqtt_client,
)
from tests.support.pki import key_pem, pem, root_ca, write

pytestmark = pytest.mark.skipif(find_nats_server() is None, reason=NATS_MISSING)

A = "trace/lab/gw-test"
B = "trace/lab/gw-other"


def _pair(d: Path, name: str, cert_and_key: tuple[x509.Certificate, Any],
          *chain: x509.Certificate) -> tuple[Path, Path]:
    """Write a certificate (followed by ``chain``, as TLS and the signer read it) and key."""
    cert, key = cert_and_key
    return (write(d / f"{name}.pem", pem(cert, *chain)),
            write(d / f"{name}.key", key_pem(key), private=True))


def _core_login(nats: NatsServer, user: str) -> bool:
    """True when a plain-TCP client naming ``user`` (no password, no certificate) gets
    ``+OK`` on the core NATS port."""
    with socket.create_connection((nats.host, nats.client_port), timeout=5) as s:
        s.settimeout(5)
        try:
            s.recv(4096)  # INFO
            s.sendall(b"CONNECT " + json.dumps({"user": user, "verbose": True}).encode()
                      + b"\r\nPING\r\n")
            time.sleep(0.5)
            answer = s.recv(4096)
        except OSError:
            return False
    return answer.startswith(b"+OK")


def test_a_gateway_certificate_cannot_publish_under_another_gateways_topics(
        tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    start = datetime.now(UTC) - timedelta(hours=1)
    ca = root_ca(start=start - timedelta(days=1))
    # Gateways get their certificates from an issuing (intermediate) CA, and their files hold
    # the chain: NATS and `verify` trust only the root.
    issuing = ca.issue_ca("Plant Issuing CA", start=start - timedelta(days=1))
    ca_pem = write(pki / "ca.pem", pem(ca.cert))
    server_cert, server_key = _pair(pki, "server", ca.issue_server(start=start))
    a_cert, a_key = _pair(pki, "gw-test", issuing.issue_gateway("lab", "gw-test", start=start),
                          issuing.cert)
    b_cert, b_key = _pair(pki, "gw-other", issuing.issue_gateway("lab", "gw-other",
                                                                 start=start), issuing.cert)
    cloud_cert, cloud_key = _pair(pki, "cloud", ca.issue_client("cloud-ingest", start=start))
    users = [gateway_user("lab", "gw-test", by="dn"), gateway_user("lab", "gw-other"),
             cloud_user("CN=cloud-ingest")]
    sim = SimProcess("r2000", "--pty", "--tags", "3", "--read-rate", "10",
                     log_path=tmp_path / "sim.log")
    with NatsServer(tmp_path / "nats", users=users,
                    tls=Tls(ca_pem, server_cert, server_key)) as nats:
        cloud = mqtt_client(nats, cloud_cert, cloud_key, "cloud-ingest")
        try:
            assert cloud.subscribe("trace/#") == [1]
            cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=nats,
                               buffer=tmp_path / "buffer.db",
                               mqtt={"protocol": "3.1.1", "batch_max_events": 5,
                                     "tls": {"ca": str(ca_pem), "cert": str(a_cert),
                                             "key": str(a_key)}})
            agent = AgentProcess(cfg, tmp_path / "agent.log")
            try:
                wait_until(lambda: len([m for m in cloud.received.messages
                                        if m.topic == f"{A}/events"]) >= 3, 60,
                           "gateway A's own documents at the cloud",
                           diagnostics=lambda: agent.log_text() + nats.log_text()[-3000:])
            finally:
                assert agent.stop() == 0, agent.log_text()
                sim.stop()
            assert "Traceback" not in agent.log_text()

            # A certificate of the same CA that no user entry maps is refused at CONNECT.
            u_cert, u_key = _pair(pki, "unknown", issuing.issue_gateway(
                "lab", "gw-unknown", start=start), issuing.cert)
            with pytest.raises(AssertionError, match="no CONNACK success"):
                mqtt_client(nats, u_cert, u_key, "gw-unknown", timeout_s=5)
            # Nor can anyone be the cloud on the core NATS port by sending its user name:
            # certificate users have no password, so that port demands a certificate too.
            assert not _core_login(nats, "CN=cloud-ingest"), nats.log_text()[-2000:]
            forger = mqtt_client(nats, a_cert, a_key, "gw-test-forger")
            other = mqtt_client(nats, b_cert, b_key, "gw-other")
            try:
                # A cannot read B's commands (0x80: refused), but may read its own.
                assert forger.subscribe(f"{B}/cmd/#") == [0x80]
                assert forger.subscribe(f"{A}/cmd/#") == [1]
                # $MQTT.sub.> (allowed for QoS 1 deliveries) is not reachable from MQTT.
                assert forger.subscribe("$MQTT/sub/#", qos=0) == [0x80]
                for topic in (f"{B}/events", f"{B}/status", f"{B}/cmd/ping"):
                    forger.publish(topic, b"forged by gw-test", retain=topic.endswith("status"))
                # A's next message on its own topic, after the forgeries on the same
                # connection: once it is delivered, any forgery would have been too.
                forger.publish(f"{A}/alarms", b"gw-test marker")
                other.publish(f"{B}/events", b"gw-other's own")
                cloud.received.wait_for(lambda m: m.payload == b"gw-test marker", 10)
                cloud.received.wait_for(lambda m: m.payload == b"gw-other's own", 10)
            finally:
                forger.close()
                other.close()
            seen = cloud.received.messages
        finally:
            cloud.close()
        log = nats.log_text()
    assert not [m for m in seen if m.payload == b"forged by gw-test"], \
        [(m.topic, m.payload) for m in seen if m.topic.startswith(B)]
    assert 'Publish Violation - User "CN=lab/gw-test,O=lab", Subject "trace.lab.gw-other' in log
    # gw-other connected at all, so NATS mapped its SAN URI to a user (an unmapped
    # certificate is refused at CONNECT, above).

    # What arrived from A is A's signed chain: verify against the root CA alone (the
    # intermediate travels in each JWS's x5c, from the agent's certificate file).
    capture = tmp_path / "capture.jsonl"
    from agent.fieldtools.verify import capture_line

    capture.write_text("".join(capture_line(m.topic, m.payload, []) + "\n" for m in seen
                               if m.topic.startswith(A)))
    sigs = [json.loads(m.payload) for m in seen if m.topic == f"{A}/signatures"]
    assert sigs
    assert all(len(jws_header(x["jws"])["x5c"]) == 2 for x in sigs)  # leaf + issuing CA
    verdict = agent_cli("verify", "--ca", str(ca_pem), "--json", str(capture))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    (chain,) = json.loads(verdict.stdout)["chains"]
    assert chain["gateway"] == "lab/gw-test"
    assert chain["verified"] >= 3
