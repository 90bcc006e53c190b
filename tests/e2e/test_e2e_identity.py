"""Issue 14 items 5 and 6 end to end: a gateway whose identity comes from the plant's CA over EST
(a real CA behind a real EST endpoint over TLS), talking to Mosquitto over mutual TLS with the
certificate's CN as its user name and an ACL that confines each gateway to its own topics.

* renewal during a saturated stream (the reader at its line rate): the certificate lives 12 s
  and is renewed at half its life, twice
  during the run; the MQTT connection switches to each new certificate without a restart, and
  every committed read reaches the subscriber exactly once;
* access control: another gateway's certificate cannot publish under this gateway's topics.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.support.est import EstServer
from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    agent_cli,
    all_committed_delivered,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto

# docs/provenance.md, "Access control at the broker": the same two patterns.
ACL = ["pattern write trace/%u/#", "pattern read trace/%u/cmd/#",
       "user collector", "topic read trace/#"]


def _broker(est: EstServer, factory: Any) -> Mosquitto:
    tls = [f"cafile {est.ca_pem}", f"certfile {est.server_cert}", f"keyfile {est.server_key}",
           "require_certificate true", "use_identity_as_username true"]
    broker: Mosquitto = factory(extra=tls, acl=ACL)
    return broker


def test_renewal_during_a_stream_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, mosquitto_factory: Any) -> None:
    with EstServer(tmp_path / "ca", lifetime_s=12.0) as est:
        broker = _broker(est, mosquitto_factory)
        collector_cert = est.issue("collector")
        # --saturate: the reader streams as fast as its 115200 baud line allows (~530 reads/s)
        sim = SimProcess("r2000", "--pty", "--tags", "4", "--saturate",
                         log_path=tmp_path / "sim.log")
        db = tmp_path / "buffer.db"
        path = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                            buffer=db, mqtt={"tls": {"ca": str(est.ca_pem),
                                                     "cert": str(tmp_path / "gw.pem"),
                                                     "key": str(tmp_path / "gw.key")}})
        cfg = yaml.safe_load(path.read_text())
        (tmp_path / "est-pw").write_text(est.password)
        cfg["uplink"]["est"] = {"url": est.url, "ca": str(est.ca_pem), "username": est.username,
                                "password_file": str(tmp_path / "est-pw"),
                                "renew_fraction": 0.5, "retry_min_s": 0.2, "retry_max_s": 1}
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        for step in (("init",), ("enroll",)):
            done = agent_cli("identity", *step, "-c", str(path))
            assert done.returncode == 0, done.stderr
        with durable_collector(broker, "trace/lab/gw-test/#", "e2e-identity", tls_ca=est.ca_pem,
                               tls_client=collector_cert) as collector:
            agent = AgentProcess(path, tmp_path / "agent.log")
            try:
                wait_until(lambda: agent.log_text().count(
                    "reconnecting to 127.0.0.1") >= 2 and agent.log_text().count(
                    "certificate renewed") >= 2, 40, "two renewals and switches",
                    diagnostics=agent.log_text)
                from tests.support.harness import agent_status

                state = agent_status(path)["identity"]
                assert state["renewals"] >= 2, state
                assert state["failures"] == 0
                assert state["serial"] == f"{est.issued[-1].serial_number:x}"
                delivered_before = len(collector.messages)
                wait_until(lambda: len(collector.messages) > delivered_before + 2, 15,
                           "events flowing on the renewed connection",
                           diagnostics=agent.log_text)
                sim.stop()
                wait_until(lambda: all_committed_delivered(collector.messages, db), 30,
                           "every committed read delivered", diagnostics=agent.log_text)
            finally:
                assert agent.stop() == 0, agent.log_text()
                sim.stop()
        log = agent.log_text()
        broker_log = broker.log_text()
    # The documents signed before, across and after each renewal all verify against the CA
    # alone, in one unbroken chain (issue 14: renewal loses and duplicates nothing).
    from agent.fieldtools.verify import capture_line

    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(capture_line(m.topic, m.payload, [
        (str(k), str(v)) for k, v in (getattr(m.properties, "UserProperty", None) or [])])
        + "\n" for m in collector.messages if m.topic.endswith("/events")))
    verdict = agent_cli("verify", "--ca", str(est.ca_pem), "--json", str(capture))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    report = json.loads(verdict.stdout)
    (chain,) = report["chains"]
    assert chain["gateway"] == "lab/gw-test"
    assert chain["verified"] == chain["lastSeq"] - chain["firstSeq"] + 1 > 0
    assert (chain["unsigned"], chain["badSignatures"], chain["gapsUnexplained"]) == ([], [], [])
    assert chain["duplicates"] == 0
    per_read = Counter(r["tea:readId"] for e in events_of(collector.messages)
                       for r in e["tea:reads"])
    assert per_read, "no reads delivered"
    assert max(per_read.values()) == 1, [k for k, n in per_read.items() if n > 1][:5]
    assert len(est.issued) >= 3  # the enrollment and at least two renewals
    assert "Traceback" not in log
    assert "still unacknowledged" not in log  # every switch waited for its PUBACKs
    # One connection per certificate, each authenticated as the gateway's CN.
    assert broker_log.count("u'lab/gw-test'") >= 3, broker_log


def _publish(broker: Mosquitto, est: EstServer, cert: tuple[Path, Path],
             topic: str) -> int:
    """PUBACK reason code of one QoS 1 publish with this client certificate."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    result: list[int] = []
    done = threading.Event()
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{cert[0].stem}",
                         protocol=paho.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(est.ca_pem))
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    client.tls_set_context(ctx)

    def on_connect(*_a: Any) -> None:
        connected.set()

    def on_publish(_c: Any, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        result.append(int(rc.value))
        done.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        client.publish(topic, json.dumps({"forged": True}), qos=1)
        assert done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0]


def test_a_gateway_cannot_publish_as_another(tmp_path: Path, mosquitto_factory: Any) -> None:
    with EstServer(tmp_path / "ca") as est:
        broker = _broker(est, mosquitto_factory)
        other = est.issue("other", cn="lab/gw-other")
        # Its own topics: success (0x10 "no matching subscribers" is a success code too).
        assert _publish(broker, est, other, "trace/lab/gw-other/events") in (0x00, 0x10)
        assert _publish(broker, est, other, EVENTS_TOPIC) == 0x87  # Not authorized
        assert _publish(broker, est, other, "trace/lab/gw-test/cmd/x") == 0x87
