"""Line noise against the reader decoders (issue 13 item 5).

Run from the repository root: ``PYTHONPATH=. python bench/bench_noise.py [--mb 1024]``.

Part 1, pure noise: ``--mb`` MB of random bytes (a quarter of them 0xA0, the R2000 head byte,
as reader-sim's noise) through the A0 decoder as the r2000 driver configures it (address
learned, antennas 1-4, the plausibility check inside the decoder) and through the Chafon
decoder. Counted: frames that pass the checksum alone (what the agent used to accept), tag
frames that pass the plausibility check, and of those the EPCs that decode to a GS1 identity
(not an EPC Raw URI). Targets: 0 identities, under 0.01 tag frames per MB.

Part 2, noise mixed into a valid stream: 110,000 R2000 frames (tag frames and a V3 summary per
round of 10 tags) with ``--mixed-mb`` MB of noise cut into bursts of 1-64 bytes between frames.
Counted: valid reads lost, reads invented, and rounds whose end frame was lost (each was a 5 s
stall and a reconnect before; now the next round starts after ``round_end_timeout_s``).
Target: under 0.05 % of valid reads lost. Without ``accept`` (the old decoder) for comparison.

Nothing here asserts: the figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import time
from collections.abc import Callable

from agent.pipeline.epc import decode_epc
from agent.readers.codecs import a0, chafon

MB = 1 << 20
ANTENNAS = frozenset({1, 2, 3, 4})


def noise(rng: random.Random, n: int) -> bytes:
    """Random bytes, about a quarter of them 0xA0 (fast: one pass of bytes.translate)."""
    raw = rng.randbytes(n)
    # bytes 0x00-0x3F become 0xA0: 64/256 = 25 %
    table = bytes(0xA0 if b < 0x40 else b for b in range(256))
    return raw.translate(table)


def plausible_a0(f: a0.A0Frame) -> bool:
    return a0.plausible(f, antennas=ANTENNAS)


def _noise_slice(job: tuple[int, int, bool]) -> dict[str, int]:
    """One worker's share: ``mb`` MB from its own seed (decoder state spans the slice)."""
    seed, mb, compare = job
    rng = random.Random(seed)
    guarded = a0.A0Decoder(0x01, accept=plausible_a0, exact=True)
    plain = a0.A0Decoder(None)  # the decoder as it was: checksum only, address not learned
    ch = chafon.ChafonDecoder(0x00)
    c = dict.fromkeys(("tags", "identities", "plain_tags", "plain_frames", "chafon_tags",
                       "chafon_frames", "implausible", "wrong_address"), 0)
    for _ in range(mb):
        chunk = noise(rng, MB)
        for f in guarded.feed(chunk):
            if f.cmd not in a0.INVENTORY_CMDS:
                continue  # the driver parses only replies to the command in flight
            parsed = a0.parse_inventory(f)
            if isinstance(parsed, a0.TagFrame):
                c["tags"] += 1
                if decode_epc(parsed.epc.hex(), parsed.pc).scheme is not None:
                    c["identities"] += 1
        if compare:
            for f in plain.feed(chunk):
                if f.cmd in a0.INVENTORY_CMDS and isinstance(a0.parse_inventory(f), a0.TagFrame):
                    c["plain_tags"] += 1
        for cf in ch.feed(chunk):
            parsed_c = chafon.parse_inventory(cf)
            if isinstance(parsed_c, chafon.InventoryReply):
                c["chafon_tags"] += len(parsed_c.tags)
    c["plain_frames"] = plain.stats.frames
    c["chafon_frames"] = ch.stats.frames
    c["implausible"] = guarded.stats.implausible
    c["wrong_address"] = guarded.stats.wrong_address
    return c


