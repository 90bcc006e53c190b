"""``edge-agent verify``: check what a cloud received against the gateways' chains.

Pure core (:func:`verify`) over :class:`Message` values; readers for the capture format
(JSON lines, docs/provenance.md) and for ``edge-agent buffer export --documents`` lines.

Per gateway and chain: every signature is checked against the trust anchor (a gateway
certificate, or a CA that directly issued the certificate in the JWS ``x5c``), documents are
ordered by ``tea:seq`` and each ``tea:prevHash`` is compared with the SHA-256 of the previous
document's bytes. A seq missing from the capture is *explained* when a later document of the
chain lists it in ``tea:gaps`` (dead-lettered, superseded by a split), else *unexplained*.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from agent.uplink.provenance import (
    JWS_PROPERTY,
    SIGNATURES_SUFFIX,
    VerifyKey,
    jws_header,
    verify_detached,
    verify_key_from_cert,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    topic: str | None
    payload: bytes  # as received (gzip when the content-encoding property says so)
    properties: tuple[tuple[str, str], ...] = ()
    where: str = ""  # "capture line 12": for reports


@dataclass(frozen=True, slots=True)
class Trust:
    """Gateway certificates (by x5t#S256) and CAs that may have issued one."""

    certs: tuple[x509.Certificate, ...] = ()
    cas: tuple[x509.Certificate, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.certs and not self.cas

    def key_for(self, detached: str) -> VerifyKey | str:
        """The key to check ``detached`` with, or why there is none."""
        try:
            header = jws_header(detached)
        except (ValueError, binascii.Error) as exc:
            return f"unreadable JWS header: {exc}"
        thumb = header.get("x5t#S256")
        for c in self.certs:
            k = verify_key_from_cert(c)
            if k.thumbprint == thumb:
                return k
        x5c = header.get("x5c")
        if self.cas and isinstance(x5c, list) and x5c and isinstance(x5c[0], str):
            try:
                leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
            except (ValueError, binascii.Error) as exc:
                return f"unreadable x5c certificate: {exc}"
            for ca in self.cas:
                try:
                    leaf.verify_directly_issued_by(ca)
                except (InvalidSignature, ValueError, TypeError):
                    continue  # not this CA
                k = verify_key_from_cert(leaf)
                if k.thumbprint != thumb:
                    return "x5t#S256 does not match the x5c certificate"
                return k
            return "the signing certificate is not issued by a trusted CA"
        return "signed by a certificate that is not trusted (x5t#S256 unknown)"


@dataclass(slots=True)
class _Doc:
    seq: int
    payload: bytes
    sha: str  # "sha-256:<hex>"
    body: dict[str, Any]
    where: str
    jws: str | None


@dataclass(slots=True)
class ChainReport:
    gateway: str
    chain_id: str
    verified: list[int] = field(default_factory=list)
    unsigned: list[int] = field(default_factory=list)
    duplicates: int = 0
    bad_signatures: list[dict[str, Any]] = field(default_factory=list)
    altered: list[dict[str, Any]] = field(default_factory=list)
    gaps_explained: list[dict[str, Any]] = field(default_factory=list)
    gaps_unexplained: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # events the gateway dropped
    chain_start: dict[str, Any] | None = None
    first_seq: int | None = None
    last_seq: int | None = None

    def ok(self, *, allow_unsigned: bool) -> bool:
        return not (self.bad_signatures or self.altered or self.gaps_unexplained
                    or (self.unsigned and not allow_unsigned))

    def as_dict(self, *, allow_unsigned: bool) -> dict[str, Any]:
        return {
            "gateway": self.gateway, "chainId": self.chain_id, "firstSeq": self.first_seq,
            "lastSeq": self.last_seq, "verified": len(self.verified),
            "unsigned": self.unsigned, "duplicates": self.duplicates,
            "badSignatures": self.bad_signatures, "altered": self.altered,
            "gapsExplained": self.gaps_explained, "gapsUnexplained": self.gaps_unexplained,
            "droppedByGateway": self.dropped, "chainStart": self.chain_start,
            "ok": self.ok(allow_unsigned=allow_unsigned),
        }


@dataclass(slots=True)
class Report:
    chains: list[ChainReport] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # not a document at all
    allow_unsigned: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.chains) and all(
            c.ok(allow_unsigned=self.allow_unsigned) for c in self.chains)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems,
                "chains": [c.as_dict(allow_unsigned=self.allow_unsigned) for c in self.chains]}


def _props(m: Message) -> dict[str, str]:
    return dict(m.properties)


