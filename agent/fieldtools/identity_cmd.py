"""``edge-agent identity init | enroll | status``: the gateway's key and certificate.

* ``init`` generates the private key on the gateway (0600, never leaves it) at
  ``uplink.mqtt.tls.key`` and a CSR naming the gateway next to the certificate
  (``<cert>.csr``), for a CA without EST or to check what ``enroll`` will ask for.
* ``enroll`` gets the certificate from ``uplink.est`` (RFC 7030): ``/cacerts`` (written to
  ``est.cacerts_out`` when set), then ``/simpleenroll`` with HTTP Basic or the bootstrap
  certificate, or, with ``--renew``, ``/simplereenroll`` with the current certificate and a new
  key. The running agent renews by itself (agent/uplink/renewal.py).
* ``status`` shows the certificate's subject, serial, validity, when it will be renewed, and
  whether key and certificate belong together.

Exit codes: 0 done, 1 refused or unreachable (the message says why), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from agent.config import AgentConfig, ConfigError, load_config
from agent.uplink.security import read_secret

# identity and est (cryptography, ~9 MB) are imported by the commands that use them:
# `edge-agent run` registers these commands too and must not pay for them.


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("identity", help="the gateway's key and certificate (init, enroll over "
                       "EST, status)")
    isub = p.add_subparsers(dest="identity_command", required=True, metavar="ACTION")
    init = isub.add_parser("init", help="generate the gateway key (0600) and a CSR")
    init.add_argument("-c", "--config", required=True)
    init.add_argument("--key-type", choices=["ec", "ed25519", "rsa"], default=None,
                      help="default: uplink.est.key_type, else ec (P-256)")
    init.add_argument("--force", action="store_true",
                      help="replace an existing key (its certificate stops working)")
    init.set_defaults(func=cmd_init)
    enroll = isub.add_parser("enroll", help="get the certificate from the plant's EST server")
    enroll.add_argument("-c", "--config", required=True)
    enroll.add_argument("--renew", action="store_true",
                        help="re-enroll with the current certificate and a new key")
    enroll.set_defaults(func=cmd_enroll)
    status = isub.add_parser("status", help="certificate validity and renewal time")
    status.add_argument("-c", "--config", required=True)
    status.set_defaults(func=cmd_status)


def _config(path: str) -> AgentConfig | None:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"configuration error ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return None
    tls = cfg.uplink.mqtt.tls
    if tls.cert is None or tls.key is None:
        print(f"{path}: uplink.mqtt.tls.cert and uplink.mqtt.tls.key name the gateway's "
              "certificate and key: set both (e.g. /etc/edge-agent/gateway.pem and "
              "/etc/edge-agent/gateway.key)", file=sys.stderr)
        return None
    return cfg


def cmd_init(args: argparse.Namespace) -> int:
    from agent.uplink import identity

    cfg = _config(args.config)
    if cfg is None:
        return 2
    tls = cfg.uplink.mqtt.tls
    assert tls.key is not None
    assert tls.cert is not None
    if tls.key.exists() and not args.force:
        print(f"{tls.key} exists: the gateway has a key. `identity enroll` uses it; --force "
              "makes a new one (the certificate for the old one stops working)",
              file=sys.stderr)
        return 1
    kind = args.key_type or (cfg.uplink.est.key_type if cfg.uplink.est else "ec")
    key = identity.new_key(kind)
    identity.write_atomic(tls.key, identity.key_pem(key), mode=0o600)
    csr = identity.make_csr(key, cfg.gateway.site, cfg.gateway.id)
    csr_path = tls.cert.with_name(tls.cert.name + ".csr")
    from cryptography.hazmat.primitives import serialization

    identity.write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM), mode=0o644)
    print(f"key ({kind}) written to {tls.key} (0600)\nCSR for "
          f"{identity.gateway_cn(cfg.gateway.site, cfg.gateway.id)} "
          f"({identity.gateway_uri(cfg.gateway.site, cfg.gateway.id)}) written to {csr_path}")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.uplink import identity
    from agent.uplink.est import ClientCert, EstClient, EstError

    cfg = _config(args.config)
    if cfg is None:
        return 2
    est = cfg.uplink.est
    if est is None:
        print(f"{args.config}: no uplink.est section: give the EST server (url, ca, and "
              "username + password_file or a bootstrap certificate)", file=sys.stderr)
        return 2
    tls = cfg.uplink.mqtt.tls
    assert tls.key is not None
    assert tls.cert is not None
    password = read_secret(tls.key_password_file, None, "uplink.mqtt.tls.key_password_file")
    identity.recover(tls.cert, tls.key, password.encode() if password else None)
    client = EstClient(est, config_file=args.config)
    try:
        if est.cacerts_out is not None:
            cas = client.cacerts()
            identity.write_atomic(est.cacerts_out, identity.certs_pem(cas), mode=0o644)
            print(f"CA certificates ({len(cas)}) written to {est.cacerts_out}")
        if args.renew:
            key = identity.new_key(est.key_type)
            current = ClientCert(tls.cert, tls.key, password)
        else:
            if not tls.key.exists():
                print(f"{tls.key} does not exist: run `edge-agent identity init -c "
                      f"{args.config}` first", file=sys.stderr)
                return 1
            key = identity.load_key(tls.key.read_bytes(),
                                    password.encode() if password else None)
            current = None
        csr = identity.make_csr(key, cfg.gateway.site, cfg.gateway.id)
        certs = client.enroll(csr, current=current)
    except EstError as exc:
        print(f"enrollment failed: {exc}", file=sys.stderr)
        return 1
    if args.renew:
        identity.install(tls.cert, tls.key, identity.certs_pem(certs), identity.key_pem(key))
    else:
        identity.write_atomic(tls.cert, identity.certs_pem(certs), mode=0o644)
    lt = identity.lifetime(tls.cert.read_bytes())
    print(f"certificate {lt.serial:x} for {lt.subject} written to {tls.cert}, valid "
          f"{lt.not_before.isoformat()} .. {lt.not_after.isoformat()}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.uplink import identity

    cfg = _config(args.config)
    if cfg is None:
        return 2
    tls = cfg.uplink.mqtt.tls
    assert tls.key is not None
    assert tls.cert is not None
    try:
        lt = identity.lifetime(tls.cert.read_bytes())
        password = read_secret(tls.key_password_file, None,
                               "uplink.mqtt.tls.key_password_file")
        key = identity.load_key(tls.key.read_bytes(), password.encode() if password else None)
    except (OSError, ValueError) as exc:
        print(f"cannot read the identity: {exc}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    pair = identity.matches(tls.cert.read_bytes(), key)
    fraction = cfg.uplink.est.renew_fraction if cfg.uplink.est else None
    print(f"subject   {lt.subject}\nserial    {lt.serial:x}\nvalid     "
          f"{lt.not_before.isoformat()} .. {lt.not_after.isoformat()} "
          f"({'EXPIRED' if lt.left(now).total_seconds() <= 0 else 'valid'})")
    if fraction is not None:
        print(f"renew at  {lt.renew_at(fraction).isoformat()} (EST: {cfg.uplink.est.url})"
              if cfg.uplink.est else "")
    print(f"key       {'matches the certificate' if pair else 'DOES NOT match the certificate'}")
    return 0 if pair and lt.left(now).total_seconds() > 0 else 1