def pure_noise(mb: int, compare_mb: int, seed: int, workers: int) -> None:
    step = 16
    jobs = [(seed * 100_003 + i, min(step, mb - i), i < compare_mb) for i in range(0, mb, step)]
    started = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        parts = pool.map(_noise_slice, jobs)
    took_s = time.perf_counter() - started
    t = {k: sum(p[k] for p in parts) for k in parts[0]}
    cmp_mb = sum(j[1] for j in jobs if j[2])
    print(f"pure noise: {mb} MB in {took_s:.0f} s ({workers} processes)")
    if cmp_mb:
        print(f"  A0 before (checksum only, first {cmp_mb} MB): {t['plain_tags']} tag frames = "
              f"{t['plain_tags'] / cmp_mb:.3f}/MB, {t['plain_frames']} frames")
    print(f"  A0 now (plausible): {t['tags']} tag frames = {t['tags'] / mb:.4f}/MB, "
          f"{t['identities']} decodable GS1 identities; refused as implausible "
          f"{t['implausible']}, for another address {t['wrong_address']}")
    print(f"  Chafon (CRC-16): {t['chafon_tags']} tags, {t['chafon_frames']} frames")


def valid_rounds(rng: random.Random, frames: int) -> tuple[list[bytes], list[str], int]:
    """Rounds of 10 tag frames and a summary; returns frames, the EPCs sent, rounds."""
    out: list[bytes] = []
    epcs: list[str] = []
    rounds = 0
    while len(out) < frames:
        for _ in range(10):
            epc = (0x3074257BF7194E4000000000 | rng.getrandbits(38)).to_bytes(12, "big")
            data = bytes(((rng.randrange(60) << 2) | rng.randrange(4),)) + b"\x30\x00" + epc
            data += bytes((rng.randrange(40, 100),))
            out.append(a0.encode(0x01, a0.Cmd.REAL_TIME_INVENTORY, data))
            epcs.append(epc.hex().upper())
        out.append(a0.encode(0x01, a0.Cmd.REAL_TIME_INVENTORY, b"\x00\x00\x19\x00\x00\x00\x0a"))
        rounds += 1
    return out, epcs, rounds


def mixed(frames: int, mixed_mb: int, seed: int,
          accept: Callable[[a0.A0Frame], bool] | None, address: int | None) -> None:
    rng = random.Random(seed)
    stream, epcs, rounds = valid_rounds(rng, frames)
    sent = set(epcs)
    budget = mixed_mb * MB
    # A burst before every frame, 1 to 2x the mean gap long, until the budget is spent.
    per_gap = max(1, budget // len(stream))
    out = bytearray()
    added = 0
    for frame in stream:
        if added < budget:
            burst = noise(rng, rng.randint(1, 2 * per_gap - 1) if per_gap > 1 else 1)
            out += burst
            added += len(burst)
        out += frame
    dec = a0.A0Decoder(address, accept=accept, exact=address is not None)
    got: list[str] = []
    summaries = 0
    for i in range(0, len(out), 64):
        for f in dec.feed(bytes(out[i : i + 64])):
            if f.cmd != a0.Cmd.REAL_TIME_INVENTORY:
                continue  # the driver parses only replies to the command in flight
            parsed = a0.parse_inventory(f)
            if isinstance(parsed, a0.TagFrame):
                got.append(parsed.epc.hex().upper())
            elif isinstance(parsed, a0.InventorySummary):
                summaries += 1
    valid = sum(1 for e in got if e in sent)
    invented = len(got) - valid
    lost = len(epcs) - valid
    label = "now (plausible)" if accept else "before (checksum only)"
    print(f"  {label}: {len(epcs)} reads sent, {lost} lost ({100 * lost / len(epcs):.3f} %), "
          f"{invented} invented, {rounds - min(rounds, summaries)} of {rounds} round ends lost, "
          f"noise {added / MB:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="MB of pure noise (default 1024)")
    ap.add_argument("--mixed-mb", type=int, default=10, help="MB of noise in the valid stream")
    ap.add_argument("--frames", type=int, default=110_000, help="valid frames (default 110,000)")
    ap.add_argument("--compare-mb", type=int, default=64,
                    help="MB of the pure noise also run through the old decoder (default 64)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"mixed: {args.frames} valid frames with {args.mixed_mb} MB of noise")
    mixed(args.frames, args.mixed_mb, args.seed, None, None)
    mixed(args.frames, args.mixed_mb, args.seed, plausible_a0, 0x01)
    pure_noise(args.mb, args.compare_mb, args.seed, args.workers)


if __name__ == "__main__":
    main()
