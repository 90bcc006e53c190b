"""Provenance end to end (issue 14, docs/provenance.md): a real agent over mutual TLS signs its
documents with its mTLS client key; a subscriber captures what the broker delivers and
`edge-agent verify` judges the capture against the CA: it passes after a normal run and after
a SIGKILL + restart (the chain continues, no seq reused), and fails naming the seq when a byte
of a payload is changed, when a document is removed, or when an unsigned one is injected. A
document the broker refuses for good (ACL) is an explained gap in the next document."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.fieldtools.verify import capture_line
from tests.support.harness import AgentProcess, SimProcess, agent_cli, wait_until, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.tlscerts import Pki, make_pki, tls_listener_lines

BASE = "trace/lab/gw-test"


class Capture:
    """Every message as the capture format: topic, exact payload bytes, user properties."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[str] = []

    def add(self, m: paho.MQTTMessage) -> None:
        props = [(str(k), str(v)) for k, v in
                 (getattr(m.properties, "UserProperty", None) or [])]
        with self.lock:
            self.lines.append(capture_line(m.topic, bytes(m.payload), props))

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            recs = [json.loads(x) for x in self.lines]
        return [r for r in recs if r["topic"].endswith("/events")]

    def seqs(self) -> list[int]:
        return [json.loads(base64.b64decode(r["payload_b64"]))["tea:seq"] for r in self.events()]

    def write(self, path: Path, lines: list[str] | None = None) -> Path:
        with self.lock:
            path.write_text("\n".join(self.lines if lines is None else lines) + "\n")
        return path


