"""Uplink throughput and publish-to-PUBACK latency against a local Mosquitto.

    /work/main/.venv/bin/python -m bench.bench_mqtt [--messages 20000] [--payload 300]

QoS 1, one MqttUplink, ``window`` publishers each awaiting its PUBACK before the next message
(so the window is always full and latency is publish() call -> PUBACK result). The broker
gets ``max_inflight_messages 100`` so that its Receive Maximum does not cap window 100
(Mosquitto's default is 20). No subscriber: the broker answers 0x10 "No matching subscribers".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from dataclasses import dataclass

from agent.config import MqttConfig
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Mosquitto


@dataclass(frozen=True, slots=True)
class Run:
    window: int
    messages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run(broker: Mosquitto, window: int, messages: int, payload_len: int) -> Run:
    cfg = MqttConfig(host=broker.host, port=broker.port, inflight_window=window,
                     publish_timeout_s=30)
    up = MqttUplink(cfg, client_id=f"bench-{os.getpid()}-{window}")
    await up.start()
    if not await up.wait_connected(10):
        raise SystemExit(f"no connection to the broker\n{broker.log_text()}")
    assert up.window == window, (up.window, up.receive_maximum)
    payload = os.urandom(payload_len // 2).hex().encode()[:payload_len].ljust(payload_len, b"x")
    latencies: list[float] = []
    counter = iter(range(messages))
    refused = 0

    async def worker() -> None:
        nonlocal refused
        for i in counter:
            t0 = time.perf_counter()
            result = await up.publish(f"bench/w{window}/{i % 64}", payload)
            latencies.append((time.perf_counter() - t0) * 1000)
            refused += not result.ok

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for n in range(window):
            tg.create_task(worker(), name=f"bench-worker-{n}")
    seconds = time.perf_counter() - t0
    await up.aclose()
    if refused:
        raise SystemExit(f"{refused} messages refused")
    return Run(window, messages, seconds, latencies)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--payload", type=int, default=300)
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 20, 100])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with Mosquitto(max_inflight_messages=100, persistence=False) as broker:
        print(f"mosquitto {broker.binary}, {args.messages} x {args.payload} B, QoS 1")
        print(f"{'window':>6} {'msg/s':>9} {'seconds':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7}")
        for window in args.windows:
            n = args.messages if window > 1 else min(args.messages, 2000)
            r = await run(broker, window, n, args.payload)
            print(f"{window:>6} {r.rate:>9.0f} {r.seconds:>8.2f} {r.pct(0.5):>7.2f} "
                  f"{r.pct(0.99):>7.2f} {max(r.latencies_ms):>7.2f}"
                  f"{'  (' + str(n) + ' messages)' if n != args.messages else ''}")
            assert statistics.fmean(r.latencies_ms) > 0


if __name__ == "__main__":
    asyncio.run(main())
