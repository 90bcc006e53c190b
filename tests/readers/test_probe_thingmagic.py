"""probe() finds a Mercury module (reader-sim thingmagic) and the baud rate it talks at."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.readers.link import Link, LinkError, SerialLink
from agent.readers.probe import THINGMAGIC, THINGMAGIC_BAUDS, attempt_order, probe
from tests.support.baudline import BaudLine
from tests.support.reader_support import sim


async def test_finds_the_module_and_its_baud_rate(tmp_path: Path) -> None:
    """Behind a line that garbles every byte unless the port is opened at 9600 (a pty has no
    baud rate of its own): 115200 is tried first and fails, 9600 answers."""
    with sim(tmp_path, "thingmagic", "--pty", "--baud", "9600", "--tags", "2") as s:
        line = BaudLine(s.port, 9600)
        try:
            results = await probe(line.port, protocols=[THINGMAGIC], timeout_s=0.3)
        finally:
            line.close()
    assert len(results) == 1
    found = results[0]
    assert found.protocol == "thingmagic"
    assert found.baudrate == 9600
    assert found.model == "M6e Nano"
    assert found.firmware == "01.09.00.02"
    assert found.detail.startswith("serial SIM-NANO-0001, hardware 30.00.00.01")
    assert found.line().startswith(f"{line.port}: thingmagic at 9600 baud, M6e Nano, firmware "
                                   "01.09.00.02")


async def test_finds_a_module_left_streaming(tmp_path: Path) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--model", "m7e", "--streaming-at-start",
             "--tags", "3") as s:
        results = await probe(s.port, protocols=[THINGMAGIC], timeout_s=0.5)
    assert [(r.protocol, r.baudrate, r.model) for r in results] == [
        ("thingmagic", 115200, "M7e Pico")]


def test_rates_tried_in_the_order_asked() -> None:
    assert THINGMAGIC_BAUDS == (115200, 9600, 921600, 230400, 460800, 57600, 38400, 19200)
    order = attempt_order()
    assert order[:3] == [("r2000", 115200), ("chafon", 57600), ("thingmagic", 115200)]
    assert [b for p, b in order if p == THINGMAGIC] == list(THINGMAGIC_BAUDS)


def test_edge_agent_probe_command(tmp_path: Path) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "1") as s:
        proc = subprocess.run(
            [sys.executable, "-m", "agent", "probe", s.port, "--protocol", "thingmagic",
             "--timeout-s", "0.5"],
            capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{s.port}: thingmagic at 115200 baud, M6e Nano, firmware 01.09.00.02 (serial " \
           "SIM-NANO-0001" in proc.stdout


async def test_a_rate_the_adapter_cannot_do_is_skipped(tmp_path: Path) -> None:
    async def open_link(port: str, baud: int) -> Link:
        if baud == 921600:
            raise LinkError(f"cannot open {port}: baud rate {baud} not supported")
        return await SerialLink.open(port, baud)

    with sim(tmp_path, "thingmagic", "--pty", "--baud", "9600", "--tags", "1") as s:
        line = BaudLine(s.port, 9600)
        try:
            results = await probe(line.port, protocols=[THINGMAGIC], bauds=[115200, 921600, 9600],
                                  timeout_s=0.3, open_link=open_link)
        finally:
            line.close()
    assert [(r.protocol, r.baudrate) for r in results] == [("thingmagic", 9600)]