@contextlib.contextmanager
def capturing(broker: Mosquitto, pki: Pki | None, client_id: str, *,
              username: str | None = None) -> Iterator[Capture]:
    cap = Capture()
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    if pki is not None:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        client.tls_set_context(ctx)
    if username is not None:
        client.username_pw_set(username, "pw")

    def on_connect(c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(f"{BASE}/#", qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda _c, _u, m: cap.add(m)
    client.reconnect_delay_set(1, 2)
    client.connect(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert subscribed.wait(10), "capture: no SUBACK"
        yield cap
    finally:
        client.disconnect()
        client.loop_stop()


def _verify(*args: str) -> tuple[int, str]:
    proc = agent_cli("verify", *args)
    return proc.returncode, proc.stdout + proc.stderr


def _verified_chain(capture: Path, cert: Path) -> dict[str, Any]:
    """`verify --json` of a capture against the gateway certificate: it must pass (exit 0);
    the report of its one chain."""
    rc, out = _verify(str(capture), "--cert", str(cert), "--json")
    assert rc == 0, out
    (chain,) = json.loads(out)["chains"]
    assert isinstance(chain, dict)
    return chain


def test_signed_chain_verifies_across_sigkill_and_tampering_is_named(
        tmp_path: Path, mosquitto_factory: Any) -> None:
    pki = make_pki(tmp_path / "pki")
    broker: Mosquitto = mosquitto_factory(extra=tls_listener_lines(pki, require_certificate=True))
    sim = SimProcess("r2000", "--pty", "--tags", "4", "--read-rate", "20",
                     log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"tls": {"ca": str(pki.ca), "cert": str(pki.client_cert),
                                     "key": str(pki.client_key)}, "batch_max_events": 5})
    ca = str(pki.ca)
    live = subprocess.Popen(  # `verify --broker` over mTLS, until 4 s without a message
        [sys.executable, "-m", "agent", "verify", "--broker", f"{broker.host}:{broker.port}",
         "--tls-ca", ca, "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
         "--ca", ca, "--idle-s", "4", "--save", str(tmp_path / "live.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with capturing(broker, pki, "prov-capture") as cap:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: len(cap.events()) >= 4, 60, "signed documents",
                       diagnostics=agent.log_text)
            agent.kill()  # SIGKILL: no clean stop, the chain head is whatever was committed
            agent.start()
            before = max(cap.seqs())
            wait_until(lambda: max(cap.seqs()) >= before + 4, 60, "documents after restart",
                       diagnostics=agent.log_text)
        finally:
            assert agent.signal(signal.SIGTERM) == 0, agent.log_text()
            sim.stop()
        time.sleep(0.5)
        capture = cap.write(tmp_path / "capture.jsonl")
        lines = list(cap.lines)
    events = [json.loads(x) for x in lines]
    ev_idx = [i for i, r in enumerate(events) if r["topic"].endswith("/events")]
    assert all(any(k == "tea-jws" for k, _v in events[i]["properties"]) for i in ev_idx)
    seqs = sorted(set(cap.seqs()))
    assert seqs == list(range(1, seqs[-1] + 1))  # never reused, none skipped
    # The clean stop's retained status names the chain head (a missing tail would show).
    status = [json.loads(base64.b64decode(r["payload_b64"])) for r in events
              if r["topic"] == f"{BASE}/status"]
    offline = [st for st in status if st["state"] == "offline" and "chain" in st]
    assert offline, status
    head = offline[-1]["chain"]
    last = json.loads(base64.b64decode(events[ev_idx[-1]]["payload_b64"]))
    assert head["chainId"] == last["tea:chainId"]
    assert head["seq"] >= seqs[-1]

    live_out, _ = live.communicate(timeout=60)
    assert live.returncode == 0, live_out
    assert "OK gateway lab/gw-test" in live_out
    assert len((tmp_path / "live.jsonl").read_text().splitlines()) >= 8

    rc, out = _verify(str(capture), "--ca", ca)
    assert rc == 0, out
    assert "chain began" in out
    rc, out = _verify(str(capture), "--ca", ca, "--json")
    report = json.loads(out)
    assert report["ok"] is True
    (chain,) = report["chains"]
    assert chain["verified"] >= 8
    assert chain["chainStart"]["reason"] == "first-start"

    # One byte changed in the third document's payload.
    third = events[ev_idx[2]]
    raw = bytearray(base64.b64decode(third["payload_b64"]))
    seq3 = json.loads(raw)["tea:seq"]
    at = raw.index(b'"action":"') + len(b'"action":"')
    raw[at] = ord("X")
    altered = dict(third, payload_b64=base64.b64encode(bytes(raw)).decode())
    tampered = [json.dumps(altered) if i == ev_idx[2] else x for i, x in enumerate(lines)]
    rc, out = _verify(str(cap.write(tmp_path / "altered.jsonl", tampered)), "--ca", ca)
    assert rc == 1, out
    assert f"ALTERED seq {seq3}" in out

    # One document removed (every copy of its seq).
    gone = json.loads(base64.b64decode(events[ev_idx[3]]["payload_b64"]))["tea:seq"]
    kept = [x for i, x in enumerate(lines) if not (
        i in ev_idx and json.loads(base64.b64decode(events[i]["payload_b64"]))["tea:seq"] == gone)]
    rc, out = _verify(str(cap.write(tmp_path / "removed.jsonl", kept)), "--ca", ca)
    assert rc == 1, out
    assert f"UNEXPLAINED GAP seq {gone}" in out

    # One injected without a signature (a copy of a real one, other EPC, no tea-jws).
    body = base64.b64decode(events[ev_idx[1]]["payload_b64"]).replace(b"urn:epc", b"urn:EPC", 1)
    fake = dict(events[ev_idx[1]], payload_b64=base64.b64encode(body).decode(), properties=[])
    forged = cap.write(tmp_path / "forged.jsonl", [*lines, json.dumps(fake)])
    rc, out = _verify(str(forged), "--ca", ca)
    assert rc == 1, out
    seq2 = json.loads(body)["tea:seq"]
    assert f"unsigned: seq {seq2}" in out
    # The wrong trust anchor: every signature is refused.
    rc, out = _verify(str(capture), "--ca", str(pki.other_ca))
    assert rc == 1, out
    assert "BAD SIGNATURE" in out


def test_a_refused_document_is_an_explained_gap(tmp_path: Path, mosquitto_factory: Any) -> None:
    edge = ["user edge", f"topic write {BASE}/status", f"topic write {BASE}/health",
            f"topic write {BASE}/alarms"]
    reader = ["user sub", "topic read #"]
    broker: Mosquitto = mosquitto_factory(users={"edge": "pw", "sub": "pw"}, acl=[*edge, *reader])
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "pw").chmod(0o600)
    key, cert = _signing_pair(tmp_path)
    sim = SimProcess("r2000", "--pty", "--tags", "2", "--read-rate", "10",
                     log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"username": "edge", "password_file": str(tmp_path / "pw"),
                             "batch_max_events": 2})
    _sign_with(cfg, key, cert)
    with capturing(broker, None, "prov-dl", username="sub") as cap:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: "moved to dead letters" in agent.log_text(), 60,
                       "a refused document", diagnostics=agent.log_text)
            broker.acl = [*edge, f"topic write {BASE}/events", *reader]  # the fix
            broker.stop()
            broker.start()
            wait_until(lambda: len(cap.events()) >= 3, 60, "documents after the fix",
                       diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
        time.sleep(0.5)
        capture = cap.write(tmp_path / "capture.jsonl")
    chain = _verified_chain(capture, cert)
    assert chain["gapsExplained"], chain
    assert all(g["reason"] == "dead-letter" for g in chain["gapsExplained"])
    assert "Not authorized" in chain["gapsExplained"][0]["detail"]
    assert chain["gapsUnexplained"] == []
    # every seq before the first delivered one is accounted for, and so is why the chain began
    assert [g["seq"] for g in chain["gapsExplained"]] == list(range(1, chain["firstSeq"]))
    assert chain["chainStart"] == {"reason": "first-start"}


def _sign_with(cfg: Path, key: Path, cert: Path) -> None:
    """Add ``uplink.signing`` (its own key and certificate) to a written agent config."""
    doc = yaml.safe_load(cfg.read_text())
    doc["uplink"]["signing"] = {"key": str(key), "cert": str(cert)}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))


