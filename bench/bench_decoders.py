"""Decoder throughput per protocol on one core, next to the serial line's physical limit.

Run from the repository root: ``PYTHONPATH=. python bench/bench_decoders.py``.

Each stream is a realistic byte stream (tag frames with 96-bit EPCs and a summary frame per
round for A0; status-0x03 chaining for Chafon; GS1 scans with CR LF for barcodes) fed in
chunks of 64 bytes, as a USB serial adapter delivers them. "decode" = decoder only (bytes ->
frames); "parse" = decoder + the driver's frame parser (frames -> tag fields), which is what a
driver does per frame. The line limit is frames/s at 8N1 (baud / 10 bytes/s).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from agent.readers.codecs import a0, chafon, llrp
from agent.readers.codecs.barcode import BarcodeFramer

CHUNK = 64
TARGET_S = 1.0


def _chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def _epcs(n: int, rng: random.Random) -> list[bytes]:
    return [(0x3074257BF7194E4000000000 | rng.getrandbits(38)).to_bytes(12, "big")
            for _ in range(n)]


def a0_stream(rng: random.Random, tags: int = 2000, phase: bool = False) -> tuple[bytes, int]:
    out = bytearray()
    for i, epc in enumerate(_epcs(tags, rng)):
        data = bytes(((rng.randrange(60) << 2) | rng.randrange(4),)) + (0x3000).to_bytes(2, "big")
        data += epc + bytes((rng.randrange(40, 100),))
        if phase:
            data += rng.randrange(4096).to_bytes(2, "big")
        out += a0.encode(0x01, a0.Cmd.REAL_TIME_INVENTORY, data)
        if i % 20 == 19:  # a V3 summary every 20 tags
            out += a0.encode(0x01, a0.Cmd.REAL_TIME_INVENTORY, bytes(7))
    return bytes(out), tags


def chafon_stream(rng: random.Random, tags: int = 2000, per_frame: int = 1) -> tuple[bytes, int]:
    out = bytearray()
    epcs = _epcs(tags, rng)
    for i in range(0, tags, per_frame):
        group = epcs[i : i + per_frame]
        body = bytes((0x01, len(group))) + b"".join(
            bytes((len(e),)) + e + bytes((rng.randrange(40, 100),)) for e in group
        )
        out += chafon.encode_response(0x00, chafon.Cmd.INVENTORY, 0x03, body)
    out += chafon.encode_response(0x00, chafon.Cmd.INVENTORY, 0x01, b"\x01\x00")
    return bytes(out), tags


def barcode_stream(rng: random.Random, scans: int = 2000) -> tuple[bytes, int]:
    one = b"]d2010950600013435217201231" + b"10ABC123\x1d21SN" + b"%04d\r\n"
    return b"".join(one.replace(b"%04d", f"{i:04d}".encode()) for i in range(scans)), scans


def llrp_stream(rng: random.Random, tags: int = 2000, per_report: int = 20) -> tuple[bytes, int]:
    """RO_ACCESS_REPORTs of ``per_report`` TagReportData each: EPC-96, AntennaID, PeakRSSI,
    ChannelIndex, First/LastSeenTimestampUTC, TagSeenCount (what a Speedway sends by default
    plus timestamps)."""
    out = bytearray()
    epcs = _epcs(tags, rng)
    for i in range(0, tags, per_report):
        body = b"".join(
            llrp.tlv(240, llrp.tv(13, e) + llrp.tv(1, (1 + j % 4).to_bytes(2, "big"))
                     + llrp.tv(6, (-(40 + j % 30) & 0xFF).to_bytes(1, "big"))
                     + llrp.tv(7, (1 + j % 50).to_bytes(2, "big"))
                     + llrp.tv(2, (1_700_000_000_000_000 + j).to_bytes(8, "big"))
                     + llrp.tv(4, (1_700_000_000_000_100 + j).to_bytes(8, "big"))
                     + llrp.tv(8, (1).to_bytes(2, "big")))
            for j, e in enumerate(epcs[i : i + per_report]))
        out += llrp.message(llrp.MsgType.RO_ACCESS_REPORT, i, body)
    return bytes(out), tags


def llrp_decode(chunks: list[bytes], per_report: int) -> Callable[[], int]:
    def run() -> int:
        d = llrp.LlrpDecoder()
        return sum(per_report for c in chunks for _m in d.feed(c))
    return run


def llrp_parse(chunks: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        d = llrp.LlrpDecoder()
        return sum(len(llrp.parse_ro_access_report(m)) for c in chunks for m in d.feed(c))
    return run


def _rate(run: Callable[[], int], frames: int) -> float:
    """Frames per second, best of 5 timed batches of about TARGET_S / 5 each."""
    run()  # warm up
    t0 = time.perf_counter()
    loops = 0
    while time.perf_counter() - t0 < 0.05:
        run()
        loops += 1
    per_loop = (time.perf_counter() - t0) / loops
    reps = max(1, int(TARGET_S / 5 / per_loop))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            got = run()
        best = min(best, (time.perf_counter() - t) / reps)
        assert got == frames, (got, frames)
    return frames / best


def a0_decode(chunks: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        d = a0.A0Decoder(0x01)
        return sum(1 for c in chunks for f in d.feed(c) if len(f.data) % 2 == 0)
    return run


def a0_parse(chunks: list[bytes], phase: bool) -> Callable[[], int]:
    def run() -> int:
        d = a0.A0Decoder(0x01)
        n = 0
        for c in chunks:
            for f in d.feed(c):
                if isinstance(a0.parse_inventory(f, phase=phase), a0.TagFrame):
                    n += 1
        return n
    return run


def chafon_decode(chunks: list[bytes], per_frame: int) -> Callable[[], int]:
    def run() -> int:
        d = chafon.ChafonDecoder(None, max_gap_s=None)
        return sum(per_frame for c in chunks for f in d.feed(c) if f.status == 0x03)
    return run


def chafon_parse(chunks: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        d = chafon.ChafonDecoder(None, max_gap_s=None)
        n = 0
        for c in chunks:
            for f in d.feed(c):
                r = chafon.parse_inventory(f)
                if isinstance(r, chafon.InventoryReply):
                    n += len(r.tags)
        return n
    return run


def barcode_decode(chunks: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        fr = BarcodeFramer(b"\r\n", idle_s=None)
        return sum(len(fr.feed(c)) for c in chunks)
    return run


def main() -> None:
    rng = random.Random(0)
    a0_bytes, a0_n = a0_stream(rng)
    a0p_bytes, a0p_n = a0_stream(rng, phase=True)
    ch_bytes, ch_n = chafon_stream(rng)
    ch8_bytes, ch8_n = chafon_stream(rng, per_frame=8)
    bc_bytes, bc_n = barcode_stream(rng)
    ll_bytes, ll_n = llrp_stream(rng)
    # TCP delivers large segments: LLRP is fed in 1,460-byte chunks (one Ethernet MSS).
    ll_chunks = [ll_bytes[i : i + 1460] for i in range(0, len(ll_bytes), 1460)]
    # Line limits at the protocols' usual rates (reader-protocols.md §6).
    rows = [
        ("R2000 0x89 tag, 96-bit EPC", a0_decode(_chunks(a0_bytes)),
         a0_parse(_chunks(a0_bytes), False), a0_n, 11520 / 21, "115200"),
        ("R2000 tag + phase", a0_decode(_chunks(a0p_bytes)),
         a0_parse(_chunks(a0p_bytes), True), a0p_n, 11520 / 23, "115200"),
        ("Chafon 288, 1 tag/frame", chafon_decode(_chunks(ch_bytes), 1),
         chafon_parse(_chunks(ch_bytes)), ch_n, 5760 / 22, "57600"),
        ("Chafon 288, 8 tags/frame", chafon_decode(_chunks(ch8_bytes), 8),
         chafon_parse(_chunks(ch8_bytes)), ch8_n, 5760 / (8 + 14 * 8) * 8, "57600"),
        # An Impinj R700's top read rate, about 1,100 tags/s, stands for the "line" here.
        ("LLRP RO_ACCESS_REPORT, 20 tags", llrp_decode(ll_chunks, 20), llrp_parse(ll_chunks),
         ll_n, 1100, "TCP"),
        ("Barcode GS1 DataMatrix + CRLF", barcode_decode(_chunks(bc_bytes)),
         barcode_decode(_chunks(bc_bytes)), bc_n, 960 / (len(bc_bytes) / bc_n), "9600"),
    ]
    print(f"{'stream':32} {'decode/s':>11} {'+parse/s':>11} {'line/s':>8} {'baud':>7} "
          f"{'x line':>7}")
    for name, dec, parse, n, line, baud in rows:
        d = _rate(dec, n)
        p = _rate(parse, n)
        print(f"{name:32} {d:11,.0f} {p:11,.0f} {line:8,.0f} {baud:>7} {p / line:7,.0f}")


if __name__ == "__main__":
    main()
