"""Sustained durable ingest through SqliteBuffer with default settings, RSS sampled throughout.

    python bench/bench_buffer.py --seconds 20 --producers 8 --batch 10 [--path DIR] [--json]

Producers call ``put_reads`` (each call returns only after its group commit, synchronous=FULL):
closed loop (``--batch`` reads per call, wait, repeat) or open loop (``--rate``: reads arrive
at a fixed rate and each reader puts whatever gathered while its previous put was in flight);
a pipeline task moves reads to the outbox with ``commit_events`` (one ~300-byte event per read)
and a forwarder claims and acks them, so the file stays small and the run is steady-state.
``--ingest-only`` leaves out the pipeline and forwarder (the reads pile up in the file).

Reported: accepted reads/s (durable ingest), events committed/s, events acked/s, transactions/s,
put_reads latency percentiles, and RSS (first / max / last sample, sampled every second).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.buffer.api import OutEvent
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig
from agent.model import TagRead


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Counters:
    accepted: int = 0
    committed: int = 0
    acked: int = 0
    offered: int = 0
    backlog_max: int = 0
    # put latency histogram in 0.1 ms buckets up to 2 s (fixed size: the bench must not grow)
    latency_hist: list[int] = field(default_factory=lambda: [0] * 20_001)
    rss_kib: list[int] = field(default_factory=list)


def fresh_file(directory: str | None) -> Path:
    d = Path(directory or tempfile.mkdtemp(prefix="bench-buffer-"))
    d.mkdir(parents=True, exist_ok=True)
    path = d / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


async def run(args: argparse.Namespace) -> dict[str, object]:
    path = fresh_file(args.path)
    cfg = BufferConfig(path=path)  # defaults: FULL, 5 ms group commit, 512 MiB, drop_oldest
    c = Counters()
    stop = asyncio.Event()
    payload_pad = "x" * 200

    def make_reads(k: int, n: int, count: int) -> list[TagRead]:
        now = datetime.now(UTC)
        return [TagRead(reader=f"dock-{k}", epc=f"E280116060000208{(n + i) & 0xFFFFFFFF:08X}",
                        read_at=now, antenna=1 + i % 4, rssi_dbm=-55.5, pc=0x3000)
                for i in range(count)]

    async def put(reads: list[TagRead]) -> None:
        t = time.perf_counter()
        await buf.put_reads(reads)
        c.latency_hist[min(20_000, int((time.perf_counter() - t) * 10_000))] += 1
        c.accepted += len(reads)

    async def producer(k: int) -> None:
        """Closed loop: put ``batch`` reads, wait for the commit, repeat."""
        n = 0
        while not stop.is_set():
            await put(make_reads(k, n, args.batch))
            n += args.batch

    async def reader(k: int) -> None:
        """Open loop, as a reader driver should do it: reads arrive at a fixed rate; while one
        put_reads is in flight the next ones gather, and the next put takes all of them."""
        rate = args.rate / args.producers
        pending: list[TagRead] = []
        n = 0
        start = time.perf_counter()

        async def arrive() -> None:
            nonlocal n
            while not stop.is_set():
                due = int((time.perf_counter() - start) * rate) - n
                if due > 0:
                    pending.extend(make_reads(k, n, due))
                    n += due
                    c.backlog_max = max(c.backlog_max, len(pending))
                await asyncio.sleep(0.005)

        async def drain() -> None:
            while not stop.is_set():
                if not pending:
                    await asyncio.sleep(0.001)
                    continue
                batch = pending[:]
                del pending[:]
                await put(batch)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(arrive(), name=f"arrive-{k}")
            tg.create_task(drain(), name=f"drain-{k}")
        c.offered += n

    async def pipeline() -> None:
        while not stop.is_set():
            stored = await buf.take_reads(2000)
            if not stored:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(buf.wait_for_reads(), 0.05)
                continue
            now_s = time.time()
            events = [OutEvent(kind="event", created_at_s=now_s, payload=json.dumps(
                {"eventID": f"{buf.generation}:{s.id}", "epc": s.read.epc,  # type: ignore[union-attr]
                 "pad": payload_pad})) for s in stored]
            await buf.commit_events([s.id for s in stored], events,
                                    {"pipeline/last_id": str(stored[-1].id)})
            c.committed += len(events)

    async def forwarder() -> None:
        while not stop.is_set():
            claimed = await buf.claim(1000, lease_s=60)
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(buf.wait_for_events(), 0.05)
                continue
            await buf.ack([x.id for x in claimed])
            c.acked += len(claimed)

    async def sampler() -> None:
        while not stop.is_set():
            c.rss_kib.append(rss_kib())
            await asyncio.sleep(1.0)

    buf = await SqliteBuffer.open(cfg)
    t0 = time.perf_counter()
    tx0 = buf.transactions
    try:
        async with asyncio.TaskGroup() as tg:
            for k in range(args.producers):
                if args.rate:
                    tg.create_task(reader(k), name=f"reader-{k}")
                else:
                    tg.create_task(producer(k), name=f"producer-{k}")
            if not args.ingest_only:
                tg.create_task(pipeline(), name="pipeline")
                tg.create_task(forwarder(), name="forwarder")
            tg.create_task(sampler(), name="rss-sampler")
            await asyncio.sleep(args.seconds)
            stop.set()
        elapsed = time.perf_counter() - t0
        stats = await buf.stats()
        tx = buf.transactions - tx0
    finally:
        await buf.aclose()
    total = sum(c.latency_hist)

    def pct(p: float) -> float:
        """The p-quantile of put latency in ms (upper edge of its 0.1 ms bucket)."""
        seen = 0
        for i, n in enumerate(c.latency_hist):
            seen += n
            if seen >= p * total:
                return round((i + 1) / 10, 1)
        return 0.0

    mean_ms = sum((i + 0.5) * n for i, n in enumerate(c.latency_hist)) / max(1, total) / 10

    return {
        "settings": {"synchronous": cfg.synchronous, "commit_interval_ms": cfg.commit_interval_ms,
                     "producers": args.producers,
                     "batch": f"open loop at {args.rate:g}/s" if args.rate else args.batch,
                     "pipeline": not args.ingest_only, "seconds": round(elapsed, 1)},
        "accepted_reads_per_s": round(c.accepted / elapsed),
        "offered_reads_per_s": round(c.offered / elapsed) if args.rate else None,
        "reader_backlog_max": c.backlog_max if args.rate else None,
        "events_committed_per_s": round(c.committed / elapsed),
        "events_acked_per_s": round(c.acked / elapsed),
        "transactions_per_s": round(tx / elapsed),
        "put_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0),
                           "mean": round(mean_ms, 1)},
        "rss_mib": {"first": round(c.rss_kib[0] / 1024, 1), "max": round(max(c.rss_kib) / 1024, 1),
                    "last": round(c.rss_kib[-1] / 1024, 1), "samples": len(c.rss_kib),
                    "every_10s": [round(x / 1024, 1) for x in c.rss_kib[::10]]},
        "file_bytes_at_end": stats.size_bytes,
        "reads_pending_at_end": stats.reads_pending,
        "events_pending_at_end": stats.events_pending,
        "cpu": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--producers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10, help="reads per put_reads call")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop: reads/s offered in all (readers gather reads while a put "
                         "is in flight); 0 = closed loop with --batch")
    ap.add_argument("--ingest-only", action="store_true")
    ap.add_argument("--path", help="directory for the file (default: a new temp directory)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
