"""Unplug and replug: the simulator's port vanishes and comes back (pty via a stable symlink,
as udev's /dev/serial/by-id links behave, and TCP via socket://). Reads must flow again
within 2 s of the port's return; the reader is re-identified on the new connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.reader_support import Run, SimLines, reader_config, sim

DEVICES = {
    "r2000": ("r2000", "--tags", "3"),
    "chafon": ("chafon", "--tags", "3"),
    "barcode": ("barcode", "--interval", "0.1"),
}


@pytest.mark.parametrize("transport", ["pty-symlink", "tcp"])
@pytest.mark.parametrize("driver", ["r2000", "chafon", "barcode"])
async def test_reads_resume_within_2_s_of_the_port_returning(
    tmp_path: Path, driver: str, transport: str
) -> None:
    args = [*DEVICES[driver], "--vanish-after", "1.5", "--vanish-for", "1.5"]
    link = tmp_path / "by-id-reader"
    if transport == "tcp":
        args += ["--tcp", "127.0.0.1:0"]
    else:
        args += ["--pty", "--link", str(link)]
    with sim(tmp_path, *args) as s:
        lines = SimLines(s)
        port = str(link) if transport == "pty-symlink" else s.port.replace("tcp://", "socket://")
        extra = {"terminator": "CRLF"} if driver == "barcode" else {}
        cfg = reader_config(driver=driver, port=port, reconnect_min_s=0.05,
                            reconnect_max_s=1.0, response_timeout_s=0.3, **extra)
        async with Run(cfg) as run:
            await run.wait_reads(2)
            await run.wait_for(lambda r: lines.when("PORT ") is not None, 10, "the port's return")
            back = lines.when("PORT ")
            assert back is not None
            await run.wait_for(lambda r: any(t > back for t in r.read_times), 5,
                               "reads after the port returned")
    first_after = min(t for t in run.read_times if t > back)
    assert first_after - back < 2.0, f"reads resumed {first_after - back:.2f} s after return"
    gone = lines.when("GONE ")
    assert gone is not None
    assert run.status.disconnects == 1
    assert run.status.connects >= 2
    assert run.status.state == "connected"


async def test_a_vanishing_reader_does_not_disturb_another(tmp_path: Path) -> None:
    link = tmp_path / "by-id-chafon"
    with sim(tmp_path, "chafon", "--tags", "2", "--pty", "--link", str(link),
             "--vanish-after", "1.0", "--vanish-for", "2.0") as flaky, \
            sim(tmp_path, "barcode", "--pty", "--interval", "0.1") as steady:
        lines = SimLines(flaky)
        a = reader_config(name="rfid", driver="chafon", port=str(link), reconnect_max_s=0.5)
        b = reader_config(name="scanner", driver="barcode", port=steady.port, terminator="CRLF")
        async with Run(a) as rfid, Run(b) as scanner:
            await rfid.wait_for(lambda r: lines.when("PORT ") is not None, 10, "the return")
            await rfid.wait_reads(len(rfid.reads) + 3)
    gone, back = lines.when("GONE "), lines.when("PORT ")
    assert gone is not None
    assert back is not None
    during = [t for t in scanner.read_times if gone < t < back]
    assert len(during) >= 10, "the scanner stalled while the RFID reader was unplugged"
    assert scanner.status.disconnects == 0
    assert rfid.status.disconnects == 1
