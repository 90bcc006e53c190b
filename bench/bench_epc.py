"""Micro-benchmark: EPC decode (cached / uncached) and event hash.

Run from the repository root: ``PYTHONPATH=. python bench/bench_epc.py``. Prints microseconds
per call.
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable

from agent.pipeline.epc import decode_cache_clear, decode_epc
from agent.pipeline.eventhash import event_hash

SGTIN96 = "3074257BF7194E4000001A85"
SGTIN198 = "3674257BF6B7A659B2C2BF100000000000000000000000000000"
N = 100_000


def _per_call_us(stmt: Callable[[], object], number: int) -> float:
    return timeit.timeit(stmt, number=number) / number * 1e6


def main() -> None:
    rng = random.Random(0)
    distinct = [f"{0x3074257BF7194E4000000000 | rng.getrandbits(38):024X}" for _ in range(N)]
    decode_cache_clear()
    it = iter(distinct)
    uncached = _per_call_us(lambda: decode_epc(next(it)), N)
    decode_epc(SGTIN96)
    cached = _per_call_us(lambda: decode_epc(SGTIN96), N)
    decode_cache_clear()
    it198 = iter([SGTIN198[:-4] + f"{i:04X}" for i in range(10_000)])
    uncached_198 = _per_call_us(lambda: decode_epc(next(it198), 0x6800), 10_000)
    event = {
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T15:59:58.123+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [decode_epc(h).uri for h in distinct[:20]],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.12345.5678"},
        "tea:reads": [
            {"tea:reader": "r1", "tea:antenna": 1, "tea:epcHex": h, "tea:rssiDbm": -60.0}
            for h in distinct[:20]
        ],
    }
    context = {"tea": "https://ns.trace-edge-agent.org/epcis/1#"}
    hashing = _per_call_us(lambda: event_hash(event, context), 2_000)
    print(f"decode_epc SGTIN-96, uncached (distinct EPCs): {uncached:6.2f} us")
    print(f"decode_epc SGTIN-96, cached:                   {cached:6.2f} us")
    print(f"decode_epc SGTIN-198 with PC, uncached:        {uncached_198:6.2f} us")
    print(f"event_hash, 20 EPCs + 20 tea:reads:            {hashing:6.2f} us")


if __name__ == "__main__":
    main()
