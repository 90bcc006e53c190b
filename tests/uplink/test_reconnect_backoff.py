"""Issue 12: after a short broker outage the first event must arrive within seconds, even with
the default reconnect_max_s of 30 s (it took 23-26 s after a 20 s outage)."""

from __future__ import annotations

import random
import time

from agent.uplink.mqtt.compat import RECENT_CAP_S, RECENT_UP_S, new_client


class _Caps(random.Random):
    """Records the backoff cap of each wait and waits 0 s."""

    def __init__(self) -> None:
        super().__init__(1)
        self.caps: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.caps.append(b)
        return 0.0


def _waits(last_up_s: float, attempts: int) -> list[float]:
    rng = _Caps()
    c = new_client("t", v5=True, brokers=(("127.0.0.1", 1),), jitter_min_s=0.5,
                   jitter_max_s=30.0, rng=rng)
    c.last_up_s = last_up_s
    for _ in range(attempts):
        c._reconnect_wait()
    return rng.caps


def test_a_broker_that_was_up_moments_ago_is_retried_every_few_seconds() -> None:
    caps = _waits(time.monotonic() - 20, 8)
    assert caps[:3] == [0.5, 1.0, 2.0]
    assert max(caps) == RECENT_CAP_S


def test_a_long_outage_backs_off_to_reconnect_max_s() -> None:
    assert max(_waits(time.monotonic() - RECENT_UP_S - 1, 8)) == 30.0
    assert max(_waits(float("-inf"), 8)) == 30.0  # never connected: the configured backoff
