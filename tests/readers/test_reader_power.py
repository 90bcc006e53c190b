"""Live output power and the R2000 temperature, against reader-sim on a real pty (in-process
supervisor with a ReaderControl, as the agent runs it).

What the reader ends up with is checked on a separate connection with raw commands (0x77 for
the R2000, 0x21 for Chafon), not only through the driver that set it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from agent.readers.codecs import a0, chafon
from agent.readers.control import ReaderControl, check_power, merge, power_from_wire
from agent.readers.drivers.base import SettingNotSupported
from agent.readers.link import SerialLink
from agent.readers.session import FrameSession
from tests.support.reader_support import Run, SimLines, reader_config, sim


async def _r2000_power(port: str) -> list[int]:
    """get_output_power (0x77) on a fresh connection, as bytes on the wire."""
    link = await SerialLink.open(port, 115200)
    try:
        session = FrameSession(link, a0.A0Decoder(None))
        frame = await session.request(a0.encode(0xFF, a0.Cmd.GET_OUTPUT_POWER),
                                      lambda f: f.cmd == a0.Cmd.GET_OUTPUT_POWER, timeout_s=2.0)
    finally:
        await link.aclose()
    data = list(frame.data)
    return data * 4 if len(data) == 1 else data


async def _chafon_power(port: str) -> int | None:
    """Get Reader Information (0x21) on a fresh connection."""
    link = await SerialLink.open(port, 57600)
    try:
        session = FrameSession(link, chafon.ChafonDecoder(None, max_gap_s=None),
                               idle_resync_s=0.015)
        frame = await session.request(chafon.get_reader_info(0xFF),
                                      chafon.is_reply_to(chafon.Cmd.GET_READER_INFO),
                                      timeout_s=2.0)
    finally:
        await link.aclose()
    info = chafon.parse_reader_info(frame)
    assert isinstance(info, chafon.ReaderInfo), info
    return info.power_dbm


@pytest.mark.parametrize("inventory", ["real_time", "fast_switch"])
async def test_r2000_power_changes_mid_inventory_without_a_reconnect(
    tmp_path: Path, inventory: str
) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "3") as s:
        cfg = reader_config(driver="r2000", port=s.port, inventory=inventory)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(20)
            assert run.status.power_reported == (30, 30, 30, 30)  # read at connect
            before = time.monotonic()
            out = await control.set_power(20, timeout_s=5)
            after = time.monotonic()
            assert (out.applied, out.written, out.reported) == (True, True, (20, 20, 20, 20))
            assert out.as_dict("r1") == {"reader": "r1", "applied": True, "desiredDbm": 20,
                                         "reportedDbm": 20, "written": True}
            n = len(run.reads)
            await run.wait_reads(n + 20)
            again = await control.set_power(20, timeout_s=5)  # same value: flash not written
            assert (again.applied, again.written) == (True, False)
            ports = await control.set_power({1: 25, 3: 18}, timeout_s=5)
            assert ports.reported == (25, 20, 18, 20)
            assert control.desired == {1: 25, 2: 20, 3: 18, 4: 20}
            await run.wait_reads(len(run.reads) + 20)
            st = run.status
            assert st.as_dict()["power"] == {
                "desiredDbm": {"1": 25, "2": 20, "3": 18, "4": 20},
                "reportedDbm": {"1": 25, "2": 20, "3": 18, "4": 20}, "error": None}
        # reads before and after the change, on one connection, and nothing out of order
        assert any(t < before for t in run.read_times)
        assert any(t > after for t in run.read_times)
        assert (st.connects, st.disconnects) == (1, 0)
        assert st.stray_frames == 0
        assert st.malformed_frames == 0
        assert st.decoder["bad_checksums"] == 0
        assert await _r2000_power(s.port) == [25, 20, 18, 20]


async def test_r2000_desired_power_is_reapplied_to_a_replugged_reader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The port vanishes and a *fresh* reader (30 dBm) comes back on the same by-id link; a
    change asked while it is gone is queued and applied on connect."""
    link = tmp_path / "by-id-reader"
    with sim(tmp_path, "r2000", "--tags", "3", "--pty", "--link", str(link),
             "--vanish-after", "2.0", "--vanish-for", "1.5") as s:
        lines = SimLines(s)
        cfg = reader_config(driver="r2000", port=str(link), power_dbm=24,
                            response_timeout_s=0.3, reconnect_max_s=0.3)
        control = ReaderControl(cfg)
        with caplog.at_level(logging.INFO, logger="agent.readers"):
            async with Run(cfg, control) as run:
                await run.wait_reads(5)
                assert run.status.power_reported == (24, 24, 24, 24)  # config, at connect
                assert (await control.set_power(20, timeout_s=5)).applied
                await run.wait_for(lambda r: r.status.state == "reconnecting", 10, "unplug")
                queued = await control.set_power(22, timeout_s=5)
                assert not queued.applied
                assert "is not connected (reconnecting)" in (queued.note or "")
                assert "applied when it connects" in (queued.note or "")
                assert queued.as_dict("r1")["queued"] is True
                await run.wait_for(lambda r: lines.when("PORT ") is not None, 10, "replug")
                back = lines.when("PORT ")
                assert back is not None
                await run.wait_for(lambda r: r.status.power_reported == (22, 22, 22, 22), 10,
                                   "desired power on the new reader")
                await run.wait_for(lambda r: any(t > back for t in r.read_times), 5,
                                   "reads after the replug")
        assert run.status.disconnects == 1
        assert run.status.power_desired == 22
        assert "output power set to 22 dBm (was [30, 30, 30, 30])" in caplog.text
        assert await _r2000_power(str(link)) == [22, 22, 22, 22]


