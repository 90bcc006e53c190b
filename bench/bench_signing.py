"""Document signatures per second (docs/provenance.md): the detached JWS the forwarder makes
once per frozen document, for each key type, over a document of ``--events`` events.

    python bench/bench_signing.py [--seconds 3] [--events 500]

One signature per document (not per event), so events/s = signatures/s x batch size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from agent.buffer.chain import ChainLink
from agent.uplink.provenance import document_bytes, signer_from_pem

EVENT = json.dumps({"type": "ObjectEvent", "eventID": "ni:///sha-256;" + "ab" * 32 + "?ver=CBV2.0",
                    "eventTime": "2026-01-01T00:00:00.000Z", "eventTimeZoneOffset": "+00:00",
                    "epcList": ["urn:epc:id:sgtin:0614141.812345.6789"], "action": "OBSERVE",
                    "tea:reads": [{"tea:reader": "r1", "tea:epcHex": "3074257BF7194E4000001A85",
                                   "tea:antenna": 1, "tea:rssiDbm": -55.0,
                                   "tea:readTime": "2026-01-01T00:00:00.000Z",
                                   "tea:clockSynced": True}]})


def _signer(key: Any) -> Any:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, algo))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return signer_from_pem(pem, cert.public_bytes(serialization.Encoding.PEM))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--events", type=int, default=500)
    args = p.parse_args()
    link = ChainLink(chain_id="bench", seq=2, prev_hash="sha-256:" + "00" * 32, chain_start=None,
                     gaps=())
    doc = document_bytes([EVENT] * args.events, dt.datetime.now(dt.UTC), gateway="lab/gw",
                         link=link)
    print(f"document of {args.events} events, {len(doc)} bytes")
    keys = {"ES256 (P-256)": ec.generate_private_key(ec.SECP256R1()),
            "EdDSA (Ed25519)": ed25519.Ed25519PrivateKey.generate(),
            "PS256 (RSA 2048)": rsa.generate_private_key(65537, 2048)}
    for name, key in keys.items():
        signer = _signer(key)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            signer.sign(doc)
            n += 1
        rate = n / (time.perf_counter() - t0)
        print(f"{name:18} {rate:10,.0f} signatures/s  ({rate * args.events:,.0f} events/s at "
              f"{args.events} events per document)")


if __name__ == "__main__":
    main()
