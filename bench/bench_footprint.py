"""Idle footprint of the real agent: CPU and RSS with four connected, idle simulated readers.

    PYTHONPATH=.:firmware-sim /work/main/.venv/bin/python -m bench.bench_footprint [--seconds 60]

Four ``reader-sim r2000 --pty --tags 0`` (readers connected, inventorying an empty field), a
local Mosquitto started for the run, and ``edge-agent run`` as a subprocess. After a warm-up,
CPU is utime+stime from /proc/PID/stat over the window; RSS is VmRSS (and the peak VmHWM) from
/proc/PID/status. Goals: < 1% of one core, RSS < 60 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.proc import family
from tests.support.harness import AgentProcess, SimProcess
from tests.support.mosquitto import Mosquitto

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    total = 0
    for p in family(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def status_kb(pid: int, key: str, *, alone: bool = False) -> int:
    """``key`` of /proc/PID/status summed over the agent and its children (``alone``: the
    agent's own)."""
    total = 0
    for p in [pid] if alone else family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--tags", type=int, default=0)
    ap.add_argument("--read-rate", type=float, default=None,
                    help="reader-sim --read-rate per reader (0 = as fast as the line allows)")
    ap.add_argument("--inventory-repeat", type=int, default=None,
                    help="readers[].inventory_repeat (default: the config default, 1)")
    ap.add_argument("--idle-pause-ms", type=int, default=None,
                    help="readers[].idle_pause_ms (default: the config default, 100)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="footprint-"))
    with Mosquitto() as broker:
        rate = ["--read-rate", str(args.read_rate)] if args.read_rate is not None else []
        sims = [SimProcess("r2000", "--pty", "--tags", str(args.tags), "--seed", str(i + 1),
                           *rate, log_path=tmp / f"sim{i}.log") for i in range(args.readers)]
        cfg = {
            "gateway": {"id": "gw-bench", "site": "lab"},
            "readers": [{"name": f"r{i + 1}", "driver": "r2000", "port": s.port,
                         **({"inventory_repeat": args.inventory_repeat}
                            if args.inventory_repeat else {}),
                         **({"idle_pause_ms": args.idle_pause_ms}
                            if args.idle_pause_ms is not None else {})}
                        for i, s in enumerate(sims)],
            "buffer": {"path": str(tmp / "buffer.db")},
            "uplink": {"mqtt": {"host": broker.host, "port": broker.port}},
            "status": {"socket": str(tmp / "agent.sock")},
            "http": {"listen": "127.0.0.1:0"},
        }
        (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
        agent = _start_info(tmp)  # at the default log level INFO, as in production
        try:
            time.sleep(args.warmup)
            pid = agent.proc.pid if agent.proc else 0
            c0, t0, r0 = cpu_s(pid), time.monotonic(), reads_seq(tmp / "buffer.db")
            rss_max = 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                rss_max = max(rss_max, status_kb(pid, "VmRSS"))
            cpu = cpu_s(pid) - c0
            wall = time.monotonic() - t0
            reads = reads_seq(tmp / "buffer.db") - r0
            rss = status_kb(pid, "VmRSS")
            rss_agent = status_kb(pid, "VmRSS", alone=True)
            hwm = status_kb(pid, "VmHWM")
            threads = status_kb(pid, "Threads")
        finally:
            agent.stop()
            for s in sims:
                s.stop()
    log = (tmp / "agent-info.log").read_text()
    connected = log.count("R2000 firmware")
    print(f"readers connected: {connected}/{args.readers} (tags in field: {args.tags})")
    print(f"window: {wall:.1f} s after {args.warmup:.0f} s warm-up")
    print(f"reads committed: {reads / wall:,.0f}/s")
    print(f"CPU: {cpu:.2f} s = {100 * cpu / wall:.2f}% of one core")
    print(f"RSS (agent and port pump): {rss / 1024:.1f} MB now ({rss_agent / 1024:.1f} MB the "
          f"agent alone), {rss_max / 1024:.1f} MB max sampled, {hwm / 1024:.1f} MB peak (VmHWM); "
          f"threads {threads}")
    print(f"python {sys.version.split()[0]}, logs in {tmp}")
    return 0


def reads_seq(db: Path) -> int:
    """The highest read id handed out (reads are deleted once turned into events)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'reads'").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def _start_info(tmp: Path) -> AgentProcess:
    import subprocess

    class _Info(AgentProcess):
        def start(self) -> None:
            log = (tmp / "agent-info.log").open("ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(self.config)],
                stdout=log, stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            log.close()

    return _Info(tmp / "agent.yaml", tmp / "agent-info.log")


if __name__ == "__main__":
    raise SystemExit(main())
