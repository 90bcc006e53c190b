"""ThingMagic driver against reader-sim thingmagic on a real pseudo-terminal (in-process
supervisor). Expected EPCs come from the simulator's tag population (same seed)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import serial
from readersim.population import generated_tags

from agent.config import AnyReaderConfig
from agent.readers.control import ReaderControl
from agent.readers.session import ReaderCommandError
from tests.support.baudline import BaudLine
from tests.support.reader_support import Run, reader_config, sim


def _population(count: int, seed: int, antennas: tuple[int, ...] = (1,)) -> dict[str, int]:
    return {
        t.epc.hex().upper(): t.antenna
        for t in generated_tags(count, seed=seed, antennas=antennas)
    }


def _config(port: str, **fields: Any) -> AnyReaderConfig:
    fields.setdefault("region", "EU3")
    return reader_config(driver="thingmagic", port=port, **fields)


def _check_reads(run: Run, expected: dict[str, int]) -> None:
    assert run.tags
    for r in run.tags:
        assert r.epc in expected, f"read of an EPC the simulator never had: {r.epc}"
        assert r.antenna == expected[r.epc], (r.epc, r.antenna, expected[r.epc])
        assert r.reader == "r1"
        assert r.rssi_dbm is not None
        assert -100 <= r.rssi_dbm <= -20
        assert r.frequency_khz is not None
        assert 865_000 <= r.frequency_khz <= 868_000  # EU3 hop table of the simulator
        assert r.phase is not None
        assert 0 <= r.phase <= 180


async def _all_seen(run: Run, expected: dict[str, int], timeout_s: float = 15.0) -> None:
    await run.wait_for(lambda r: {t.epc for t in r.tags} >= set(expected), timeout_s,
                       f"all {len(expected)} EPCs")


async def test_boots_from_the_bootloader_configures_and_streams(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _population(5, 7)
    with (sim(tmp_path, "thingmagic", "--pty", "--tags", "5", "--seed", "7") as s,
          caplog.at_level(logging.INFO, logger="agent.readers")):
        async with Run(_config(s.port)) as run:
            await _all_seen(run, expected)
        _check_reads(run, expected)
        assert "(booted from the bootloader)" in caplog.text
        caplog.clear()
        # The module now runs its application: boot firmware answers 0x0101, no reboot.
        async with Run(_config(s.port)) as run2:
            await run2.wait_reads(5)
        assert "booted from the bootloader" not in caplog.text
        assert "ThingMagic M6e Nano firmware 01.09.00.02" in caplog.text
        assert ", serial SIM-NANO-0001" in caplog.text
    st = run.status
    assert st.model == "M6e Nano"
    assert st.firmware == "01.09.00.02"
    assert st.temperature_c == 33
    assert st.decoder["frames"] > 0
    assert st.decoder["bad_checksums"] == 0


async def test_a_module_left_streaming_is_stopped_and_drained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier process died with the module streaming: it hears nothing but stop-reading,
    so the version command alone would time out on every connect."""
    expected = _population(4, 3)
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "4", "--seed", "3",
             "--streaming-at-start") as s, caplog.at_level(logging.INFO, logger="agent.readers"):
        async with Run(_config(s.port)) as run:
            await _all_seen(run, expected)
    # Identify succeeded at once, without one unanswered command: the stop went first.
    assert run.status.connects == 1
    assert run.status.disconnects == 0
    assert run.status.command_retries == 0
    assert "no reply to" not in caplog.text
    _check_reads(run, expected)


async def test_region_is_set_before_reading(tmp_path: Path) -> None:
    """The simulator refuses continuous reading without a region (0x0405): reading at all
    shows the driver set it; a region the module refuses stops the connect, named."""
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "2") as s:
        async with Run(_config(s.port, region="NA")) as run:
            await run.wait_reads(3)
            freqs = {t.frequency_khz for t in run.tags}
    assert all(f is not None and 902_000 <= f <= 928_000 for f in freqs)


