"""The network watch (agent/uplink/netwatch.py): rtnetlink news of a link, an address or a
default route coming up makes a disconnected uplink try at once instead of at the end of its
backoff (issue 12). The codec on datagrams a real kernel sent (tests/uplink/data); the watch
and the uplink in a network namespace of their own (``unshare -rn``: a user namespace gives
the rights to bring its ``lo`` up), against a real Mosquitto started inside it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.uplink.mqtt.client import NETWORK_RETRY_MIN_S
from agent.uplink.netwatch import (
    IFF_LOWER_UP,
    IFF_UP,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTN_UNICAST,
    NetworkNews,
    network_news,
    plain_address,
)
from tests.support.mosquitto import Mosquitto, find_mosquitto
from tests.uplink.test_mqtt_uplink import running, until

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).with_name("data")
CAPTURE = DATA / "rtnetlink_lo_up.txt"
DELETED = DATA / "rtnetlink_addr_del.txt"


def _captured(path: Path = CAPTURE) -> list[bytes]:
    return [bytes.fromhex(line) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _message(kind: int, body: bytes) -> bytes:
    length = 16 + len(body)
    return struct.pack("=IHHII", length, kind, 0, 1, 0) + body + b"\0" * (-length % 4)


def test_what_a_kernel_sent_when_lo_came_up_reads_as_link_addresses_and_a_default_route(
        ) -> None:
    news = [network_news(d) for d in _captured()]
    assert news == [
        [NetworkNews("link", 1)],  # RTM_NEWLINK lo, UP|LOOPBACK|RUNNING|LOWER_UP
        [NetworkNews("address", 1, "127.0.0.1")],
        [], [], [],  # its routes in the local table: not a default route
        [NetworkNews("address", 1, "::1")],
        [],
        [NetworkNews("address", 1, "10.11.12.13")],
        [],
        [NetworkNews("default route", 0)],  # ip route add default dev lo
    ]


def test_what_a_kernel_sent_when_addresses_were_deleted_names_them() -> None:
    assert [network_news(d) for d in _captured(DELETED)] == [
        [NetworkNews("address gone", 1, "10.11.12.13")],  # IPv4: IFA_LOCAL
        [],  # its local route
        [NetworkNews("address gone", 1, "fd00::5")],  # IPv6: IFA_ADDRESS only
        [], [],
    ]


def test_a_link_up_without_carrier_and_other_routes_are_no_news() -> None:
    no_carrier = _message(RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 3, IFF_UP, 0))
    carrier = _message(RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 3, IFF_UP | IFF_LOWER_UP, 0))
    deleted = _message(RTM_DELADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 3))  # no attributes
    subnet = _message(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", 2, 24, 0, 0, RT_TABLE_MAIN, 4,
                                                0, RTN_UNICAST, 0))
    default = _message(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", 10, 0, 0, 0, RT_TABLE_MAIN, 4,
                                                 0, RTN_UNICAST, 0))
    added = _message(RTM_NEWADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 3))
    # one datagram of several messages, each aligned to 4 bytes
    assert network_news(no_carrier + deleted + subnet + carrier + default + added) == [
        NetworkNews("address gone", 3), NetworkNews("link", 3),
        NetworkNews("default route", 0), NetworkNews("address", 3)]


def test_a_truncated_datagram_gives_what_came_before_the_cut() -> None:
    added = _message(RTM_NEWADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 3))
    assert network_news(added + added[:20]) == [NetworkNews("address", 3)]
    assert network_news(added[:15]) == []
    assert network_news(struct.pack("=IHHII", 8, RTM_NEWADDR, 0, 0, 0)) == []  # length < header


@given(st.binary(max_size=600))
def test_line_noise_never_raises(data: bytes) -> None:
    for news in network_news(data):
        assert news.kind in {"link", "address", "default route", "address gone"}


def test_an_address_is_compared_as_rtnetlink_and_getsockname_write_it() -> None:
    assert plain_address("fe80::1%eth0") == "fe80::1"
    assert plain_address("::ffff:10.1.2.3") == "10.1.2.3"
    assert plain_address("10.1.2.3") == "10.1.2.3"
    assert plain_address("FD00:0::5") == "fd00::5"
    assert plain_address("") == ""
    assert plain_address("not an address") == ""


async def test_the_connection_whose_address_went_away_is_dropped_and_made_again(
        shared_mosquitto: Mosquitto) -> None:
    """A real connection to a real broker, told its address went away: it is shut down at
    once and made again (not after paho's keepalive); another address going away, or news
    while connected, changes nothing."""
    async with running(shared_mosquitto) as up:
        assert up.stats().connects == 1
        up.on_network(NetworkNews("address gone", 2, "10.99.0.7"))  # not this connection's
        up.on_network(NetworkNews("address", 2, "10.99.0.8"))  # connected: nothing to do
        await asyncio.sleep(0.3)
        assert up.stats().connects == 1
        assert up.network_retries == 0
        up.on_network(NetworkNews("address gone", 1, "127.0.0.1"))  # this connection's
        assert up.network_retries == 1
        await until(lambda: up.stats().connects == 2 and up.connected, 10,
                    "reconnected after its address went away")
        result = await up.publish("trace/netwatch/1", b"{}")
        assert result.ok


def _namespace_or_skip() -> None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None \
            or shutil.which("ip") is None:
        pytest.skip("needs Linux with unshare(1) and ip(8)")
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace here (unshare -rn: {probe.stderr.strip()})")


def _in_namespace(script: str, timeout_s: float = 60) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(["unshare", "-rn", sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=timeout_s, env=env,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


WATCH = """
    import asyncio, json, subprocess
    from agent.uplink.netwatch import NetworkWatch

    async def main():
        seen = []
        watch = NetworkWatch(seen.append, quiet_s=0.0)
        task = asyncio.create_task(watch.run(), name="watch")
        await asyncio.sleep(0.2)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "10.11.12.13/32", "dev", "lo"],
                    ["ip", "route", "add", "default", "dev", "lo"],
                    ["ip", "addr", "del", "10.11.12.13/32", "dev", "lo"]):
            subprocess.run(cmd, check=True)
        async with asyncio.timeout(5):
            while len({n.kind for n in seen}) < 4:
                await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gone = [n.address for n in seen if n.kind == "address gone"]
        print(json.dumps({"kinds": sorted({n.kind for n in seen}), "gone": gone,
                          "messages": watch.messages}))

    asyncio.run(main())
