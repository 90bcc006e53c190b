"""edge-agent doctor with a ThingMagic module (reader-sim thingmagic + Mosquitto)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.harness import SimProcess, write_config
from tests.support.mosquitto import Mosquitto


def test_doctor_identifies_a_module_left_streaming(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("thingmagic", "--pty", "--tags", "2", "--streaming-at-start",
                     log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db",
                       reader={"driver": "thingmagic", "region": "EU3"},
                       extra={"status": {"socket": str(tmp_path / "agent.sock")}})
    try:
        proc = subprocess.run([sys.executable, "-m", "agent", "doctor", "-c", str(cfg)],
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("CHECK ", 1)[1]
    row = re.search(r"^reader r1 answers\s+(PASS|WARN|FAIL)\s+.*", table, re.M)
    assert row, proc.stdout
    assert re.search(r"PASS\s+thingmagic at 115200 baud, M6e Nano, firmware 01\.09\.00\.02",
                     row.group(0)), row.group(0)
