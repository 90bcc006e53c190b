"""``edge-agent verify --ca``: a real RFC 5280 path validation (issue 14).

A plant PKI made with ``cryptography`` (root -> intermediate -> gateway, tests/support/pki.py),
documents built and signed by the agent's own code (document_bytes, signer_from_pem), checked
by the pure core and, for the files and exit codes, by the CLI in a subprocess.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from agent.buffer.chain import ChainLink
from agent.fieldtools.verify import Message, Trust, capture_line, verify
from agent.uplink.provenance import (
    JWS_PROPERTY,
    Signer,
    document_bytes,
    jws_header,
    sha256_ref,
    signer_from_pem,
)
from tests.support.harness import agent_cli
from tests.support.pki import Ca, key_pem, pem, root_ca, write

GATEWAY = ("lab", "gw-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the past: "now" must not matter, signing time does
EVENT = json.dumps({"type": "ObjectEvent", "eventID": "ni:///sha-256;00?ver=CBV2.0",
                    "eventTime": "2026-01-01T00:00:00.000Z", "eventTimeZoneOffset": "+00:00",
                    "epcList": ["urn:epc:raw:96.x1"], "action": "OBSERVE"})


def _plant() -> tuple[Ca, Ca]:
    root = root_ca(start=T0 - timedelta(days=400))
    return root, root.issue_ca("Plant Issuing CA", start=T0 - timedelta(days=300), days=3000)


def _signer(ca: Ca, *, start: datetime, days: float = 30, with_chain: bool = True,
            san_uri: str | None = None) -> tuple[Signer, x509.Certificate]:
    cert, key = ca.issue_gateway(*GATEWAY, start=start, days=days, san_uri=san_uri)
    chain = pem(cert, ca.cert) if with_chain else pem(cert)  # the cert file as TLS wants it
    return signer_from_pem(key_pem(key), chain), cert


def _docs(plan: list[tuple[Signer, datetime]], *, gateway: str = "lab/gw-1") -> list[Message]:
    """One chain: document n signed by plan[n-1]'s signer at its time (its creationDate)."""
    out: list[Message] = []
    prev: str | None = None
    for seq, (signer, at) in enumerate(plan, 1):
        link = ChainLink(chain_id="c-1", seq=seq, prev_hash=prev,
                         chain_start={"reason": "first-start"} if seq == 1 else None, gaps=())
        payload = document_bytes([EVENT], at, gateway=gateway, link=link)
        prev = sha256_ref(payload)
        out.append(Message(topic=f"trace/{gateway}/events", payload=payload,
                           properties=((JWS_PROPERTY, signer.sign(payload)),),
                           where=f"msg {seq}"))
    return out


def _why(report_chain: dict[str, object]) -> str:
    return json.dumps(report_chain["badSignatures"])


def test_the_gateway_sends_its_intermediates_in_x5c_and_the_path_validates() -> None:
    root, inter = _plant()
    signer, cert = _signer(inter, start=T0)
    header = jws_header(signer.sign(b"{}"))
    assert len(header["x5c"]) == 2  # leaf, then the intermediate from the cert file
    assert x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0])) == cert
    msgs = _docs([(signer, T0 + timedelta(days=1)), (signer, T0 + timedelta(days=2))])
    report = verify(msgs, Trust(cas=(root.cert,)))
    assert report.ok, report.as_dict()
    assert report.chains[0].verified == [1, 2]
    # The intermediate is not a trust anchor: trusting it alone is not trusting the root.
    other_root = root_ca("Another Root")
    assert not verify(msgs, Trust(cas=(other_root.cert,))).ok


def test_a_missing_intermediate_fails_with_a_clear_message_and_can_be_supplied() -> None:
    root, inter = _plant()
    signer, _ = _signer(inter, start=T0, with_chain=False)
    msgs = _docs([(signer, T0 + timedelta(days=1))])
    report = verify(msgs, Trust(cas=(root.cert,)))
    assert not report.ok
    why = report.chains[0].bad_signatures[0]["why"]
    assert "no path to a trusted CA" in why, why
    assert "CN=Plant Issuing CA" in why
    assert "--intermediates" in why
    assert verify(msgs, Trust(cas=(root.cert,), intermediates=(inter.cert,))).ok


