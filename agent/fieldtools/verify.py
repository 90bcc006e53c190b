"""``edge-agent verify``: check what a cloud received against the gateways' chains.

Pure core (:func:`verify`) over :class:`Message` values; readers for the capture format
(JSON lines, docs/provenance.md) and for ``edge-agent buffer export --documents`` lines.

Per gateway and chain: every signature is checked against the trust anchor (a pinned gateway
certificate, or CAs: an RFC 5280 path from the certificate in the JWS ``x5c`` through
intermediates to a CA, valid at the document's creationDate, not revoked, naming the
document's ``tea:gateway``: :class:`Trust`), documents are
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
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from agent.pipeline.epcis import iso_ms
from agent.uplink.identity import gateway_uri
from agent.uplink.provenance import (
    JWS_PROPERTY,
    SIGNATURES_SUFFIX,
    VerifyKey,
    jws_header,
    verify_detached,
    verify_key_from_cert,
)

GATEWAY_URN = "urn:tea:gateway:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    topic: str | None
    payload: bytes  # as received (gzip when the content-encoding property says so)
    properties: tuple[tuple[str, str], ...] = ()
    where: str = ""  # "capture line 12": for reports


@dataclass(frozen=True, slots=True)
class Trust:
    """What a signature may be trusted through (docs/provenance.md "What `--ca` checks").

    ``certs``: pinned gateway certificates (matched by x5t#S256). ``cas``: trust anchors for
    an RFC 5280 path validation (cryptography's x509 verification, web PKI profile) of the
    certificate in the JWS ``x5c``, with ``intermediates`` from ``x5c[1:]`` and these, at the
    document's signing time (its ``creationDate``). ``crls``: revocation lists of the CAs.
    """

    certs: tuple[x509.Certificate, ...] = ()
    cas: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.certs and not self.cas

    def key_for(self, detached: str, *, signed_at: datetime | None = None,
                gateway: str | None = None) -> VerifyKey | str:
        """The key to check ``detached`` with, or why there is none.

        ``signed_at`` (the document's creationDate) is when the certificate must have been
        valid: the signature was made then, in the freeze transaction, and a certificate
        renewed away (or expired) since must still vouch for what it signed while valid.
        ``gateway`` (tea:gateway) must be the identity the certificate names."""
        try:
            header = jws_header(detached)
        except (ValueError, binascii.Error) as exc:
            return f"unreadable JWS header: {exc}"
        thumb = header.get("x5t#S256")
        for c in self.certs:
            k = verify_key_from_cert(c)
            if k.thumbprint == thumb:
                return _usable(c, signed_at, gateway, pinned=True) or k
        x5c = header.get("x5c")
        if not self.cas or not isinstance(x5c, list) or not x5c or not all(
                isinstance(x, str) for x in x5c):
            return "signed by a certificate that is not trusted (x5t#S256 unknown)"
        try:
            sent = [x509.load_der_x509_certificate(base64.b64decode(x, validate=True))
                    for x in x5c]
        except (ValueError, binascii.Error) as exc:
            return f"unreadable x5c certificate: {exc}"
        leaf = sent[0]
        k = verify_key_from_cert(leaf)
        if k.thumbprint != thumb:
            return "x5t#S256 does not match the x5c certificate"
        if signed_at is None:
            return ("the document has no readable creationDate: the certificate's validity at "
                    "signing time cannot be checked")
        why = _usable(leaf, signed_at, gateway)
        if why is not None:
            return why
        chain = self._path(leaf, [*sent[1:], *self.intermediates], signed_at)
        if isinstance(chain, str):
            return chain
        return self._revoked(chain, signed_at) or k

    def _path(self, leaf: x509.Certificate, intermediates: list[x509.Certificate],
              signed_at: datetime) -> list[x509.Certificate] | str:
        verifier = (PolicyBuilder().store(Store(list(self.cas))).time(signed_at)
                    .build_client_verifier())
        try:
            return list(verifier.verify(leaf, intermediates).chain)
        except VerificationError as exc:
            return _explain_path(leaf, intermediates, self.cas, signed_at, exc)

    def _revoked(self, chain: list[x509.Certificate], signed_at: datetime) -> str | None:
        """Why a certificate of the validated path is revoked for this document, or None.

        Every certificate below the anchor is looked up in the CRLs its issuer signed. A
        certificate revoked as superseded / cessationOfOperation / affiliationChanged (a
        routine end, not a compromise) still vouches for documents signed before the
        revocation date; any other reason (keyCompromise, none given, ...) revokes every
        document, because a stolen key can write any creationDate it likes."""
        if not self.crls:
            return None
        for cert, issuer in itertools.pairwise(chain):
            crls = [c for c in self.crls if c.issuer == issuer.subject
                    and c.is_signature_valid(issuer.public_key())]  # type: ignore[arg-type]
            if not crls:
                if cert is chain[0]:
                    return (f"revocation not checked: no --crl signed by the issuer "
                            f"{issuer.subject.rfc4514_string()} of the signing certificate")
                continue
            for crl in crls:
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is None:
                    continue
                reason = _crl_reason(entry)
                when = entry.revocation_date_utc
                routine = reason in {"superseded", "cessationOfOperation",
                                     "affiliationChanged"}
                if routine and signed_at < when:
                    continue
                what = "the signing certificate" if cert is chain[0] else "intermediate CA"
                return (f"revoked: {what} {cert.subject.rfc4514_string()} (serial "
                        f"{cert.serial_number:x}) was revoked at {iso_ms(when)}, reason "
                        f"{reason or 'unspecified'}")
        return None


def _crl_reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        ext = entry.extensions.get_extension_for_class(x509.CRLReason)
    except x509.ExtensionNotFound:
        return None
    flag = ext.value.reason
    return _REASON_NAMES.get(flag, flag.name)


_REASON_NAMES = {x509.ReasonFlags.superseded: "superseded",
                 x509.ReasonFlags.cessation_of_operation: "cessationOfOperation",
                 x509.ReasonFlags.affiliation_changed: "affiliationChanged",
                 x509.ReasonFlags.key_compromise: "keyCompromise",
                 x509.ReasonFlags.ca_compromise: "cACompromise"}


def gateway_names(cert: x509.Certificate) -> tuple[list[str], str | None]:
    """The ``urn:tea:gateway:`` URIs in the certificate's SAN, and its CN (or None)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(GATEWAY_URN)]
    except x509.ExtensionNotFound:
        uris = []
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else None
    return uris, cn


def identity_problem(cert: x509.Certificate, gateway: str, *,
                     pinned: bool = False) -> str | None:
    """Why ``cert`` may not sign for ``gateway`` (``site/id``), or None.

    The SAN URI ``urn:tea:gateway:{site}:{id}`` is the identity (docs/identity.md); a
    certificate without one falls back to its CN (``site/id``, what the broker's ACL uses).
    A CA vouches for many certificates, so one it issued must name this gateway. A pinned
    certificate (``--cert``) is trusted by the operator as it is: only a gateway URI naming
    another gateway is refused (a separate signing certificate may name none)."""
    uris, cn = gateway_names(cert)
    site, _, gid = gateway.partition("/")
    want = gateway_uri(site, gid)
    if uris:
        if want in uris:
            return None
        return (f"identity mismatch: the document says tea:gateway {gateway!r} but the "
                f"signing certificate names {', '.join(uris)}")
    if cn == gateway or pinned:
        return None
    return (f"identity mismatch: the document says tea:gateway {gateway!r} but the signing "
            f"certificate has no {GATEWAY_URN} URI and its CN is {cn!r}")


def _usable(cert: x509.Certificate, signed_at: datetime | None, gateway: str | None, *,
            pinned: bool = False) -> str | None:
    """Checks of the signing certificate itself: validity at signing time, key usage,
    identity."""
    if signed_at is not None and not (
            cert.not_valid_before_utc <= signed_at <= cert.not_valid_after_utc):
        return (f"the signing certificate {cert.subject.rfc4514_string()} (serial "
                f"{cert.serial_number:x}) was not valid when the document was signed: "
                f"creationDate {iso_ms(signed_at)}, valid {iso_ms(cert.not_valid_before_utc)} "
                f"to {iso_ms(cert.not_valid_after_utc)}")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            return "the signing certificate's keyUsage does not allow digitalSignature"
    except x509.ExtensionNotFound:
        pass
    if gateway is not None:
        return identity_problem(cert, gateway, pinned=pinned)
    return None


def _explain_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  cas: Sequence[x509.Certificate], signed_at: datetime,
                  exc: VerificationError) -> str:
    """A sentence a technician can act on, for a path that did not validate."""
    cert = leaf
    for _ in range(8):
        if any(c.subject == cert.issuer and _issued(cert, c) for c in cas):
            break  # reached an anchor: the failure is elsewhere (extensions, dates)
        up = next((c for c in intermediates if c.subject == cert.issuer and _issued(cert, c)),
                  None)
        if up is None:
            return (f"no path to a trusted CA: the issuer {cert.issuer.rfc4514_string()} of "
                    f"{cert.subject.rfc4514_string()} is neither a trusted CA (--ca) nor an "
                    "intermediate in the JWS x5c or --intermediates")
        if not up.not_valid_before_utc <= signed_at <= up.not_valid_after_utc:
            return (f"intermediate CA {up.subject.rfc4514_string()} was not valid when the "
                    f"document was signed (creationDate {iso_ms(signed_at)}, valid "
                    f"{iso_ms(up.not_valid_before_utc)} to {iso_ms(up.not_valid_after_utc)})")
        cert = up
    return f"the certificate path does not validate: {exc}"


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


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


def _signed_at(body: dict[str, Any]) -> datetime | None:
    """creationDate: the moment of freezing, which is when the document was signed."""
    try:
        t = datetime.fromisoformat(str(body["creationDate"]))
    except (KeyError, ValueError):
        return None
    return t.astimezone(UTC) if t.tzinfo is not None else None


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
            key = trust.key_for(d.jws, signed_at=_signed_at(d.body), gateway=gateway)
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


def load_trust(cert: Sequence[bytes] = (), ca: Sequence[bytes] = (),
               intermediates: Sequence[bytes] = (), crl: Sequence[bytes] = ()) -> Trust:
    """PEM bundles (certificates) and CRLs (PEM or DER); ValueError names what is wrong."""
    def pems(data: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
        out: list[x509.Certificate] = []
        for d in data:
            out.extend(x509.load_pem_x509_certificates(d))
        return tuple(out)

    def one_crl(data: bytes) -> x509.CertificateRevocationList:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)

    return Trust(pems(cert), pems(ca), pems(intermediates), tuple(one_crl(d) for d in crl))


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