async def test_power_written_only_when_it_differs_and_a_refusal_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "2") as s:
        for power, said in [
            (25, "read power set to 25 dBm (was 20 dBm)"),
            (25, "read power already 25 dBm"),
            (30, "0x0103 msg_power_too_high"),  # the Nano stops at 27 dBm
        ]:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="agent.readers"):
                async with Run(_config(s.port, power_dbm=power)) as run:
                    await run.wait_reads(2)
            assert said in caplog.text, caplog.text
        assert run.status.power_reported == (25,)
        assert "msg_power_too_high" in (run.status.power_error or "")


async def test_live_power_change_pauses_the_stream_sets_and_reads_back(tmp_path: Path) -> None:
    """The signed remote command's path: ReaderControl.set_power -> request_power."""
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "3") as s:
        cfg = _config(s.port, power_dbm=20)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(3)
            outcome = await control.set_power(18, timeout_s=5)
            assert outcome.applied
            assert outcome.reported == (18,)
            assert outcome.written
            n = len(run.reads)
            await run.wait_reads(n + 3)  # streaming again after the change
            with pytest.raises(ReaderCommandError, match="msg_power_too_high"):
                await control.set_power(29, timeout_s=5)
            assert control.desired == 18
            n = len(run.reads)
            await run.wait_reads(n + 3)
    assert run.status.power_reported == (18,)
    assert run.status.disconnects == 0


async def test_four_port_module_reports_each_reads_antenna(tmp_path: Path) -> None:
    expected = _population(6, 11, (1, 3))
    with sim(tmp_path, "thingmagic", "--pty", "--model", "m6e", "--tags", "6", "--seed", "11",
             "--tag-antennas", "1,3") as s:
        async with Run(_config(s.port, antennas=[1, 3])) as run:
            await _all_seen(run, expected)
    _check_reads(run, expected)
    assert {t.antenna for t in run.tags} == {1, 3}


async def test_line_faults_resync_count_and_keep_delivering(tmp_path: Path) -> None:
    expected = _population(6, 4)
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "6", "--seed", "4", "--garbage", "0.1",
             "--split", "0.3", "--drop-byte", "0.05", "--bad-checksum", "0.05",
             "--bad-vectors", "0.1", "--read-rate", "400") as s:
        async with Run(_config(s.port, silence_timeout_s=2.0)) as run:
            await run.wait_reads(300, timeout_s=30)
            await _all_seen(run, expected)
    stats = run.status.decoder
    assert stats["bad_checksums"] > 0
    assert stats["bytes_discarded"] > 0
    assert [t.epc for t in run.tags if t.epc not in expected] == []  # a 16-bit CRC: none


async def test_silent_module_is_reopened_and_reads_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "2", "--silent-after", "1.0",
             "--silent-for", "2.0") as s:
        cfg = _config(s.port, silence_timeout_s=1.5, response_timeout_s=0.3)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_reads(3)
                await run.wait_for(lambda r: r.status.disconnects >= 1, 10, "a silence reset")
                n = len(run.reads)
                await run.wait_reads(n + 5, timeout_s=10)
    assert "sent nothing for 1.5 s during continuous reading" in caplog.text
    assert run.status.state == "connected"


async def test_stopping_the_reader_stops_the_stream(tmp_path: Path) -> None:
    """On shutdown the driver sends stop-reading: afterwards the module is quiet (a streaming
    module sends a record per read and a keep-alive every second)."""
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "3") as s:
        async with Run(_config(s.port)) as run:
            await run.wait_reads(5)
        port = serial.Serial(s.port, 115200, timeout=0)
        try:
            await asyncio.sleep(0.3)
            # What the module sent after the agent closed the port: at most the tail of the
            # stream and the reply to stop-reading (pyserial may flush it when it opens) ...
            tail = port.read(65536)
            assert len(tail) < 1000, tail.hex(" ")
            # ... and nothing after it: no records, no keep-alives (one a second if streaming).
            await asyncio.sleep(1.5)
            assert port.read(4096) == b""
        finally:
            port.close()


