"""Forwarder throughput and read-to-PUBACK latency: SqliteBuffer -> Forwarder -> MqttUplink
-> a local Mosquitto at QoS 1, batching on.

    python -m bench.bench_uplink backlog [--events 200000] [--batch 100] [--window 20]
    python -m bench.bench_uplink online  [--rate 1000] [--seconds 10]

backlog: fill the buffer first (not timed), then time the drain; reports events/s,
messages/s and the peak RSS of this process during the drain (sampled every 0.5 s).
online: commit ``rate`` events/s in 10 ms slices while the forwarder runs; latency is event
creation (commit time) -> PUBACK, p50/p99 over every message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.buffer.api import OutEvent
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig, MqttConfig
from agent.uplink.forwarder import Forwarder, topics
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Mosquitto

EVENT = {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "receiving",
         "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"], "eventTime": "2024-06-10T10:00:00Z",
         "eventTimeZoneOffset": "+00:00", "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"}}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def events(start: int, n: int) -> list[OutEvent]:
    now = time.time()
    return [OutEvent(kind="event", payload=json.dumps({**EVENT, "eventID": f"ni:///bench/{i}"}),
                     created_at_s=now) for i in range(start, start + n)]


async def setup(tmp: Path, broker: Mosquitto, args: argparse.Namespace
                ) -> tuple[SqliteBuffer, MqttUplink, Forwarder, asyncio.Event]:
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp / "b.db", max_size=4 * 1024**3))
    cfg = MqttConfig(host=broker.host, port=broker.port, inflight_window=args.window,
                     batch_max_events=args.batch, batch_max_delay_ms=args.delay_ms,
                     compression=args.compression)
    up = MqttUplink(cfg, client_id="bench-uplink")
    wake = asyncio.Event()
    fwd = Forwarder(buffer, up, cfg, topics(cfg, "lab", "gw"), wake=wake, idle_poll_s=0.01)
    await up.start()
    assert await up.wait_connected(10)
    return buffer, up, fwd, wake


async def backlog(args: argparse.Namespace, broker: Mosquitto, tmp: Path) -> None:
    buffer, up, fwd, _wake = await setup(tmp, broker, args)
    t0 = time.perf_counter()
    for start in range(0, args.events, 5000):
        await buffer.commit_events([], events(start, min(5000, args.events - start)))
    print(f"filled {args.events} events in {time.perf_counter() - t0:.1f}s; "
          f"RSS {rss_mb():.0f} MB")
    peak = rss_mb()
    t0 = time.perf_counter()
    task = asyncio.create_task(fwd.run())
    while fwd.delivered_events < args.events:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_mb())
    dt = time.perf_counter() - t0
    print(f"backlog: {args.events} events in {dt:.1f}s = {args.events / dt:,.0f} events/s, "
          f"{fwd.delivered_messages / dt:,.0f} messages/s (batch {args.batch}, window "
          f"{args.window}, {args.compression}); peak RSS {peak:.0f} MB, end {rss_mb():.0f} MB")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await up.aclose()
    await buffer.aclose()


async def online(args: argparse.Namespace, broker: Mosquitto, tmp: Path) -> None:
    buffer, up, fwd, wake = await setup(tmp, broker, args)
    task = asyncio.create_task(fwd.run())
    per_slice = max(1, args.rate // 100)
    total = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n_slices = args.seconds * 100
    for k in range(n_slices):
        await buffer.commit_events([], events(total, per_slice))
        total += per_slice
        wake.set()
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.01 - loop.time()))
    while fwd.delivered_events < total:  # noqa: ASYNC110 - polls a counter, no event exists
        await asyncio.sleep(0.05)
    lat = sorted(fwd._event_ms)  # the forwarder keeps the last 1,000 messages
    p50 = statistics.median(lat)
    p99 = lat[int(0.99 * (len(lat) - 1))]
    print(f"online {args.rate} events/s for {args.seconds}s: {total} events in "
          f"{fwd.delivered_messages} messages; read->PUBACK p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(batch_max_delay_ms {args.delay_ms}); RSS {rss_mb():.0f} MB")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await up.aclose()
    await buffer.aclose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["backlog", "online"])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--compression", choices=["none", "gzip"], default="none")
    args = p.parse_args()
    with Mosquitto(persistence=False) as broker, tempfile.TemporaryDirectory() as d:
        fn = backlog if args.mode == "backlog" else online
        asyncio.run(fn(args, broker, Path(d)))


if __name__ == "__main__":
    main()