def test_validity_is_checked_at_signing_time_not_now() -> None:
    root, inter = _plant()
    signer, _ = _signer(inter, start=T0, days=10)  # long expired by the time this test runs
    inside = _docs([(signer, T0 + timedelta(days=5))])
    assert verify(inside, Trust(cas=(root.cert,))).ok
    after = _docs([(signer, T0 + timedelta(days=11))])
    report = verify(after, Trust(cas=(root.cert,)))
    assert not report.ok
    why = report.chains[0].bad_signatures[0]["why"]
    assert "was not valid when the document was signed" in why, why
    assert "creationDate 2026-01-12" in why
    before = _docs([(signer, T0 - timedelta(days=1))])
    assert not verify(before, Trust(cas=(root.cert,))).ok


def test_an_intermediate_expired_at_signing_time_is_named() -> None:
    root = root_ca(start=T0 - timedelta(days=400))
    inter = root.issue_ca("Short Issuing CA", start=T0 - timedelta(days=1), days=6)
    signer, _ = _signer(inter, start=T0)  # the leaf outlives its issuer
    assert verify(_docs([(signer, T0 + timedelta(days=2))]), Trust(cas=(root.cert,))).ok
    report = verify(_docs([(signer, T0 + timedelta(days=8))]), Trust(cas=(root.cert,)))
    why = report.chains[0].bad_signatures[0]["why"]
    assert "intermediate CA CN=Short Issuing CA was not valid" in why, why


def test_a_pinned_certificate_is_checked_for_dates_too() -> None:
    _root, inter = _plant()
    signer, cert = _signer(inter, start=T0, days=10)
    assert verify(_docs([(signer, T0 + timedelta(days=1))]), Trust(certs=(cert,))).ok
    report = verify(_docs([(signer, T0 + timedelta(days=12))]), Trust(certs=(cert,)))
    assert "not valid when the document was signed" in report.chains[0].bad_signatures[0][
        "why"]


def test_a_revoked_signing_certificate_is_a_named_failure() -> None:
    root, inter = _plant()
    signer, cert = _signer(inter, start=T0)
    msgs = _docs([(signer, T0 + timedelta(days=1)), (signer, T0 + timedelta(days=3))])
    clean = x509.load_pem_x509_crl(inter.crl(T0 + timedelta(days=4)))
    assert verify(msgs, Trust(cas=(root.cert,), crls=(clean,))).ok
    inter.revoke(cert, T0 + timedelta(days=2), x509.ReasonFlags.key_compromise)
    crl = x509.load_pem_x509_crl(inter.crl(T0 + timedelta(days=4)))
    report = verify(msgs, Trust(cas=(root.cert,), crls=(crl,)))
    assert not report.ok
    bad = report.chains[0].bad_signatures
    # A compromised key can write any creationDate: every document it signed fails.
    assert [b["seq"] for b in bad] == [1, 2]
    assert "revoked" in bad[0]["why"], bad[0]["why"]
    assert "keyCompromise" in bad[0]["why"]
    assert f"{cert.serial_number:x}" in bad[0]["why"]


def test_a_routine_revocation_keeps_earlier_documents_valid() -> None:
    root, inter = _plant()
    signer, cert = _signer(inter, start=T0)
    msgs = _docs([(signer, T0 + timedelta(days=1)), (signer, T0 + timedelta(days=3))])
    inter.revoke(cert, T0 + timedelta(days=2), x509.ReasonFlags.superseded)
    crl = x509.load_pem_x509_crl(inter.crl(T0 + timedelta(days=4)))
    report = verify(msgs, Trust(cas=(root.cert,), crls=(crl,)))
    assert report.chains[0].verified == [1]
    assert [b["seq"] for b in report.chains[0].bad_signatures] == [2]