def _signing_pair(d: Path) -> tuple[Path, Path]:
    """An Ed25519 signing key and a self-signed certificate (openssl CLI)."""
    key, cert = d / "sign.key", d / "sign.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=gw-test signing"], check=True,
                   capture_output=True)
    return key, cert


@pytest.mark.slow
def test_the_chain_survives_repeated_sigkill(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Killed at random moments (freezes, acks and checkpoints happen all the time at this
    rate): no seq is ever handed out twice with other bytes, none is skipped, all verify."""
    import random

    key, cert = _signing_pair(tmp_path)
    sim = SimProcess("r2000", "--pty", "--tags", "20", "--read-rate", "200",
                     log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db", mqtt={"batch_max_events": 20})
    _sign_with(cfg, key, cert)
    rng = random.Random(14)
    with capturing(mosquitto, None, "prov-kill") as cap:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            for _ in range(6):
                wait_until(lambda: len(cap.events()) > 0, 60, "documents",
                           diagnostics=agent.log_text)
                time.sleep(rng.uniform(0.3, 1.5))
                agent.kill()
                agent.start()
            before = max(cap.seqs())
            wait_until(lambda: max(cap.seqs()) >= before + 3, 60, "documents after the kills",
                       diagnostics=agent.log_text)
        finally:
            assert agent.signal(signal.SIGTERM) == 0, agent.log_text()
            sim.stop()
        time.sleep(0.5)
        capture = cap.write(tmp_path / "capture.jsonl")
    chain = _verified_chain(capture, cert)
    assert chain["firstSeq"] == 1
    assert chain["gapsExplained"] == []
    assert chain["verified"] == chain["lastSeq"]


def test_a_broker_outage_with_expiry_verifies_with_the_gap_explained(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The broker is down for 8 s while `max_age_s: 3` expires what waits: the chain goes on
    after the outage, and the expired events are a gap the next document declares, signed."""
    key, cert = _signing_pair(tmp_path)
    sim = SimProcess("r2000", "--pty", "--tags", "4", "--read-rate", "20",
                     log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db", mqtt={"batch_max_events": 10},
                       buffer_extra={"max_age_s": 3})
    _sign_with(cfg, key, cert)
    with capturing(mosquitto, None, "prov-outage") as cap:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: len(cap.events()) >= 3, 60, "documents before the outage",
                       diagnostics=agent.log_text)
            mosquitto.stop()
            time.sleep(8)
            mosquitto.start()
            wait_until(lambda: any("tea:gaps" in json.loads(base64.b64decode(
                r["payload_b64"])) for r in cap.events()), 60, "a document declaring the gap",
                diagnostics=agent.log_text)
            before = max(cap.seqs())
            wait_until(lambda: max(cap.seqs()) >= before + 2, 60, "documents after it",
                       diagnostics=agent.log_text)
        finally:
            assert agent.signal(signal.SIGTERM) == 0, agent.log_text()
            sim.stop()
        time.sleep(0.5)
        capture = cap.write(tmp_path / "capture.jsonl")
    chain = _verified_chain(capture, cert)
    assert chain["gapsUnexplained"] == []
    assert chain["badSignatures"] == []
    assert chain["verified"] == chain["lastSeq"] - chain["firstSeq"] + 1
    assert "expired" in json.dumps(chain["gapsExplained"] + chain["droppedByGateway"]), chain
    assert "expired" in agent.log_text() or "max_age" in agent.log_text()