def _is_signature_message(m: Message) -> bool:
    return m.topic is not None and m.topic.rsplit("/", 1)[-1] == SIGNATURES_SUFFIX


def _document_bytes(m: Message) -> bytes:
    if _props(m).get("content-encoding") == "gzip":
        return gzip.decompress(m.payload)
    return m.payload


def verify(messages: Iterable[Message], trust: Trust, *, allow_unsigned: bool = False) -> Report:
    report = Report(allow_unsigned=allow_unsigned)
    msgs = list(messages)
    # MQTT 3.1.1: signatures arrive on a sibling topic, matched by the document's hash.
    sibling: dict[str, str] = {}
    for m in msgs:
        if _is_signature_message(m):
            try:
                s = json.loads(m.payload)
                sibling[str(s["sha256"])] = str(s["jws"])
            except (ValueError, KeyError, TypeError) as exc:
                report.problems.append({"where": m.where, "problem": f"bad signature message: "
                                        f"{exc}"})
    chains: dict[tuple[str, str], dict[int, list[_Doc]]] = {}
    for m in msgs:
        if _is_signature_message(m) or (m.topic is not None and not m.topic.endswith("/events")):
            continue  # status, health, alarms: not documents
        try:
            payload = _document_bytes(m)
            body = json.loads(payload)
            gateway, chain_id, seq = body["tea:gateway"], body["tea:chainId"], body["tea:seq"]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            report.problems.append({"where": m.where, "problem": f"not a chained document: "
                                    f"{type(exc).__name__}: {exc}"})
            continue
        if not isinstance(seq, int) or not isinstance(gateway, str) or not isinstance(
                chain_id, str):
            report.problems.append({"where": m.where, "problem": "bad tea:seq/gateway/chainId"})
            continue
        sha = "sha-256:" + hashlib.sha256(payload).hexdigest()
        jws = _props(m).get(JWS_PROPERTY) or sibling.get(sha)
        chains.setdefault((gateway, chain_id), {}).setdefault(seq, []).append(
            _Doc(seq, payload, sha, body, m.where, jws))
    for (gateway, chain_id), by_seq in sorted(chains.items()):
        report.chains.append(_check_chain(gateway, chain_id, by_seq, trust))
    return report


def _check_chain(gateway: str, chain_id: str, by_seq: dict[int, list[_Doc]],
                 trust: Trust) -> ChainReport:
    r = ChainReport(gateway, chain_id)
    good: dict[int, _Doc] = {}  # the one trustworthy copy per seq
    for seq in sorted(by_seq):
        seen: set[str] = set()
        for d in by_seq[seq]:
            if d.sha in seen:
                r.duplicates += 1  # identical bytes again: at-least-once, harmless
                continue
            seen.add(d.sha)
            if d.jws is None:
                r.unsigned.append(seq)
                good.setdefault(seq, d)  # for the links; a signed copy replaces it
                continue
            key = trust.key_for(d.jws)
            why = key if isinstance(key, str) else verify_detached(d.jws, d.payload, key)
            if why is None and seq in good and good[seq].jws is not None:
                # Two different documents, both signed by the gateway, under one seq: the seq
                # was handed out twice (or the key signs for someone else). Never harmless.
                r.altered.append({"seq": seq, "where": d.where,
                                  "why": f"seq reused: another signed document with this seq "
                                         f"({good[seq].where}) has other bytes"})
            elif why is None:
                r.verified.append(seq)
                good[seq] = d
            elif isinstance(key, VerifyKey) and "does not verify" in why:
                r.altered.append({"seq": seq, "where": d.where,
                                  "why": "the bytes are not the ones signed: " + why})
            else:
                r.bad_signatures.append({"seq": seq, "where": d.where, "why": why})
    if not good:
        return r
    seqs = sorted(good)
    r.first_seq, r.last_seq = seqs[0], seqs[-1]
    first = good[seqs[0]].body
    if seqs[0] == 1:
        r.chain_start = first.get("tea:chainStart") or {"reason": "missing tea:chainStart"}
    explained: dict[int, dict[str, Any]] = {}
    for seq in seqs:
        for g in good[seq].body.get("tea:gaps", []) or []:
            if not isinstance(g, dict):
                continue
            if "seqs" in g and g.get("chainId", chain_id) == chain_id:
                lo, hi = (int(x) for x in g["seqs"])
                for s in range(lo, hi + 1):
                    explained[s] = {"seq": s, "reason": g.get("reason"),
                                    "detail": g.get("detail"), "reportedIn": seq}
                if lo == 1 and isinstance(g.get("chainStart"), dict):
                    r.chain_start = g["chainStart"]  # seq 1 itself was never delivered
            elif "ids" in g:
                r.dropped.append({**g, "reportedIn": seq})
    for s in sorted(explained):
        if s < seqs[0] and s not in by_seq:  # before the first document captured
            r.gaps_explained.append(explained[s])
    for a, b in itertools.pairwise(seqs):
        if b == a + 1:
            prev = good[b].body.get("tea:prevHash")
            if prev != good[a].sha:
                r.altered.append({"seq": a, "where": good[a].where,
                                  "why": f"seq {b} names another previous document "
                                         f"(prevHash {prev}, this one is {good[a].sha})"})
            continue
        for s in range(a + 1, b):
            if s in by_seq:
                continue  # present but not trusted: reported above
            if s in explained:
                r.gaps_explained.append(explained[s])
            else:
                r.gaps_unexplained.append({"seq": s, "why": "missing, and no later document "
                                                            "of the chain explains it"})
    if seqs[0] == 1 and "tea:prevHash" in first:
        r.altered.append({"seq": 1, "where": good[1].where,
                          "why": "seq 1 carries a tea:prevHash"})
    return r