def test_with_crls_a_signing_certificate_without_its_issuers_crl_fails() -> None:
    root, inter = _plant()
    signer, _ = _signer(inter, start=T0)
    msgs = _docs([(signer, T0 + timedelta(days=1))])
    root_crl = x509.load_pem_x509_crl(root.crl(T0))  # covers the intermediate, not the leaf
    report = verify(msgs, Trust(cas=(root.cert,), crls=(root_crl,)))
    assert not report.ok
    assert "revocation not checked" in report.chains[0].bad_signatures[0]["why"]
    # A revoked intermediate fails every certificate below it.
    inter_crl = x509.load_pem_x509_crl(inter.crl(T0))
    root.revoke(inter.cert, T0 - timedelta(days=1))
    report = verify(msgs, Trust(cas=(root.cert,), crls=(x509.load_pem_x509_crl(root.crl(T0)),
                                                         inter_crl)))
    assert "intermediate CA CN=Plant Issuing CA" in _why(report.chains[0].as_dict(
        allow_unsigned=False))


def test_the_certificate_must_name_the_documents_gateway() -> None:
    root, inter = _plant()
    other, _ = _signer(inter, start=T0, san_uri="urn:tea:gateway:lab:gw-other")
    msgs = _docs([(other, T0 + timedelta(days=1))])  # gw-other's key signing as gw-1
    report = verify(msgs, Trust(cas=(root.cert,)))
    assert not report.ok
    why = report.chains[0].bad_signatures[0]["why"]
    assert "identity mismatch" in why, why
    assert "'lab/gw-1'" in why
    assert "urn:tea:gateway:lab:gw-other" in why
    # The same holds for a pinned certificate.
    assert not verify(msgs, Trust(certs=(x509.load_der_x509_certificate(base64.b64decode(
        jws_header(msgs[0].properties[0][1])["x5c"][0])),))).ok


def test_renewal_old_then_new_certificate_verifies_across_the_change() -> None:
    root, inter = _plant()
    old, _ = _signer(inter, start=T0, days=10)
    new, _ = _signer(inter, start=T0 + timedelta(days=6), days=10)  # renewed at 2/3
    plan = [(old, T0 + timedelta(days=d)) for d in (1, 3, 5)]
    plan += [(new, T0 + timedelta(days=d)) for d in (7, 12, 15)]  # old has expired by day 12
    report = verify(_docs(plan), Trust(cas=(root.cert,)))
    assert report.ok, report.as_dict()
    assert report.chains[0].verified == [1, 2, 3, 4, 5, 6]
    # The old key signing after its certificate expired would not pass.
    late = _docs([*plan[:3], (old, T0 + timedelta(days=11))])
    assert [b["seq"] for b in verify(late, Trust(cas=(root.cert,))).chains[0]
            .bad_signatures] == [4]


def test_cli_intermediates_crl_and_bad_arguments(tmp_path: Path) -> None:
    root, inter = _plant()
    signer, cert = _signer(inter, start=T0, with_chain=False)
    msgs = _docs([(signer, T0 + timedelta(days=1))])
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(capture_line(m.topic or "", m.payload, m.properties) + "\n"
                               for m in msgs))
    ca = write(tmp_path / "root.pem", pem(root.cert))
    inters = write(tmp_path / "inter.pem", pem(inter.cert))
    proc = agent_cli("verify", "--ca", str(ca), str(capture))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no path to a trusted CA" in proc.stdout
    proc = agent_cli("verify", "--ca", str(ca), "--intermediates", str(inters), str(capture))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inter.revoke(cert, T0, x509.ReasonFlags.key_compromise)
    crl = write(tmp_path / "inter.crl", inter.crl(T0 + timedelta(days=2)))
    proc = agent_cli("verify", "--ca", str(ca), "--intermediates", str(inters), "--crl",
                     str(crl), "--json", str(capture))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "revoked" in json.loads(proc.stdout)["chains"][0]["badSignatures"][0]["why"]
    # Misuse: exit 2 with a sentence, never a traceback.
    for args, says in [(("--crl", str(crl), str(capture)), "need --ca"),
                       (("--ca", str(ca), "--crl", str(capture), str(capture)),
                        f"--crl {capture}: cannot read a CRL"),
                       (("--ca", str(ca), "--intermediates", str(tmp_path / "nope.pem"),
                         str(capture)), "--intermediates"),
                       (("--ca", str(capture), str(capture)), f"--ca {capture}")]:
        proc = agent_cli("verify", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
