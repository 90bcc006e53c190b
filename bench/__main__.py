"""`make bench`: run every benchmark with its default settings, one after the other.

Figures are written by hand into docs/benchmarks.md (with the machine they were measured on):
benchmarks are not timed tests, so nothing here asserts a number.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository

RUNS: list[tuple[str, list[str]]] = [
    ("reader decoders (frames/s vs the line limit)", ["bench/bench_decoders.py"]),
    ("line noise: 1 GB of noise and 10 MB mixed into valid R2000 frames",
     ["bench/bench_noise.py"]),
    ("EPC decode and event hash (µs per call)", ["bench/bench_epc.py"]),
    ("pipeline: raw reads/s through presence, decoding, EPCIS", ["bench/bench_pipeline.py"]),
    ("buffer: durable ingest at 25,000 reads/s offered (RSS sampled)",
     ["bench/bench_buffer.py", "--seconds", "20", "--rate", "25000"]),
    ("MQTT: messages/s and publish->PUBACK latency", ["-m", "bench.bench_mqtt"]),
    ("uplink: drain a 1,000,000-event backlog", ["-m", "bench.bench_uplink", "backlog",
                                                 "--events", "1000000", "--batch", "500"]),
    ("uplink: read->PUBACK latency at 1,000 events/s",
     ["-m", "bench.bench_uplink", "online", "--rate", "1000", "--seconds", "10"]),
    ("end to end: pty -> edge-agent -> Mosquitto -> subscriber, rate sweep",
     ["-m", "bench.bench_e2e", "--rates", "1000,2000,3000,5000", "--seconds", "10"]),
    ("footprint: idle CPU and RSS with four connected readers",
     ["-m", "bench.bench_footprint", "--seconds", "30"]),
    ("this machine against a published Raspberry Pi 4 run (N-body, pure Python)",
     ["bench/nbody.py"]),
]


def _code() -> str:
    """Which agent the benchmarks run: this repository's, whatever PYTHONPATH said."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{ROOT} at {commit or 'an unknown commit'}"


def main() -> int:
    # The agent run is always this checkout's: to measure another commit, run its own copy
    # (`cd <worktree> && <venv>/bin/python -m bench ...`); PYTHONPATH does not choose it.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "firmware-sim")]))
    print(f"benchmarking the agent in {_code()}", flush=True)
    if sys.argv[1:2] == ["e2e"]:  # `python -m bench e2e [args]`: the whole path only
        return subprocess.run([sys.executable, "-m", "bench.bench_e2e", *sys.argv[2:]],
                              cwd=ROOT, env=env, check=False).returncode
    failed = 0
    for title, args in RUNS:
        print(f"\n=== {title}\n$ python {' '.join(args)}", flush=True)
        rc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=False).returncode
        if rc:
            print(f"(exit code {rc})")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