# ----------------------------------------------------------------------------- inputs


def read_lines(lines: Iterable[str], source: str) -> Iterator[Message]:
    """Capture lines (topic, payload / payload_b64, properties) or buffer export lines."""
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        where = f"{source}:{n}"
        try:
            rec = json.loads(line)
            if "payload_b64" in rec:
                payload = base64.b64decode(rec["payload_b64"], validate=True)
            else:
                payload = str(rec["payload"]).encode()
            props = tuple((str(k), str(v)) for k, v in rec.get("properties", []))
            topic = rec.get("topic")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            yield Message(topic="?/events", payload=b"", where=f"{where} (unreadable: {exc})")
            continue
        yield Message(topic=None if topic is None else str(topic), payload=payload,
                      properties=props, where=where)


def capture_line(topic: str, payload: bytes, properties: Sequence[tuple[str, str]]) -> str:
    """One line of the capture format (what ``verify`` reads)."""
    return json.dumps({"topic": topic, "payload_b64": base64.b64encode(payload).decode(),
                       "properties": [list(p) for p in properties]}, separators=(",", ":"))


def load_trust(certs: Sequence[bytes], cas: Sequence[bytes]) -> Trust:
    def pems(data: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
        out: list[x509.Certificate] = []
        for d in data:
            out.extend(x509.load_pem_x509_certificates(d))
        return tuple(out)

    return Trust(pems(certs), pems(cas))


def render(report: Report) -> str:
    lines = [f"PROBLEM {p['where']}: {p['problem']}" for p in report.problems]
    for c in report.chains:
        state = "OK" if c.ok(allow_unsigned=report.allow_unsigned) else "FAILED"
        lines.append(f"{state} gateway {c.gateway} chain {c.chain_id}: seq {c.first_seq}.."
                     f"{c.last_seq}, {len(c.verified)} verified, {c.duplicates} duplicate(s)")
        if c.chain_start is not None:
            lines.append(f"  chain began: {json.dumps(c.chain_start, sort_keys=True)}")
        if c.unsigned:
            lines.append(f"  unsigned: seq {_ranges(c.unsigned)}")
        lines += [f"  BAD SIGNATURE seq {b['seq']} ({b['where']}): {b['why']}"
                  for b in c.bad_signatures]
        lines += [f"  ALTERED seq {a['seq']} ({a['where']}): {a['why']}" for a in c.altered]
        lines += [f"  gap seq {g['seq']} explained by seq {g['reportedIn']}: {g['reason']} "
                  f"({g.get('detail')})" for g in c.gaps_explained]
        lines += [f"  UNEXPLAINED GAP seq {g['seq']}: {g['why']}" for g in c.gaps_unexplained]
        lines += [f"  gateway dropped {d.get('count')} {d.get('what')} ({d.get('reason')}, "
                  f"ids {d.get('ids')}), reported in seq {d['reportedIn']}" for d in c.dropped]
    if not report.chains and not report.problems:
        lines.append("FAILED: no chained document found")
    return "\n".join(lines)


def _ranges(seqs: Sequence[int]) -> str:
    out: list[str] = []
    for s in sorted(set(seqs)):
        if out and out[-1].split("..")[-1] == str(s - 1):
            out[-1] = out[-1].split("..")[0] + f"..{s}"
        else:
            out.append(str(s))
    return ", ".join(out)