async def test_chafon_power_between_answer_mode_inventories(tmp_path: Path) -> None:
    with sim(tmp_path, "chafon", "--pty", "--tags", "3") as s:
        cfg = reader_config(driver="chafon", port=s.port, scan_time_ms=300)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(5)
            assert run.status.power_reported == (30,)  # 0x21 at identify
            out = await control.set_power(18, timeout_s=5)
            assert (out.applied, out.written, out.reported) == (True, True, (18,))
            n = len(run.reads)
            await run.wait_reads(n + 5)
            with pytest.raises(ValueError, match=r"0\.\.30"):
                await control.set_power(31, timeout_s=5)
            with pytest.raises(ValueError, match="one power for all ports"):
                await control.set_power({1: 20, 2: 21}, timeout_s=5)
            assert control.desired == 18  # refused requests change nothing
        assert (run.status.connects, run.status.disconnects) == (1, 0)
        assert run.status.stray_frames == 0
        assert await _chafon_power(s.port) == 18


async def test_chafon_push_mode_says_not_supported(tmp_path: Path) -> None:
    with sim(tmp_path, "chafon", "--pty", "--scan-mode", "--tags", "2") as s:
        cfg = reader_config(driver="chafon", port=s.port, work_mode="push")
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(3)
            with pytest.raises(SettingNotSupported, match="not supported in push mode"):
                await control.set_power(20, timeout_s=5)
            n = len(run.reads)
            await run.wait_reads(n + 3)
    assert control.desired is None
    assert run.status.disconnects == 0


async def test_r2000_temperature_is_read_between_rounds_and_warned_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--temperature", "40",
             "--temperature-at", "1.0:70", "--temperature-at", "2.5:45") as s:
        cfg = reader_config(driver="r2000", port=s.port, temperature_interval_s=0.2,
                            temperature_warn_c=60)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_reads(2)
                await run.wait_for(lambda r: r.status.temperature_c == 70, 10, "70 °C")
                assert run.status.as_dict()["temperatureC"] == 70
                await run.wait_for(lambda r: r.status.temperature_c == 45, 10, "45 °C")
                n = len(run.reads)
                await run.wait_reads(n + 5)
    above = [r for r in caplog.records if "is above 60 °C" in r.getMessage()]
    below = [r for r in caplog.records if "back to 45 °C, below 60 °C" in r.getMessage()]
    assert len(above) == 1, caplog.text
    assert len(below) == 1, caplog.text
    assert run.status.disconnects == 0


async def test_r2000_temperature_interval_0_reads_it_at_connect_only(tmp_path: Path) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--temperature", "40",
             "--temperature-at", "0.5:70") as s:
        cfg = reader_config(driver="r2000", port=s.port, temperature_interval_s=0)
        async with Run(cfg) as run:
            await run.wait_reads(2)
            start = time.monotonic()
            await run.wait_for(lambda r: time.monotonic() - start > 1.5, 5, "1.5 s of rounds")
    assert run.status.temperature_c == 40


def test_power_validation_and_merging() -> None:
    r2000 = reader_config(driver="r2000", port="/dev/null")
    assert check_power(r2000, 33) == 33
    assert check_power(r2000, {8: 0}) == {8: 0}
    bad_powers: list[tuple[int | dict[int, int], str]] = [
        (34, r"0\.\.33"), ({9: 20}, r"ports 1\.\.8"), ({1: 40}, r"0\.\.33"), ({}, "no port")]
    for bad, text in bad_powers:
        with pytest.raises(ValueError, match=text):
            check_power(r2000, bad)
    barcode = reader_config(driver="barcode", port="/dev/null")
    with pytest.raises(SettingNotSupported, match="barcode"):
        check_power(barcode, 20)
    assert power_from_wire(20) == 20
    assert power_from_wire(20.0) == 20
    assert power_from_wire({"1": 25, "3": 18}) == {1: 25, 3: 18}
    wire: list[object] = [20.5, True, "20", {"x": 1}, {"1": 2.5}]
    for value in wire:
        with pytest.raises(ValueError):
            power_from_wire(value)
    assert merge(None, {1: 25}, 4) == {1: 25}
    assert merge(20, {1: 25}, 4) == {1: 25, 2: 20, 3: 20, 4: 20}
    assert merge({1: 25, 2: 20, 3: 20, 4: 20}, {1: 20}, 4) == 20
    assert merge({1: 25}, 30, 4) == 30