def test_a_corrupt_buffer_restarts_the_chain_and_says_why(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A damaged buffer file is quarantined and salvaged; the new chain's first document says
    it began from a salvage (naming the corrupt file's chain), and both chains verify."""
    import os

    from tests.support.harness import buffer_state

    key, cert = _signing_pair(tmp_path)
    db = tmp_path / "buffer.db"
    sim = SimProcess("r2000", "--pty", "--tags", "6", "--saturate", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, mqtt={"batch_max_events": 50})
    _sign_with(cfg, key, cert)
    with capturing(mosquitto, None, "prov-corrupt") as cap:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: len(cap.events()) >= 3, 60, "documents of the first chain",
                       diagnostics=agent.log_text)
            mosquitto.stop()  # a backlog builds up in the file that will be damaged
            wait_until(lambda: buffer_state(db)["outbox"] > 3000, 60, "a backlog",
                       diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
        size = db.stat().st_size
        with db.open("r+b") as f:  # a failing SD card sector in the middle of the file
            f.seek(size // 2)
            f.write(os.urandom(8192))
        mosquitto.start()
        agent.start()
        try:
            wait_until(lambda: any(json.loads(base64.b64decode(r["payload_b64"])).get(
                "tea:chainStart", {}).get("reason") == "salvaged" for r in cap.events()), 60,
                "the new chain's first document", diagnostics=agent.log_text)
            wait_until(lambda: buffer_state(db)["outbox"] == 0, 60, "the salvaged backlog sent",
                       diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
        time.sleep(0.5)
        capture = cap.write(tmp_path / "capture.jsonl")
    rc, out = _verify(str(capture), "--cert", str(cert), "--json")
    report = json.loads(out)
    chains = report["chains"]
    assert len(chains) == 2, out
    first, second = sorted(chains, key=lambda c: c["chainStart"]["reason"] != "first-start")
    assert first["chainStart"]["reason"] == "first-start"
    assert second["chainStart"]["reason"] == "salvaged"
    assert second["chainStart"].get("previousChain", {}).get("chainId") == first["chainId"], \
        second["chainStart"]
    for chain in chains:
        assert chain["badSignatures"] == [] and chain["altered"] == [], chain  # noqa: PT018
    # The salvaged rows were frozen again in the new chain: nothing unexplained anywhere.
    assert rc == 0, out
    assert report["ok"] is True
    assert all(c["gapsUnexplained"] == [] for c in chains)
    assert "quarantined" in agent.log_text() or "corrupt" in agent.log_text()
