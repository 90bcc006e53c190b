"""`make demo`: simulated R2000 reader -> edge-agent -> local Mosquitto -> printed events.

Starts a private Mosquitto on a free port (or uses MQTT_BROKER=host:port), `reader-sim r2000
--pty`, and `edge-agent run` against both; prints each EPCIS event as an independent MQTT
subscriber receives it, until Ctrl-C; then stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    if not wait_port(port, 10):
        proc.kill()
        sys.exit(f"mosquitto did not start; see {workdir / 'mosquitto.log'}")
    return proc, port


def summarize(event: dict[str, Any]) -> str:
    reads = event.get("tea:reads") or [{}]
    first = reads[0]
    ids = event.get("epcList") or [q.get("epcClass") for q in event.get("quantityList", [])]
    what = ids[0] if ids else first.get("tea:barcode", "?")
    if len(ids) > 1:
        what += f" (+{len(ids) - 1} more)"
    parts = [
        event.get("eventTime", "?"),
        f"{event.get('action', '?'):7}",
        f"{first.get('tea:transition', event.get('tea:transition', 'read')):8}",
        f"bizStep={event.get('bizStep', '-')}",
        f"readPoint={event.get('readPoint', {}).get('id', '-')}",
        what,
        f"ant={first.get('tea:antenna')}",
        f"peak={first.get('tea:rssiDbm')}dBm",
    ]
    if "tea:count" in first:
        parts.append(f"reads={sum(r.get('tea:count', 0) for r in reads)}")
    return "  ".join(str(p) for p in parts)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    broker = os.environ.get("MQTT_BROKER")
    try:
        if broker:
            host, _, port_text = broker.rpartition(":")
            mqtt_port = int(port_text)
        else:
            host = "127.0.0.1"
            mosq, mqtt_port = start_mosquitto(workdir)
            procs.append(mosq)
        print(f"broker      : {host}:{mqtt_port}")

        sim = subprocess.Popen(
            [str(BIN / "reader-sim"), "r2000", "--pty", "--scenario",
             str(ROOT / "firmware-sim" / "scenarios" / "dock-door.yaml")],
            stdout=subprocess.PIPE, stderr=(workdir / "sim.log").open("wb"),
        )
        procs.append(sim)
        assert sim.stdout is not None
        pty_path = sim.stdout.readline().decode().strip()
        if not pty_path:
            sys.exit(f"reader-sim did not start; see {workdir / 'sim.log'}")
        print(f"reader-sim  : 4-port R2000 on {pty_path} (scenario dock-door.yaml: pallets "
              "and a forklift pass two doors every 30 s)")

        env = dict(os.environ, DEMO_READER_PORT=pty_path, DEMO_MQTT_PORT=str(mqtt_port),
                   DEMO_BUFFER=str(workdir / "buffer.db"))
        topic = "trace/lab/gw-demo/events"
        received = threading.Event()
        count = 0

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            nonlocal count
            doc = json.loads(msg.payload)
            for event in doc["epcisBody"]["eventList"]:
                count += 1
                print(f"[{count:5d}] {summarize(event)}", flush=True)
            received.set()

        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        sub.on_message = on_message
        sub.connect(host, mqtt_port)
        sub.subscribe(topic, qos=1)
        sub.loop_start()
        print(f"subscriber  : {topic}")

        agent_log = workdir / "agent.log"
        agent = subprocess.Popen(
            [str(BIN / "edge-agent"), "run", "-c", str(ROOT / "configs" / "demo.yaml")],
            env=env, stderr=agent_log.open("wb"),
        )
        procs.append(agent)
        print(f"edge-agent  : running (log: {agent_log}); Ctrl-C to stop\n")
        started = time.monotonic()
        if not received.wait(15):
            print(f"no events after 15 s; agent log:\n{agent_log.read_text()}")
            return 1
        print(f"(first event after {time.monotonic() - started:.1f} s)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while agent.poll() is None:
                time.sleep(0.2)
        sub.loop_stop()
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        print(f"\nstopped everything; logs kept in {workdir}")


if __name__ == "__main__":
    raise SystemExit(main())
