"""Long fuzz run of every decoder (issue 13 item 7): ``python -m bench.fuzz_decoders [--n N]``.

The suite runs each property with a fixed hypothesis budget (tests/codecs, tests/pipeline);
this feeds each target ``--n`` random inputs from a fixed seed, as long as asked, and checks
the same promises: nothing raises on line noise, memory stays bounded, and what comes out is
well-formed. Targets:

* ``a0``: random chunks (a quarter 0xA0) into the R2000 decoder with the plausibility check,
  every frame parsed; every plausible inventory frame must parse.
* ``chafon``: random chunks into the Chafon decoder, every frame parsed as a response.
* ``barcode``: random chunks into the barcode framer, every scan interpreted (biip).
* ``hid``: random records (plausible key events and raw noise, both record sizes, every
  keymap) into the keyboard-wedge decoder; every scan interpreted (biip), nothing pending
  after a resync.
* ``epc``: random EPC banks (hex of 0-62 bytes, random PC) decoded; the result's URI decodes
  again the same way (a pure function of its input).
* ``digital_link``: random EPC URNs with Table A-1 serials; the Digital Link is a fixed point
  of canonical_digital_link (was not for 5,448 of 10^6), and random text never raises.

The config loader has its own: ``python -m bench.fuzz_config --examples N``. Counts tried are
written into docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from agent.pipeline.barcode_data import interpret
from agent.pipeline.digital_link import canonical_digital_link, urn_to_digital_link
from agent.pipeline.epc import decode_epc
from agent.readers.codecs import a0, chafon
from agent.readers.codecs.barcode import BarcodeFramer
from agent.readers.codecs.hid import EV_KEY, KEYMAP_NAMES, InputEvent, KeyDecoder, pack_event

TABLE_A1 = ("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
            "abcdefghijklmnopqrstuvwxyz")
URN_ESCAPES = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E",
               "?": "%3F"}


def _noise(rng: random.Random, n: int) -> bytes:
    return bytes(0xA0 if rng.random() < 0.25 else rng.randrange(256) for _ in range(n))


def fuzz_a0(rng: random.Random, n: int) -> str:
    dec = a0.A0Decoder(None, accept=a0.plausible)
    frames = 0
    for _ in range(n):
        for f in dec.feed(_noise(rng, rng.randint(0, 64))):
            frames += 1
            if f.cmd in a0.INVENTORY_CMDS:
                assert a0.parse_inventory(f) is not None, f
        assert dec.pending <= a0.MAX_FRAME
        if rng.random() < 0.01:
            dec.resync()
    return f"{frames} plausible frames"


def fuzz_chafon(rng: random.Random, n: int) -> str:
    dec = chafon.ChafonDecoder(None)
    frames = 0
    for _ in range(n):
        for f in dec.feed(rng.randbytes(rng.randint(0, 64))):
            frames += 1
            chafon.parse_response(f)
            chafon.parse_inventory(f)
        assert dec.pending < 257
    return f"{frames} CRC-valid frames"


def fuzz_barcode(rng: random.Random, n: int) -> str:
    framer = BarcodeFramer()
    scans = 0
    alphabet = b"]d2\x1d0123456789ABC()%/\r\n\xff\x00 "
    for _ in range(n):
        chunk = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 48)))
        for scan in framer.feed(chunk):
            scans += 1
            data = interpret(scan.data, scan.symbology)
            if data.digital_link is not None:
                assert canonical_digital_link(data.digital_link) in (data.digital_link, None)
    return f"{scans} scans interpreted"


def fuzz_epc(rng: random.Random, n: int) -> str:
    decoded = 0
    for _ in range(n):
        hex_digits = rng.randbytes(rng.randint(0, 62)).hex()
        pc = rng.randrange(1 << 16) if rng.random() < 0.5 else None
        ident = decode_epc(hex_digits, pc)
        assert ident.uri
        decoded += ident.scheme is not None
    return f"{decoded} decoded to a GS1 scheme"


def fuzz_hid(rng: random.Random, n: int) -> str:
    scans = 0
    for _ in range(n // 50 or 1):
        size = rng.choice((16, 24))
        dec = KeyDecoder(rng.choice(KEYMAP_NAMES), record_size=size,
                         terminator=rng.choice(("enter", "tab", "none")), idle_s=0.05,
                         gs_substitute=rng.choice(("ctrl+]", "f8", "|")))
        for _ in range(50):
            if rng.random() < 0.8:  # a key event a keyboard could send
                data = pack_event(InputEvent(rng.randint(0, 10), rng.randint(0, 999_999), EV_KEY,
                                             rng.randint(0, 120), rng.randint(0, 2)), size)
            else:
                data = rng.randbytes(rng.randint(0, 40))
            for scan in dec.feed(data):
                interpret(scan.data, scan.symbology)
                scans += 1
        dec.resync()
        assert dec.pending == 0
    return f"{scans} scans"


def fuzz_digital_link(rng: random.Random, n: int) -> str:
    fixed = 0
    for _ in range(n):
        raw = "".join(rng.choice(TABLE_A1) for _ in range(rng.randint(1, 16)))
        serial = "".join(URN_ESCAPES.get(c, c) for c in raw)
        scheme, body = rng.choice([
            ("sgtin", f"0614141.812345.{serial}"), ("giai", f"0614141.{serial}"),
            ("sgln", f"0614141.12345.{serial}"), ("grai", f"0614141.12345.{serial}"),
            ("lgtin", f"0614141.812345.{serial}"),
        ])
        kind = "class" if scheme == "lgtin" else "id"
        dl = urn_to_digital_link(f"urn:epc:{kind}:{scheme}:{body}")
        assert dl is not None, body
        assert canonical_digital_link(dl) == dl, (body, dl, canonical_digital_link(dl))
        fixed += 1
        junk = "".join(rng.choice(TABLE_A1 + "/: é") for _ in range(rng.randint(0, 40)))
        canonical_digital_link("https://id.gs1.org/" + junk)
    return f"{fixed} fixed points"


TARGETS: dict[str, Callable[[random.Random, int], str]] = {
    "a0": fuzz_a0, "chafon": fuzz_chafon, "barcode": fuzz_barcode, "hid": fuzz_hid,
    "epc": fuzz_epc, "digital_link": fuzz_digital_link,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="inputs per target")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    args = ap.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")
    for name in args.targets or list(TARGETS):
        t0 = time.perf_counter()
        what = TARGETS[name](random.Random(args.seed), args.n)
        print(f"{name}: {args.n} inputs, no exception, invariants held; {what} "
              f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
