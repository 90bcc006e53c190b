"""The whole path, as a user runs it (issue 12): line generator -> pty -> the real `edge-agent
run` (barcode driver, every_read) -> its SQLite buffer -> a local Mosquitto -> a QoS 1
subscriber that counts every line.

    python -m bench e2e [--rates 1000,2000,5000] [--seconds 10] [--broker-outage-s 0]

* The generator writes newline-terminated 63-byte lines into the pty master at a fixed rate
  (1 ms ticks). Before each write it asks the slave's input queue (FIONREAD): a line that would
  not fit the 4 KB tty buffer is counted as an **overrun** and not written (a UART would have
  lost it), so overruns are exact.
* Each line carries its sequence number; the subscriber (persistent session, QoS 1) counts
  unique, duplicate and missing lines and the latency from the write to its arrival.
* The agent's CPU (utime + stime from /proc) and peak RSS are sampled; CPU is reported per
  1,000 events delivered, and the bytes it wrote to storage (/proc/PID/io) per event.
* ``--broker-outage-s S``: stop the broker in the middle of the run and start it again after
  S seconds; reports the time from its return to the next event, and how fast the agent's
  backlog then drained: the outbox rows of its buffer (read-only, every 50 ms) at their peak
  (the last sample before the agent's reconnect), over the time from there until they were
  down to what 0.2 s of input leaves in flight. (Not from the subscriber's arrivals: the
  broker keeps the messages of a subscriber that reconnects later than the agent and hands
  them over in one burst.)

Nothing asserts: figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import fcntl
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.osnames import thread_names
from bench.proc import family
from tests.support.mosquitto import Mosquitto

LINE_BYTES = 63
TTY_BUFFER = 4095  # N_TTY_BUF_SIZE - 1: what a pty slave's input queue holds
TOPIC = "trace/lab/gw-bench/events"


def line(seq: int) -> bytes:
    head = f"BENCH{seq:012d}"
    return (head + "X" * (LINE_BYTES - 1 - len(head)) + "\n").encode()


@dataclass
class Subscriber:
    broker: Mosquitto
    received: dict[int, float] = field(default_factory=dict)  # seq -> first arrival
    duplicates: int = 0
    messages: int = 0
    last_arrival_s: float = 0.0

    def start(self) -> paho.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-e2e-sub",
                        protocol=paho.MQTTv5)
        ready = threading.Event()
        c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *_a: ready.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        c.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber could not subscribe")
        return c

    def _on_message(self, _c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        now = time.monotonic()
        self.messages += 1
        self.last_arrival_s = now
        doc = json.loads(m.payload)
        for e in doc["epcisBody"]["eventList"]:
            seq = int(str(e["tea:reads"][0]["tea:barcode"])[5:17])
            if seq in self.received:
                self.duplicates += 1
            else:
                self.received[seq] = now


def agent_cpu_s(pid: int) -> float:
    """utime + stime of the agent and of its children (the pump's CPU counts as the agent's)."""
    total = 0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if p == pid:
            total += int(fields[13]) + int(fields[14])  # children it reaped
    return total / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """utime + stime per thread name (agent/osnames.py names them) over the agent's family."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for p in family(pid):
        for tid, name in thread_names(p).items():
            try:
                fields = Path(f"/proc/{p}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _family_sum(pid: int, file: str, key: str) -> int:
    """The number after ``key`` in /proc/P/``file``, summed over the agent and its children
    (one killed by --kill-at-s between two samples counts nothing)."""
    total = 0
    for p in family(pid):
        try:
            text = Path(f"/proc/{p}/{file}").read_text()
        except OSError:
            continue
        for ln in text.splitlines():
            if ln.startswith(key):
                total += int(ln.split()[1])
    return total


def agent_write_bytes(pid: int) -> int:
    """Bytes the agent and its children caused to be written to storage (/proc/PID/io
    write_bytes: the buffer's WAL, its checkpoints and the logs), what wears an SD card."""
    return _family_sum(pid, "io", "write_bytes:")


def agent_rss_mb(pid: int) -> float:
    """VmRSS of the agent and its children together."""
    return _family_sum(pid, "status", "VmRSS:") / 1024


def queued(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def generate(master: int, slave: int, rate: int, seconds: float, start_seq: int,
             sent_at: dict[int, float], progress: Any = None) -> tuple[int, int]:
    """Write ``rate`` lines/s for ``seconds``; returns (written, overruns). ``progress``: a
    shared multiprocessing value given the last sequence number written."""
    written = overruns = 0
    t0 = time.monotonic()
    total = int(rate * seconds)
    seq = start_seq
    while seq - start_seq < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        room = TTY_BUFFER - queued(slave)
        chunk = bytearray()
        now = time.monotonic()
        while seq - start_seq < due:
            if room >= LINE_BYTES:
                chunk += line(seq)
                sent_at[seq] = now
                room -= LINE_BYTES
                written += 1
            else:
                overruns += 1
            seq += 1
        if chunk:
            os.write(master, bytes(chunk))
            if progress is not None:
                progress.value = seq - 1
        time.sleep(0.001)
    return written, overruns


def _generator_process(master: int, slave: int, rate: int, seconds: float, progress: Any,
                       conn: Any) -> None:
    sent_at: dict[int, float] = {}
    if os.environ.get("BENCH_GENERATOR_RT"):
        # A UART's clock does not wait for the scheduler: a generator made late by the other
        # processes on the machine writes a burst, counted as overruns the agent did not cause.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(2))
    written, overruns = generate(master, slave, rate, seconds, 0, sent_at, progress)
    conn.send((written, overruns, sent_at))
    conn.close()


def generate_apart(master: int, slave: int, rate: int, seconds: float,
                   progress: Any) -> tuple[int, int, dict[int, float]]:
    """``generate`` in a process of its own. In this process the subscriber parses documents
    (JSON, holding the GIL for a millisecond or more each): a generator delayed by it writes
    a burst, and lines that a UART would have spread over time are counted as overruns the
    agent did not cause. Times are CLOCK_MONOTONIC, the same in both processes."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_generator_process,
                       args=(master, slave, rate, seconds, progress, child), daemon=True)
    proc.start()
    child.close()
    written, overruns, sent_at = parent.recv()
    proc.join()
    return written, overruns, sent_at


def write_config(tmp: Path, broker: Mosquitto, port: str) -> Path:
    cfg = {
        "gateway": {"id": "gw-bench", "site": "lab"},
        "readers": [{"name": "scan-1", "driver": "barcode", "port": port, "terminator": "LF",
                     "mode": "every_read"}],
        "buffer": {"path": str(tmp / "buffer.db"), "max_size": 2 * 1024**3},
        "uplink": {"mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "trace"}},
        "http": {"enabled": False},
        "status": {"socket": str(tmp / "agent.sock")},
    }
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def outbox_watch(db: Path, rate: int, *, until_s: float) -> list[tuple[float, int]]:
    """(time, rows in the outbox) every 50 ms from now until they are down to what 0.2 s of
    input at ``rate`` leaves in flight (the steady state), or ``until_s``."""
    import sqlite3

    seen: list[tuple[float, int]] = []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        while time.monotonic() < until_s:
            with contextlib.suppress(sqlite3.OperationalError):
                seen.append((time.monotonic(),
                             int(con.execute("SELECT count(*) FROM outbox").fetchone()[0])))
                if len(seen) > 1 and seen[-1][1] <= max(100, rate // 5):
                    break
            time.sleep(0.05)
    finally:
        con.close()
    return seen


def run_rate(rate: int, seconds: float, outage_s: float,
             profile: Path | None = None, pin_cpu: int | None = None,
             kill_at_s: float | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto().start()
        master, slave = os.openpty()
        port = os.ttyname(slave)
        cfg = write_config(tmp, broker, port)
        sub = Subscriber(broker)
        client = sub.start()
        exe = Path(sys.executable).with_name("edge-agent")
        log = (tmp / "agent.log").open("wb")
        pin = ["taskset", "-c", str(pin_cpu)] if pin_cpu is not None else []
        agent = subprocess.Popen([*pin, str(exe), "run", "-c", str(cfg)], stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            time.sleep(2.0)  # start, open the port, connect
            sent_at: dict[int, float] = {}
            progress = multiprocessing.get_context("fork").Value("q", -1, lock=False)
            cpu0, wall0 = agent_cpu_s(agent.pid), time.monotonic()
            threads0 = thread_cpu_s(agent.pid)
            written0 = agent_write_bytes(agent.pid)
            peak_rss = 0.0
            result: dict[str, Any] = {}

            def sample() -> None:
                nonlocal peak_rss
                while not result:
                    peak_rss = max(peak_rss, agent_rss_mb(agent.pid))
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            back_s: float | None = None
            pending: list[tuple[float, int]] = []  # (time, outbox rows) after the broker's return
            outage_thread: threading.Thread | None = None
            if outage_s:
                def outage() -> None:
                    nonlocal back_s
                    time.sleep(seconds / 3)
                    broker.stop()  # SIGTERM: its persistence keeps the subscriber session
                    time.sleep(outage_s)
                    broker.start()
                    back_s = time.monotonic()
                    pending.extend(outbox_watch(tmp / "buffer.db", rate, until_s=back_s + 60))
                outage_thread = threading.Thread(target=outage, daemon=True)
                outage_thread.start()
            killed: dict[str, float] = {}
            if kill_at_s is not None:
                def kill() -> None:
                    nonlocal agent
                    time.sleep(kill_at_s)
                    # Lines written before the kill, and of them those not yet read (still in
                    # the tty buffer; pyserial flushes it when the next agent opens the port,
                    # as it would on a UART).
                    killed["seq"] = int(progress.value)
                    killed["unread"] = queued(slave) // LINE_BYTES
                    t_kill = time.monotonic()
                    agent.kill()  # SIGKILL: no drain, no final commit
                    agent.wait()
                    killed["at"] = time.monotonic()
                    # A process with threads and 80 MB takes milliseconds to die. What is
                    # written meanwhile is read by nobody, or by the port pump before it
                    # learns that the agent is gone: lost with the agent, not a window of it.
                    killed["dying_ms"] = 1000 * (killed["at"] - t_kill)
                    killed["while_dying"] = int(progress.value) - int(killed["seq"])
                    agent = subprocess.Popen([*pin, str(exe), "run", "-c", str(cfg)],
                                             stdout=log, stderr=subprocess.STDOUT)
                threading.Thread(target=kill, daemon=True).start()
            spy = None
            if profile is not None:  # py-spy (pip install py-spy): collapsed stacks or SVG
                fmt = "flamegraph" if profile.suffix == ".svg" else "raw"
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "-p",
                     str(agent.pid), "-d", str(int(seconds)), "-r", "200", "--nonblocking",
                     "--format", fmt, "-o", str(profile),
                     *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            written, overruns, sent_at = generate_apart(master, slave, rate, seconds, progress)
            if spy is not None:
                spy.wait(30)
            gen_end = time.monotonic()
            deadline = gen_end + max(30.0, 3 * outage_s)
            while len(sub.received) < written and time.monotonic() < deadline:
                time.sleep(0.2)
            drained = time.monotonic()
            cpu = agent_cpu_s(agent.pid) - (0.0 if killed else cpu0)
            threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu_s(agent.pid).items()}
            disk_bytes = agent_write_bytes(agent.pid) - (0 if killed else written0)
            result["done"] = True
            lat = sorted(sub.received[s] - sent_at[s] for s in sub.received if s in sent_at)
            agent_lost = 0
            if killed:
                before = sum(1 for q in sent_at if q <= killed["seq"] and q not in sub.received)
                agent_lost = max(0, before - int(killed["unread"]))
            first_after = None
            drain: dict[str, float] = {}
            if outage_thread is not None:
                outage_thread.join(60)  # its outbox watch ends at the steady state
            if back_s is not None:
                after = [t for t in sub.received.values() if t >= back_s]
                first_after = (min(after) - back_s) if after else None
                if len(pending) > 1:
                    t_end, rows_end = pending[-1]
                    peak_t, peak_rows = max(pending, key=lambda p: (p[1], p[0]))
                    span_s = max(1e-3, t_end - peak_t)  # from the last sample before it fell
                    drain = {"backlog": peak_rows, "span_s": span_s,
                             "before_s": peak_t - back_s,
                             "backlog_per_s": (peak_rows - rows_end) / span_s,
                             "all_per_s": (peak_rows - rows_end + rate * span_s) / span_s}
            delivered = len(sub.received)
            return {
                "rate": rate, "seconds": seconds, "offered": int(rate * seconds),
                "written": written, "overruns": overruns, "delivered": delivered,
                "missing": written - delivered, "duplicates": sub.duplicates,
                "ratio": delivered / max(1, int(rate * seconds)),
                "events_per_s": delivered / max(1e-9, (max(sub.received.values(), default=gen_end)
                                                     - wall0)),
                "p50_ms": 1000 * statistics.median(lat) if lat else None,
                "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else None,
                "cpu_s": cpu, "cpu_ms_per_1000": cpu * 1e6 / max(1, delivered),
                "cpu_share": cpu / max(1e-9, drained - wall0),
                "thread_share": {k: v / max(1e-9, drained - wall0) for k, v in threads.items()
                                 if v > 0},
                "peak_rss_mb": peak_rss, "messages": sub.messages,
                "disk_bytes_per_event": disk_bytes / max(1, delivered),
                "first_event_after_broker_back_s": first_after,
                "drain": drain,
                "lost_at_kill_ms": (1000 * agent_lost / rate) if killed else None,
                "lost_at_kill": agent_lost if killed else None,
                "unread_at_kill": killed.get("unread"),
                "dying_ms": killed.get("dying_ms"),
                "written_while_dying": killed.get("while_dying"),
            }
        finally:
            agent.terminate()
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
            log.close()
            client.loop_stop()
            client.disconnect()
            broker.close()
            os.close(master)
            os.close(slave)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,2000,5000,10000,20000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--broker-outage-s", type=float, default=0.0)
    ap.add_argument("--kill-at-s", type=float, help="SIGKILL the agent S seconds into the "
                    "run and start it again at once: reports the input lost, in ms")
    ap.add_argument("--cpu", type=int, help="pin the agent to this CPU (taskset): one core, "
                    "as on a busy Raspberry Pi")
    ap.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the agent to FILE "
                    "(one rate only); a FILE ending in .svg gets a flame graph; with "
                    "BENCH_PROFILE_GIL=1 only the thread holding the GIL is sampled")
    args = ap.parse_args(argv)
    print("rate/s  written  overruns  delivered  missing  dups  ratio   ev/s    p50 ms  p99 ms  "
          "CPU ms/1000ev  CPU%   RSS MB  first-after-outage s")
    for rate in (int(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.seconds, args.broker_outage_s, args.profile, args.cpu,
                     args.kill_at_s)
        fa = r["first_event_after_broker_back_s"]
        print(f"{rate:6d}  {r['written']:7d}  {r['overruns']:8d}  {r['delivered']:9d}  "
              f"{r['missing']:7d}  {r['duplicates']:4d}  {r['ratio']:.4f}  "
              f"{r['events_per_s']:6.0f}  {r['p50_ms'] or 0:7.1f}  {r['p99_ms'] or 0:7.1f}  "
              f"{r['cpu_ms_per_1000']:13.0f}  {100 * r['cpu_share']:4.0f}  "
              f"{r['peak_rss_mb']:6.1f}  {'' if fa is None else f'{fa:.2f}'}", flush=True)
        if r["thread_share"] and not r["lost_at_kill_ms"]:
            shares = sorted(r["thread_share"].items(), key=lambda kv: -kv[1])
            print("        CPU by thread (% of a core; a thread the agent does not name counts "
                  "as its process): " + ", ".join(f"{k} {100 * v:.1f}" for k, v in shares),
                  flush=True)
            print(f"        written to storage: {r['disk_bytes_per_event'] / 1024:.2f} KiB per "
                  "event (/proc write_bytes: WAL, checkpoints, logs)", flush=True)
        if r["drain"]:
            d = r["drain"]
            print(f"        backlog after the outage: {d['backlog']:.0f} events (its peak, "
                  f"{d['before_s']:.2f} s after the broker's return), down to the steady state "
                  f"{d['span_s']:.2f} s later = {d['backlog_per_s']:.0f} events/s "
                  f"({d['all_per_s']:.0f}/s delivered with the new lines)", flush=True)
        if r["lost_at_kill_ms"] is not None:
            print(f"        SIGKILL: {r['lost_at_kill']} lines the agent had read and not "
                  f"committed = {r['lost_at_kill_ms']:.1f} ms of input at {rate}/s; "
                  f"{r['unread_at_kill']} lines still unread in the tty buffer (flushed when "
                  f"the next agent opens the port); {r['missing']} missing in all, with "
                  f"{r['written_while_dying']} written in the {r['dying_ms']:.1f} ms the agent "
                  f"took to die and the lines written until the next agent read the port",
                  flush=True)


if __name__ == "__main__":
    main()
