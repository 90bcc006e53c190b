"""Provenance (docs/provenance.md): detached JWS per document, hash chain, verify's verdicts.

Pure parts first (sign/verify per algorithm, chain checks over hand-built documents), then the
buffer's freezing: one transaction per seq, seqs continue after reopening, refused and split
documents become gaps the next document explains, frozen rows are never evicted.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from agent.buffer.api import OutEvent
from agent.buffer.chain import ChainLink
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig
from agent.fieldtools.verify import Message, Trust, capture_line, read_lines, verify
from agent.uplink.provenance import (
    JWS_PROPERTY,
    Signer,
    SigningError,
    document_bytes,
    jws_header,
    load_signer,
    sha256_ref,
    signer_from_pem,
    verify_detached,
    verify_key_from_cert,
)
from tests.support.pki import root_ca

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
EVENT = json.dumps({"type": "ObjectEvent", "eventID": "ni:///sha-256;00?ver=CBV2.0",
                    "eventTime": "2026-01-01T00:00:00.000Z", "eventTimeZoneOffset": "+00:00",
                    "epcList": ["urn:epc:raw:96.x1"], "action": "OBSERVE"})


def _cert(key: Any, *, issuer_key: Any = None, issuer: x509.Name | None = None,
          cn: str = "lab/gw-1") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signing = issuer_key or key
    algo = None if isinstance(signing, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650)).sign(signing, algo))


def _pem_key(key: Any) -> bytes:
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return pem


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pair(kind: str) -> tuple[Signer, x509.Certificate]:
    key: Any
    if kind == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(65537, 2048)
    cert = _cert(key)
    return signer_from_pem(_pem_key(key), _pem_cert(cert)), cert


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256"])
def test_detached_jws_per_key_type(alg: str) -> None:
    signer, cert = _pair(alg)
    payload = b'{"type":"EPCISDocument"}'
    jws = signer.sign(payload)
    _h, empty, _sig = jws.split(".")
    assert empty == ""  # detached: header..signature
    header = jws_header(jws)
    assert header["alg"] == alg
    assert header["x5t#S256"] == base64.urlsafe_b64encode(
        cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    key = verify_key_from_cert(cert)
    assert verify_detached(jws, payload, key) is None
    assert verify_detached(jws, payload + b" ", key) is not None
    _other, other_cert = _pair(alg)
    assert "another certificate" in (verify_detached(jws, payload,
                                                     verify_key_from_cert(other_cert)) or "")


def test_key_and_certificate_must_match_and_the_key_file_be_private(tmp_path: Path) -> None:
    a = ec.generate_private_key(ec.SECP256R1())
    b = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SigningError, match="does not belong"):
        signer_from_pem(_pem_key(a), _pem_cert(_cert(b)))
    keyf, certf = tmp_path / "k.pem", tmp_path / "c.pem"
    keyf.write_bytes(_pem_key(a))
    certf.write_bytes(_pem_cert(_cert(a)))
    keyf.chmod(0o640)
    with pytest.raises(SigningError, match="chmod 600"):
        load_signer(keyf, certf)
    keyf.chmod(0o600)
    assert load_signer(keyf, certf).alg == "ES256"


# ----------------------------------------------------------------------------- verify (pure)


def _chain(signer: Signer | None, n: int, *, gaps: dict[int, list[dict[str, Any]]] | None = None,
           skip: frozenset[int] = frozenset()) -> list[Message]:
    """Documents 1..n of one chain as captured messages (``skip``: frozen, never received)."""
    out: list[Message] = []
    prev: str | None = None
    for seq in range(1, n + 1):
        link = ChainLink(chain_id="c-1", seq=seq, prev_hash=prev,
                         chain_start={"reason": "first-start"} if seq == 1 else None,
                         gaps=tuple((gaps or {}).get(seq, ())))
        payload = document_bytes([EVENT], NOW, gateway="lab/gw-1", link=link)
        prev = sha256_ref(payload)
        if seq in skip:
            continue
        props = () if signer is None else ((JWS_PROPERTY, signer.sign(payload)),)
        out.append(Message(topic="trace/lab/gw-1/events", payload=payload, properties=props,
                           where=f"msg {seq}"))
    return out


def test_verify_passes_a_clean_chain_and_counts_duplicates() -> None:
    signer, cert = _pair("ES256")
    msgs = _chain(signer, 5)
    report = verify([*msgs, msgs[2]], Trust(certs=(cert,)))
    assert report.ok, report.as_dict()
    (c,) = report.chains
    assert (c.first_seq, c.last_seq, c.duplicates) == (1, 5, 1)
    assert c.chain_start == {"reason": "first-start"}


def test_verify_names_the_seq_of_an_altered_document() -> None:
    signer, cert = _pair("EdDSA")
    msgs = _chain(signer, 4)
    m = msgs[2]
    i = m.payload.index(b"OBSERVE")
    msgs[2] = Message(topic=m.topic, payload=m.payload[:i] + b"X" + m.payload[i + 1:],
                      properties=m.properties, where=m.where)
    report = verify(msgs, Trust(certs=(cert,)))
    assert not report.ok
    assert [a["seq"] for a in report.chains[0].altered] == [3]


def test_verify_names_an_injected_unsigned_document_and_a_removed_one() -> None:
    signer, cert = _pair("ES256")
    msgs = _chain(signer, 4)
    forged = Message(topic=msgs[1].topic, payload=msgs[1].payload.replace(b"x1", b"x2"),
                     where="forged")
    report = verify([*msgs, forged], Trust(certs=(cert,)))
    assert report.chains[0].unsigned == [2]
    assert not report.ok
    report = verify([msgs[0], msgs[1], msgs[3]], Trust(certs=(cert,)))
    assert [g["seq"] for g in report.chains[0].gaps_unexplained] == [3]
    assert not report.ok


def test_a_seq_signed_twice_with_other_bytes_is_named() -> None:
    signer, cert = _pair("ES256")
    msgs = _chain(signer, 3)
    other = msgs[1].payload.replace(b"x1", b"x9")
    twin = Message(topic=msgs[1].topic, payload=other,
                   properties=((JWS_PROPERTY, signer.sign(other)),), where="twin")
    report = verify([*msgs, twin], Trust(certs=(cert,)))
    assert not report.ok
    assert [a["seq"] for a in report.chains[0].altered] == [2]
    assert "seq reused" in report.chains[0].altered[0]["why"]


def test_a_gap_named_by_a_later_document_is_explained() -> None:
    signer, cert = _pair("ES256")
    gap = {"reason": "dead-letter", "detail": "reason code 0x87 Not authorized",
           "chainId": "c-1", "seqs": [2, 2], "count": 1}
    msgs = _chain(signer, 3, gaps={3: [gap]}, skip=frozenset({2}))
    report = verify(msgs, Trust(certs=(cert,)))
    assert report.ok, report.as_dict()
    assert report.chains[0].gaps_explained[0]["reason"] == "dead-letter"


def test_a_ca_is_a_trust_anchor_through_x5c() -> None:
    # Path validation in depth (intermediates, dates, CRLs, identity):
    # tests/fieldtools/test_verify_trust.py.
    ca = root_ca(start=NOW - dt.timedelta(days=10))
    cert, key = ca.issue_gateway("lab", "gw-1", start=NOW - dt.timedelta(days=1))
    signer = signer_from_pem(_pem_key(key), _pem_cert(cert))
    msgs = _chain(signer, 2)
    assert verify(msgs, Trust(cas=(ca.cert,))).ok
    rogue_ca = root_ca("Rogue")
    report = verify(msgs, Trust(cas=(rogue_ca.cert,)))
    assert not report.ok
    assert "no path to a trusted CA" in report.chains[0].bad_signatures[0]["why"]


def test_capture_lines_round_trip() -> None:
    signer, cert = _pair("ES256")
    msgs = _chain(signer, 2)
    lines = [capture_line(m.topic or "", m.payload, m.properties) for m in msgs]
    back = list(read_lines(lines, "cap"))
    assert [m.payload for m in back] == [m.payload for m in msgs]
    assert verify(back, Trust(certs=(cert,))).ok


# ----------------------------------------------------------------------------- buffer


def _ev(n: int) -> OutEvent:
    return OutEvent(kind="event", payload=EVENT.replace("x1", f"x{n}"), created_at_s=time.time())


def _build(link: ChainLink) -> bytes:
    return document_bytes([EVENT], NOW, gateway="lab/gw-1", link=link)


async def test_freeze_advances_the_chain_across_reopen_and_dead_letters_are_gaps(
    tmp_path: Path,
) -> None:
    signer, cert = _pair("ES256")
    cfg = BufferConfig(path=tmp_path / "b.db")
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [_ev(i) for i in range(3)])
        rows = await buf.claim(10, lease_s=30)
        d1 = await buf.freeze([rows[0].id], _build, signer.sign)
        d2 = await buf.freeze([rows[1].id], _build, signer.sign)
        assert (d1.seq, d2.seq) == (1, 2)
        assert json.loads(d2.payload)["tea:prevHash"] == f"sha-256:{d1.sha256}"
        assert json.loads(d1.payload)["tea:chainStart"] == {"reason": "first-start"}
        await buf.ack([rows[0].id])
        await buf.release([rows[1].id])
        assert await buf.claim(10, lease_s=30) == []  # row 2 goes only with its document
    async with await SqliteBuffer.open(cfg) as buf:  # a restart: same bytes, next seq
        got = await buf.claim_frozen(lease_s=30)
        assert got is not None
        assert got[0].payload == d2.payload
        assert got[0].jws == d2.jws
        await buf.dead_letter([r.id for r in got[1]], "reason code 0x87 Not authorized")
        d3 = await buf.freeze([rows[2].id], _build, signer.sign)
        assert d3.seq == 3
        body = json.loads(d3.payload)
        assert body["tea:gaps"][0]["seqs"] == [2, 2]
        assert body["tea:gaps"][0]["reason"] == "dead-letter"
        head = await buf.chain_head()
        assert head is not None
        assert (head.seq, head.hash) == (3, f"sha-256:{d3.sha256}")
    con = sqlite3.connect(tmp_path / "b.db")
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    con.close()
    msgs = [Message(topic="t/events", payload=d.payload, properties=((JWS_PROPERTY, d.jws),))
            for d in (d1, d3) if d.jws is not None]
    assert verify(msgs, Trust(certs=(cert,))).ok


# ----------------------------------------------------------------------------- forwarder


async def _forward(tmp_path: Path, signer: Signer, codes: list[int], n: int,
                   **kw: Any) -> list[tuple[str, bytes, str | None, tuple[tuple[str, str], ...]]]:
    import asyncio

    from agent.config import MqttConfig
    from agent.uplink.forwarder import Forwarder, topics
    from tests.uplink.test_uplink_delivery import ScriptedPublisher, drained, until

    pub = ScriptedPublisher(codes=list(codes))
    cfg = MqttConfig.model_validate({"host": "127.0.0.1", "batch_max_delay_ms": 0,
                                     "retry_min_s": 0.01, "retry_max_s": 0.02, **kw})
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp_path / "buffer.db"))
    fwd = Forwarder(buffer, pub, cfg, topics(cfg, "lab", "gw-1"), wake=asyncio.Event(),
                    idle_poll_s=0.01, signer=signer)
    task = asyncio.create_task(fwd.run(), name="forwarder-under-test")
    try:
        await buffer.commit_events([], [_ev(i) for i in range(n)])
        await until(lambda: drained(buffer), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await buffer.aclose()
    return pub.sent


def _messages(sent: list[tuple[str, bytes, str | None, tuple[tuple[str, str], ...]]],
              ) -> list[Message]:
    return [Message(topic=t, payload=p, properties=props, where=f"sent {i}")
            for i, (t, p, _c, props) in enumerate(sent)]


async def test_a_retry_resends_identical_bytes_and_signature(tmp_path: Path) -> None:
    signer, cert = _pair("ES256")
    sent = await _forward(tmp_path, signer, [0x80, 0x83], 3, batch_max_events=10)
    assert len(sent) == 3
    assert sent[0][1] == sent[1][1] == sent[2][1]
    assert sent[0][3] == sent[2][3]
    report = verify(_messages(sent), Trust(certs=(cert,)))
    assert report.ok
    assert report.chains[0].duplicates == 2


async def test_a_split_after_freezing_is_an_explained_gap(tmp_path: Path) -> None:
    signer, cert = _pair("EdDSA")
    sent = await _forward(tmp_path, signer, [0x95], 2, batch_max_events=10)
    delivered = _messages(sent)[1:]  # the refused first document never reached anyone
    report = verify(delivered, Trust(certs=(cert,)))
    assert report.ok, report.as_dict()
    (gap,) = report.chains[0].gaps_explained
    assert (gap["seq"], gap["reason"]) == (1, "superseded")
    assert report.chains[0].chain_start == {"reason": "first-start"}


async def test_mqtt_3_1_1_signatures_go_on_the_sibling_topic(tmp_path: Path) -> None:
    signer, cert = _pair("ES256")
    sent = await _forward(tmp_path, signer, [], 2, batch_max_events=10, protocol="3.1.1")
    topics_sent = [t for t, *_ in sent]
    assert topics_sent == ["trace/lab/gw-1/signatures", "trace/lab/gw-1/events"]
    assert all(k != JWS_PROPERTY for k, _v in sent[1][3])
    assert verify(_messages(sent), Trust(certs=(cert,))).ok
    assert not verify(_messages(sent[1:]), Trust(certs=(cert,))).ok  # unsigned without it


def test_check_config_refuses_a_readable_signing_key(tmp_path: Path) -> None:
    from tests.core.test_config import MINIMAL
    from tests.support.harness import agent_cli

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(_pem_key(key))
    (tmp_path / "c.pem").write_bytes(_pem_cert(_cert(key)))
    (tmp_path / "k.pem").chmod(0o644)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(MINIMAL.rstrip() + f"\n  signing: {{key: {tmp_path / 'k.pem'}, "
                   f"cert: {tmp_path / 'c.pem'}}}\n")
    proc = agent_cli("check-config", "-c", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "uplink.signing" in proc.stderr
    assert "chmod 600" in proc.stderr
    (tmp_path / "k.pem").chmod(0o600)
    proc = agent_cli("check-config", "-c", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_chained_document_validates_against_the_epcis_schema() -> None:
    from tests.pipeline.test_epcis_schema import assert_valid

    gap = {"reason": "dead-letter", "chainId": "c-1", "seqs": [1, 1], "count": 2,
           "detail": "reason code 0x87 Not authorized", "chainStart": {"reason": "first-start"}}
    for link in (ChainLink(chain_id="c-1", seq=1, prev_hash=None,
                           chain_start={"reason": "first-start"}, gaps=()),
                 ChainLink(chain_id="c-1", seq=2, prev_hash="sha-256:" + "0" * 64,
                           chain_start=None, gaps=(gap,))):
        assert_valid(json.loads(document_bytes([EVENT], NOW, gateway="lab/gw-1", link=link)))


async def test_buffer_export_documents_is_what_verify_reads(tmp_path: Path) -> None:
    """Frozen documents still in a gateway's buffer, exported and verified offline."""
    from tests.core.test_config import MINIMAL
    from tests.support.harness import agent_cli

    signer, cert = _pair("ES256")
    db = tmp_path / "buffer.db"
    async with await SqliteBuffer.open(BufferConfig(path=db)) as buf:
        await buf.commit_events([], [_ev(i) for i in range(4)])
        rows = await buf.claim(10, lease_s=30)
        for r in rows[:3]:
            await buf.freeze([r.id], _build, signer.sign)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(MINIMAL.replace("./buffer.db", str(db)))
    out = tmp_path / "export.jsonl"
    proc = agent_cli("buffer", "export", "--documents", "-o", str(out), "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "exported 3 frozen documents" in proc.stderr
    (tmp_path / "gw.pem").write_bytes(_pem_cert(cert))
    proc = agent_cli("verify", str(out), "--cert", str(tmp_path / "gw.pem"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 verified" in proc.stdout
    proc = agent_cli("verify", str(out))  # no trust anchor: a usage error
    assert proc.returncode == 2


async def test_reload_says_a_signing_change_needs_a_restart(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.remote import RemoteCommands
    from tests.core.test_config import MINIMAL

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(_pem_key(key))
    (tmp_path / "k.pem").chmod(0o600)
    (tmp_path / "c.pem").write_bytes(_pem_cert(_cert(key)))
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(MINIMAL)
    remote = RemoteCommands(load_config(cfg), None, None, None,  # type: ignore[arg-type]
                            config_path=cfg)
    cfg.write_text(MINIMAL.rstrip() + f"\n  signing: {{key: {tmp_path / 'k.pem'}, "
                   f"cert: {tmp_path / 'c.pem'}}}\n")
    answer = await remote.reload()
    assert answer["changed"] == ["uplink"]
    assert answer["restartRequired"] is True