"""


def test_the_watch_hears_a_real_kernel_bring_a_network_up_and_take_an_address_away(
        ) -> None:
    _namespace_or_skip()
    out = _in_namespace(WATCH)
    assert out["kinds"] == ["address", "address gone", "default route", "link"]
    assert out["gone"] == ["10.11.12.13"]


UPLINK = """
    import asyncio, json, logging, random, subprocess, sys, time
    from agent.config import MqttConfig
    from agent.uplink.mqtt import MqttUplink
    from agent.uplink.netwatch import NetworkWatch
    from tests.support.mosquitto import Mosquitto

    class FullWait(random.Random):
        def uniform(self, a, b):  # every backoff waits its whole cap: 30 s here
            return b

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    async def main():
        ip("link", "set", "lo", "up")  # paho's own socket pair needs it
        # The broker listens on every address; the gateway's "uplink" network, 10.55.0.0/24,
        # is not there yet: its address cannot be reached (this kernel may have no dummy
        # interfaces, so the address comes on lo).
        broker = Mosquitto(extra=["listener 18831"])
        broker.start()
        cfg = MqttConfig(host="10.55.0.1", port=18831, reconnect_min_s=30.0,
                         reconnect_max_s=60.0, keepalive_s=10, tls={"enabled": False})
        uplink = MqttUplink(cfg, client_id="netwatch-test", rng=FullWait())
        watch = asyncio.create_task(NetworkWatch(uplink.on_network).run(),
                                    name="watch")
        await uplink.start()
        await asyncio.sleep(1.5)  # the first connect failed (unreachable): a 30 s wait began
        assert not uplink.connected
        t0 = time.monotonic()
        ip("addr", "add", "10.55.0.1/24", "dev", "lo")  # as a DHCP lease would arrive
        async with asyncio.timeout(20):
            while not uplink.connected:
                await asyncio.sleep(0.05)
        after_s = time.monotonic() - t0
        retries = uplink.network_retries
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await uplink.aclose()
        broker.close()
        print(json.dumps({"connected_after_s": after_s, "network_retries": retries}))

    asyncio.run(main())
"""


def test_a_disconnected_uplink_connects_at_once_when_the_network_comes_back() -> None:
    """Without the watch the uplink would wait out its 30 s backoff (every wait its whole
    cap here); with it, an address coming up makes it connect within a second or two."""
    _namespace_or_skip()
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (make test installs it)")
    out = _in_namespace(UPLINK)
    assert float(str(out["connected_after_s"])) < 5.0
    assert int(str(out["network_retries"])) >= 1


async def test_network_news_makes_one_attempt_per_two_seconds_and_none_is_lost(
        shared_mosquitto: Mosquitto) -> None:
    """Interfaces coming and going (docker, a VPN) while the broker is out of reach: one
    attempt at once, then at most one per NETWORK_RETRY_MIN_S, and news that came within it
    makes that one attempt (the address after the link may be the news that works)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on: every attempt fails
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with running(shared_mosquitto, connect=False, port=port, reconnect_min_s=30.0,
                       reconnect_max_s=60.0) as up:
        await asyncio.sleep(0.5)  # the first attempt failed: a 30-60 s wait began
        assert not up.connected
        failed = up.stats().connect_failures
        up.on_network(NetworkNews("link", 3, ""))
        up.on_network(NetworkNews("address", 3, "10.9.0.2"))
        up.on_network(NetworkNews("default route", 3, ""))
        assert up.network_retries == 1  # at once, for the first
        await asyncio.sleep(NETWORK_RETRY_MIN_S - 0.5)
        assert up.network_retries == 1
        assert up.stats().connect_failures > failed  # it was tried, not after the backoff
        await asyncio.sleep(1.0)
        assert up.network_retries == 2  # the news that came meanwhile: one attempt, later
        await asyncio.sleep(NETWORK_RETRY_MIN_S + 0.5)
        assert up.network_retries == 2  # no news, no attempt
        up.on_network(NetworkNews("address", 3, "10.9.0.3"))
        assert up.network_retries == 3
        up.on_network(NetworkNews("address", 3, "10.9.0.4"))  # deferred, then closed
    assert up.network_retries == 3
