"""Interop beyond Mosquitto: NATS server with MQTT enabled and RabbitMQ with its MQTT plugin,
each started by the test on free ports with its own data dir (never the machine's services).
Both speak MQTT 3.1.1 only here (nats-server 2.9, RabbitMQ 3.10), so the uplink runs with
protocol "3.1.1": deliveries are confirmed by PUBACK, refusals cannot be told apart."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig, MqttConfig
from agent.uplink.forwarder import Forwarder, topics
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Collector, Received
from tests.uplink.test_uplink_delivery import EVENTS, GW, SITE, drained, event_ids, fill, until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def nats_mqtt(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("nats-server not installed")
    port, mport = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"server_name: edge-test-{os.getpid()}\nlisten: 127.0.0.1:{port}\n"
                    f"jetstream {{ store_dir: {tmp_path / 'js'} }}\n"
                    f"mqtt {{ listen: 127.0.0.1:{mport} }}\n")
    log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_port(mport, 15, proc):
            pytest.skip(f"nats-server did not start: {(tmp_path / 'nats.log').read_text()[-500:]}")
        yield mport
    finally:
        stop(proc)
        log.close()


RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


@pytest.fixture
def rabbit_mqtt(tmp_path: Path) -> Iterator[int]:
    server = RABBIT if os.access(RABBIT, os.X_OK) else shutil.which("rabbitmq-server")
    if not server:
        pytest.skip("rabbitmq-server not installed")
    base = tmp_path / "rabbit"
    base.mkdir()
    mport, nport, dport = free_port(), free_port(), free_port()
    (base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {nport}\nmqtt.listeners.tcp.default = {mport}\n"
        "mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n"
        "loopback_users = none\n")
    home = base / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text("EDGETESTCOOKIE" + str(os.getpid()))
    cookie.chmod(0o400)
    node = f"edgetest{os.getpid()}@localhost"
    env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": node,
           "RABBITMQ_NODE_PORT": str(nport), "RABBITMQ_DIST_PORT": str(dport),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
           "RABBITMQ_PID_FILE": str(base / "pid"), "ERL_EPMD_PORT": str(free_port())}
    log = (base / "out.log").open("wb")
    proc = subprocess.Popen([server], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        if not wait_port(mport, 40, proc):
            pytest.skip("RabbitMQ with rabbitmq_mqtt did not listen within 40 s: "
                        + (base / "out.log").read_text(errors="replace")[-400:])
        yield mport
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        # The node started its own epmd on our private port: stop that one (and only that one).
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        subprocess.run([epmd, "-kill"], env=env, check=False, capture_output=True, timeout=10)
        log.close()


def subscriber311(port: int, topic: str) -> tuple[paho.Client, Collector]:
    collector = Collector()
    ready = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"interop-sub-{os.getpid()}",
                    protocol=paho.MQTTv311)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_a: ready.set()
    c.on_message = lambda _c, _u, m: collector.add(
        Received(m.topic, bytes(m.payload), m.qos, bool(m.retain), None))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10), "no SUBACK"
    return c, collector


async def deliver_through(port: int, tmp_path: Path) -> None:
    cfg = MqttConfig(host="127.0.0.1", port=port, protocol="3.1.1", reconnect_min_s=0.1,
                     reconnect_max_s=0.5, batch_max_events=25, batch_max_delay_ms=0,
                     username="guest", password="guest")  # RabbitMQ wants a user; NATS ignores
    sub, seen = await asyncio.to_thread(subscriber311, port, EVENTS)
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp_path / "b.db"))
    up = MqttUplink(cfg, client_id=f"edge-interop-{os.getpid()}")
    fwd = Forwarder(buffer, up, cfg, topics(cfg, SITE, GW), wake=asyncio.Event(),
                    idle_poll_s=0.05)
    await up.start()
    task = asyncio.create_task(fwd.run())
    try:
        assert await up.wait_connected(15)
        assert (await up.publish("trace/lab/gw1/status", b'{"state":"online"}', retain=True)).ok
        await fill(buffer, range(200))
        await until(lambda: drained(buffer), 30, "drained")
        await until(lambda: len(set(event_ids(seen.messages))) == 200, 15, "all at subscriber")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await up.aclose()
        await buffer.aclose()
        sub.disconnect()
        sub.loop_stop()


async def test_nats_server_mqtt(nats_mqtt: int, tmp_path: Path) -> None:
    await deliver_through(nats_mqtt, tmp_path)


@pytest.mark.slow
async def test_rabbitmq_mqtt_plugin(rabbit_mqtt: int, tmp_path: Path) -> None:
    await deliver_through(rabbit_mqtt, tmp_path)
