"""``edge-agent verify``: CLI glue over agent/fieldtools/verify.py (docs/provenance.md).

Inputs: capture files (JSON lines, ``-`` for stdin) and/or a broker subscription
(``--broker host:port``; until ``--idle-s`` seconds pass without a message, or ``--follow``
until Ctrl-C, then the report). ``--save FILE`` writes what was received as a capture.
Exit 0 only when every document verifies and every gap is explained; 1 otherwise; 2 for bad
arguments (no trust anchor, unreadable files).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # verify.py (cryptography) is imported by the command, not by `edge-agent run`
    from agent.fieldtools.verify import Message

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    v = sub.add_parser(
        "verify",
        help="verify signatures and hash chains of received documents (exit 0 = all verified, "
             "every gap explained)",
        description="Reads captures (JSON lines: topic, payload or payload_b64, properties) or "
                    "`edge-agent buffer export --documents` output, or subscribes to a broker, "
                    "and checks every document's detached JWS (tea-jws) and tea:prevHash link.",
    )
    v.add_argument("inputs", nargs="*", metavar="FILE", help="capture files ('-' = stdin)")
    v.add_argument("--cert", action="append", default=[], metavar="PEM",
                   help="a gateway's signing certificate (repeatable)")
    v.add_argument("--ca", action="append", default=[], metavar="PEM",
                   help="trusted root CA bundle: the gateway certificate's path is validated "
                        "to one of these at the document's creationDate (repeatable)")
    v.add_argument("--intermediates", action="append", default=[], metavar="PEM",
                   help="intermediate CA certificates for the path, besides those the gateway "
                        "sends in the JWS x5c (repeatable)")
    v.add_argument("--crl", action="append", default=[], metavar="FILE",
                   help="a CA's certificate revocation list, PEM or DER (repeatable); with it, "
                        "a signing certificate whose issuer has no CRL here fails")
    v.add_argument("--allow-unsigned", action="store_true",
                   help="unsigned documents (no signing key on the gateway) do not fail")
    v.add_argument("--json", action="store_true", help="the report as JSON")
    v.add_argument("--broker", metavar="HOST:PORT", help="subscribe to this broker")
    v.add_argument("--topic", action="append", default=[], metavar="FILTER",
                   help="topic filter (default: trace/+/+/events and trace/+/+/signatures)")
    v.add_argument("--tls-ca", metavar="PEM", help="CA of the broker's certificate (TLS on)")
    v.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    v.add_argument("--tls-key", metavar="PEM", help="its key")
    v.add_argument("--username")
    v.add_argument("--password-file", metavar="FILE")
    v.add_argument("--idle-s", type=float, default=5.0, metavar="S",
                   help="stop after S seconds without a message (default %(default)s)")
    v.add_argument("--follow", action="store_true", help="until interrupted (Ctrl-C)")
    v.add_argument("--save", metavar="FILE", help="write what the broker sent as a capture")
    v.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from agent.fieldtools.verify import capture_line, load_trust, read_lines, render, verify

    if (args.intermediates or args.crl) and not args.ca:
        print("edge-agent verify: --intermediates and --crl need --ca (the root CA the path "
              "leads to)", file=sys.stderr)
        return EXIT_USAGE
    if not args.cert and not args.ca and not args.allow_unsigned:
        print("edge-agent verify: give a trust anchor: --cert GATEWAY.pem or --ca CA.pem "
              "(or --allow-unsigned for gateways that do not sign)", file=sys.stderr)
        return EXIT_USAGE
    if not args.inputs and not args.broker:
        print("edge-agent verify: give capture files or --broker HOST:PORT", file=sys.stderr)
        return EXIT_USAGE
    files: list[list[bytes]] = []
    for flag, paths in (("--cert", args.cert), ("--ca", args.ca),
                        ("--intermediates", args.intermediates), ("--crl", args.crl)):
        files.append([])
        for path in paths:
            try:
                data = Path(path).read_bytes()
                load_trust(**{flag[2:]: [data]})  # parse it alone, to name the bad file
            except (OSError, ValueError) as exc:
                what = "a CRL (PEM or DER)" if flag == "--crl" else "PEM certificates"
                print(f"edge-agent verify: {flag} {path}: cannot read {what}: {exc}",
                      file=sys.stderr)
                return EXIT_USAGE
            files[-1].append(data)
    trust = load_trust(*files)
    messages: list[Message] = []
    try:
        for name in args.inputs:
            if name == "-":
                messages.extend(read_lines(sys.stdin, "stdin"))
            else:
                with open(name, encoding="utf-8") as f:
                    messages.extend(read_lines(f, name))
    except OSError as exc:
        print(f"edge-agent verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.broker:
        try:
            received = subscribe(args)
        except (OSError, ValueError, ssl.SSLError, ConnectionError) as exc:
            print(f"edge-agent verify: broker {args.broker}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.save:
            with open(args.save, "w", encoding="utf-8") as f:
                for m in received:
                    f.write(capture_line(m.topic or "", m.payload, m.properties) + "\n")
        messages.extend(received)
    report = verify(messages, trust, allow_unsigned=args.allow_unsigned)
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def subscribe(args: argparse.Namespace) -> list[Message]:
    """Collect messages from the broker (MQTT 5, paho's own thread) until idle or Ctrl-C."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.fieldtools.verify import Message

    host, _, port = str(args.broker).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected HOST:PORT")
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                         client_id=f"edge-agent-verify-{time.time_ns():x}")
    if args.username:
        pw = Path(args.password_file).read_text().strip() if args.password_file else None
        client.username_pw_set(args.username, pw)
    if args.tls_ca or args.tls_cert:
        ctx = ssl.create_default_context(cafile=args.tls_ca)
        if args.tls_cert:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        client.tls_set_context(ctx)
    filters = args.topic or ["trace/+/+/events", "trace/+/+/signatures"]
    lock = threading.Lock()
    got: list[Message] = []
    last = [time.monotonic()]
    ready = threading.Event()
    failure: list[str] = []

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            failure.append(f"connect refused: {rc}")
        else:
            c.subscribe([(t, 1) for t in filters])
        ready.set()

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        props = tuple((str(k), str(v)) for k, v in
                      (getattr(m.properties, "UserProperty", None) or []))
        with lock:
            got.append(Message(topic=m.topic, payload=bytes(m.payload), properties=props,
                               where=f"{args.broker} message {len(got) + 1}"))
            last[0] = time.monotonic()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, int(port))
    client.loop_start()
    try:
        if not ready.wait(10):
            raise ConnectionError("no CONNACK within 10 s")
        if failure:
            raise ConnectionError(failure[0])
        last[0] = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            while args.follow or time.monotonic() - last[0] < args.idle_s:
                time.sleep(0.1)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return list(got)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - via agent.cli
    p = argparse.ArgumentParser(prog="edge-agent")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    rc: int = args.func(args)
    return rc