class FollowingBaudLine(BaudLine):
    """A BaudLine whose rate follows a Mercury set-baud-rate (0x06) request that got through
    once the host's port is at the new rate too, as the module's UART does after its reply."""

    def __init__(self, target_port: str, line_baud: int) -> None:
        self._pending: int | None = None
        super().__init__(target_port, line_baud)

    def _mangle(self, data: bytes) -> bytes:
        if self._pending is not None and self.client_baud() == self._pending:
            self.line_baud, self._pending = self._pending, None
        at = data.find(b"\xff\x04\x06")
        if at >= 0 and self.client_baud() == self.line_baud and len(data) >= at + 7:
            self._pending = int.from_bytes(data[at + 3 : at + 7], "big")
        return super()._mangle(data)


async def test_a_module_at_another_rate_is_found_and_switched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Config 115200, module at 9600 (a line that garbles every byte at any other rate): no
    answer at 115200, found at 9600, switched to 115200 with 0x06, then read at 115200."""
    expected = _population(3, 5)
    with sim(tmp_path, "thingmagic", "--pty", "--baud", "9600", "--tags", "3", "--seed",
             "5") as s:
        line = FollowingBaudLine(s.port, 9600)
        try:
            cfg = _config(line.port, baudrate=115200, response_timeout_s=0.3)
            with caplog.at_level(logging.INFO, logger="agent.readers"):
                async with Run(cfg) as run:
                    await _all_seen(run, expected)
            assert line.line_baud == 115200
            assert line.client_baud() == 115200
        finally:
            line.close()
    assert "the module answers at 9600 baud, not 115200: switching it to 115200" in caplog.text
    assert run.status.connects == 1
    _check_reads(run, expected)


async def test_without_baud_search_a_wrong_rate_is_a_named_timeout(tmp_path: Path) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--baud", "9600", "--tags", "1") as s:
        line = BaudLine(s.port, 9600)
        try:
            cfg = _config(line.port, baudrate=115200, baud_search=False, response_timeout_s=0.2)
            async with Run(cfg) as run:
                await run.wait_for(lambda r: r.status.connects >= 2, 10, "two attempts")
        finally:
            line.close()
    assert not run.reads
    assert "no reply to version (0x03) within 0.20 s" in (run.status.last_error or "")


async def test_temperature_is_read_again_and_warned_while_streaming(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The temperature timer pauses the stream (the module takes no command while it
    streams), reads 0x72, warns once above temperature_warn_c and starts the stream again."""
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "2", "--temperature-at", "1.0:80") as s:
        cfg = _config(s.port, temperature_interval_s=0.3, temperature_warn_c=75)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_for(lambda r: r.status.temperature_c == 80, 10, "80 °C")
                n = len(run.reads)
                await run.wait_reads(n + 10)  # streaming again
                await asyncio.sleep(1.0)  # more timer rounds: still one warning
    assert caplog.text.count("temperature 80 °C is above 75 °C") == 1
    assert run.status.temperature_high
    assert run.status.disconnects == 0


async def test_a_stream_status_is_named_counted_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (sim(tmp_path, "thingmagic", "--pty", "--tags", "2", "--error-code", "0x0504",
              "--error-after", "0", "--error-for", "1.0") as s,
          caplog.at_level(logging.WARNING, logger="agent.readers")):
        async with Run(_config(s.port)) as run:
            await run.wait_for(lambda r: r.status.error_codes.get(0x0504, 0) >= 2, 10,
                               "temperature throttle statuses")
            n = len(run.reads)
            await run.wait_reads(n + 5)
    assert caplog.text.count("0x0504 temperature_exceed_limits") == 1  # repeats only counted
    assert run.status.disconnects == 0
