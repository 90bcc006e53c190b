"""Benchmark: raw tag reads/s through smoothing, EPC decoding and EPCIS document building.

Run from the repository root: ``PYTHONPATH=. python bench/bench_pipeline.py``. One core, no I/O:
the pure part of Pipeline.step (fold every read into the presence engine, advance the clock,
build and hash the transition events, serialise them and the changed state as the worker does).
A dock with two doors; pallets of 50 tags arrive, stand for a while (read ~20 times/s each) and
leave, so arrivals and departures happen throughout. Goal: >= 50,000 raw reads/s.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from agent.model import TagRead
from agent.pipeline.epc import decode_cache_clear
from agent.pipeline.epcis import presence_event
from agent.pipeline.mapping import EventMapping, PresenceParams, ReaderPlan
from agent.pipeline.presence import PresenceEngine

T0 = 1_800_000_000.0
PALLET = 50
READS_PER_TAG_S = 20.0
STEP_READS = 2000  # Pipeline batch


def plan() -> ReaderPlan:
    a = EventMapping(read_point="urn:epc:id:sgln:0614141.00777.1", biz_step="receiving",
                     disposition="in_progress")
    b = EventMapping(read_point="urn:epc:id:sgln:0614141.00777.2", biz_step="shipping",
                     disposition="in_transit")
    return ReaderPlan(name="dock", mapping=a, antennas={1: a, 2: a, 3: b, 4: b},
                      presence=PresenceParams(window_s=1.0, depart_after_s=5.0))


def make_reads(total: int) -> list[TagRead]:
    """Pallets: each 50 tags, 30 s at a door, a new one every 10 s alternating doors."""
    reads: list[TagRead] = []
    pallet = 0
    t = T0
    dt = 1.0 / (READS_PER_TAG_S * PALLET * 3)  # ~3 pallets standing at any time
    while len(reads) < total:
        pallet = int((t - T0) // 10)
        for p in range(max(0, pallet - 2), pallet + 1):
            antenna = 1 + (p % 2) * 2 + (len(reads) % 2)
            serial = p * PALLET + len(reads) % PALLET
            epc = f"3074257BF7194E4{serial:09X}"
            reads.append(TagRead(reader="dock", epc=epc, read_at=datetime.fromtimestamp(t, UTC),
                                 antenna=antenna, rssi_dbm=-50.0 - len(reads) % 20, pc=0x3000))
        t += dt
    return reads[:total]


def run(reads: list[TagRead]) -> tuple[float, int, int]:
    decode_cache_clear()
    p = plan()
    eng = PresenceEngine(lambda name: p)
    events = 0
    payload_bytes = 0
    start = time.perf_counter()
    for i in range(0, len(reads), STEP_READS):
        batch = reads[i:i + STEP_READS]
        for r in batch:
            eng.fold(r)
        now = batch[-1].read_at.timestamp()
        for tr in eng.advance(now):
            e = presence_event(tr.kind, tr.tags, timezone="+08:00", mapping=tr.mapping, at=tr.at)
            payload_bytes += len(json.dumps(e, separators=(",", ":")))
            events += 1
        state = eng.take_state()
        payload_bytes += sum(len(v) for v in state.values() if v)
    return time.perf_counter() - start, events, payload_bytes


def main() -> None:
    n = 500_000
    reads = make_reads(n)
    best = min(run(reads)[0] for _ in range(3))
    _, events, size = run(reads)
    print(f"{n} raw reads -> {events} events ({size / 1e6:.1f} MB events+state) "
          f"in {best:.2f} s: {n / best:,.0f} raw reads/s (best of 3, one core)")


if __name__ == "__main__":
    main()
