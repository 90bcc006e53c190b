"""R2000 driver against reader-sim r2000 on a real pseudo-terminal (in-process supervisor).

Expected EPCs and antennas come from the simulator's tag population (same seed), so a read
with a wrong antenna or an invented EPC fails the test.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from readersim.population import generated_tags

from agent.readers.codecs import a0
from agent.readers.drivers.r2000 import idle_beat_s
from agent.readers.session import FrameSession
from tests.support.reader_support import Run, reader_config, sim


def _population(count: int, seed: int, antennas: tuple[int, ...] = (1,)) -> dict[str, int]:
    return {
        t.epc.hex().upper(): t.antenna
        for t in generated_tags(count, seed=seed, antennas=antennas)
    }


def _check_reads(run: Run, expected: dict[str, int]) -> None:
    for r in run.tags:
        assert r.epc in expected, f"read of an EPC the simulator never had: {r.epc}"
        assert r.antenna == expected[r.epc], (r.epc, r.antenna, expected[r.epc])
        assert r.reader == "r1"
        assert r.rssi_dbm is not None
        assert -100 <= r.rssi_dbm <= -20


async def _all_seen(run: Run, expected: dict[str, int], timeout_s: float = 15.0) -> None:
    await run.wait_for(lambda r: {t.epc for t in r.tags} >= set(expected), timeout_s,
                       f"all {len(expected)} EPCs")
    await run.wait_for(lambda r: r.status.rounds >= 2, timeout_s, "two inventory summaries")


async def test_real_time_identifies_and_reads(tmp_path: Path) -> None:
    expected = _population(5, 7)
    with sim(tmp_path, "r2000", "--pty", "--tags", "5", "--seed", "7") as s:
        cfg = reader_config(driver="r2000", port=s.port)
        async with Run(cfg) as run:
            await _all_seen(run, expected)
        _check_reads(run, expected)
    st = run.status
    assert st.firmware == "1.9"
    assert st.model == "R2000"
    assert st.temperature_c == 35  # 0x7B, PlusMinus 01 = positive (§1.10)
    assert st.rounds > 0
    assert st.decoder["frames"] > 0
    assert all(t.phase is None for t in run.tags)


async def test_session_inventory_8_port_with_phase(tmp_path: Path) -> None:
    """0x8B with session/target/phase; antenna 6 is only expressible with RSSI bit 7 (§1.6)."""
    expected = _population(6, 3, (1, 6))
    with sim(tmp_path, "r2000", "--pty", "--ports", "8", "--antennas", "1,6",
             "--tag-antennas", "1,6", "--tags", "6", "--seed", "3") as s:
        cfg = reader_config(driver="r2000", port=s.port, antennas=[1, 6], inventory="session",
                            session=2, target="B", phase=True)
        async with Run(cfg) as run:
            await _all_seen(run, expected)
    _check_reads(run, expected)
    assert {t.antenna for t in run.tags} == {1, 6}
    assert all(t.phase is not None for t in run.tags)


@pytest.mark.parametrize(
    ("ports", "antennas", "phase"),
    [(4, [1, 2, 3, 4], False), (8, [2, 5, 8], False), (8, [1, 7], True)],
    ids=["4-port", "8-port", "8-port-phase"],
)
async def test_fast_switch(tmp_path: Path, ports: int, antennas: list[int], phase: bool) -> None:
    ants = ",".join(map(str, antennas))
    expected = _population(8, 11, tuple(antennas))
    with sim(tmp_path, "r2000", "--pty", "--ports", str(ports), "--antennas", ants,
             "--tag-antennas", ants, "--tags", "8", "--seed", "11") as s:
        cfg = reader_config(driver="r2000", port=s.port, antennas=antennas,
                            inventory="fast_switch", phase=phase)
        async with Run(cfg) as run:
            await _all_seen(run, expected)
    _check_reads(run, expected)
    assert run.status.rounds > 0
    assert all((t.phase is not None) == phase for t in run.tags)


async def test_fast_switch_reports_a_missing_antenna_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _population(3, 5)
    with sim(tmp_path, "r2000", "--pty", "--antennas", "1", "--tags", "3", "--seed", "5") as s:
        cfg = reader_config(driver="r2000", port=s.port, antennas=[1, 3],
                            inventory="fast_switch")
        with caplog.at_level(logging.WARNING):
            async with Run(cfg) as run:
                await _all_seen(run, expected)
                await run.wait_for(lambda r: r.status.error_codes.get(0x22, 0) >= 3, 10,
                                   "antenna-missing notices")
    _check_reads(run, expected)
    warnings = [r.getMessage() for r in caplog.records if "antenna 3 not connected" in
                r.getMessage()]
    assert len(warnings) == 1, warnings  # first at WARNING, repeats only counted
    assert "antenna_missing" in warnings[0]


async def test_16_port_reader_uses_antenna_group_2(tmp_path: Path) -> None:
    expected = _population(4, 9, (2, 10))
    with sim(tmp_path, "r2000", "--pty", "--ports", "16", "--antennas", "2,10",
             "--tag-antennas", "2,10", "--tags", "4", "--seed", "9") as s:
        for inventory in ("real_time", "fast_switch"):
            cfg = reader_config(driver="r2000", port=s.port, antennas=[2, 10],
                                inventory=inventory)
            async with Run(cfg) as run:
                await _all_seen(run, expected)
            _check_reads(run, expected)


async def test_power_is_written_only_when_it_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2") as s:
        for power, said in [
            (20, "output power set to 20 dBm (was [30, 30, 30, 30])"),
            (20, "output power already 20 dBm"),
            ({1: 25, 3: 18}, "output power set to [25, 20, 18, 20] dBm"),
            ({1: 25, 3: 18}, "output power already [25, 20, 18, 20] dBm"),
        ]:
            caplog.clear()
            cfg = reader_config(driver="r2000", port=s.port, power_dbm=power)
            with caplog.at_level(logging.INFO, logger="agent.readers"):
                async with Run(cfg) as run:
                    await run.wait_reads(2)
            assert any(said in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize("summary", ["v3", "v2.2"])
async def test_summary_versions_end_rounds(tmp_path: Path, summary: str) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--summary", summary) as s:
        for inventory in ("real_time", "fast_switch"):
            cfg = reader_config(driver="r2000", port=s.port, inventory=inventory)
            async with Run(cfg) as run:
                await run.wait_for(lambda r: r.status.rounds >= 5, 10, "5 rounds")
            assert run.status.malformed_frames == 0
            assert {t.epc for t in run.tags} == set(_population(2, 1))


async def test_reader_address_own_and_broadcast(tmp_path: Path) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--address", "0x05") as s:
        for address in (0x05, 0xFF):
            cfg = reader_config(driver="r2000", port=s.port, address=address)
            async with Run(cfg) as run:
                await run.wait_reads(3)
        # Another reader's address: nobody answers, the supervisor keeps retrying.
        cfg = reader_config(driver="r2000", port=s.port, address=0x07, response_timeout_s=0.2)
        async with Run(cfg) as run:
            await run.wait_for(lambda r: r.status.connects >= 2, 10, "retries")
        assert not run.reads
        assert run.status.state == "reconnecting"
        assert "no reply to get_firmware_version (0x72) within 0.20 s" in (
            run.status.last_error or ""
        )


@pytest.mark.parametrize(
    ("code", "name"),
    [(0x11, "command_fail"), (0x22, "antenna_missing"), (0x36, None)],
)
async def test_inventory_error_replies_are_named_counted_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, code: int, name: str | None
) -> None:
    """Errors inside a window: the driver names them, counts them and reads again after."""
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--error-code", hex(code),
             "--error-after", "0", "--error-for", "1.0") as s:
        cfg = reader_config(driver="r2000", port=s.port)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_for(lambda r: r.status.error_codes.get(code, 0) >= 1, 10,
                                   f"error 0x{code:02X}")
                await run.wait_reads(5)
    assert run.status.state == "connected"
    assert run.status.disconnects == 0
    if name is not None:
        assert f"0x{code:02X} {name}" in caplog.text
    else:  # 0x36 no tag: an ordinary empty round, not a warning
        assert "no_tag" not in caplog.text


async def test_line_faults_resync_count_and_keep_delivering(tmp_path: Path) -> None:
    """Garbage bursts, split frames, dropped bytes, bad checksums and the doc's [BAD] vectors."""
    expected = _population(6, 4)
    with sim(tmp_path, "r2000", "--pty", "--tags", "6", "--seed", "4", "--garbage", "0.1",
             "--split", "0.3", "--drop-byte", "0.05", "--bad-checksum", "0.05",
             "--bad-vectors", "0.1", "--read-rate", "400") as s:
        cfg = reader_config(driver="r2000", port=s.port, silence_timeout_s=2.0)
        async with Run(cfg) as run:
            await run.wait_reads(400, timeout_s=30)
            await _all_seen(run, expected)
    stats = run.status.decoder
    assert stats["bad_checksums"] > 0
    assert stats["bytes_discarded"] > 0
    # A dropped byte can shift a frame so that noise passes the 8-bit checksum (1 in 256):
    # allow a trace of invented reads, never a systematic one.
    unknown = [t for t in run.tags if t.epc not in expected]
    assert len(unknown) <= len(run.tags) // 100, unknown
    known = [t for t in run.tags if t.epc in expected]
    assert all(t.antenna == 1 for t in known)


async def test_a_lost_round_end_starts_the_next_round_not_a_reconnect(tmp_path: Path) -> None:
    """Issue 13 item 5: noise that eats a summary frame (here: a dropped byte in 1 frame of 5,
    and noise before half the frames) used to stall the reader for silence_timeout_s and then
    reconnect. Now the next round starts after round_end_timeout_s; nothing is invented."""
    expected = _population(4, 9)
    with sim(tmp_path, "r2000", "--pty", "--tags", "4", "--seed", "9", "--drop-byte", "0.2",
             "--garbage", "0.5", "--read-rate", "200") as s:
        cfg = reader_config(driver="r2000", port=s.port, silence_timeout_s=5.0,
                            round_end_timeout_s=0.2)
        async with Run(cfg) as run:
            await run.wait_for(lambda r: r.status.rounds_unconfirmed >= 3, 30,
                               "three rounds whose end was lost")
            n = len(run.reads)
            await run.wait_reads(n + 20, timeout_s=10)
    assert run.status.disconnects == 0
    assert run.status.connects == 1
    assert run.status.as_dict()["roundsUnconfirmed"] >= 3
    assert [t.epc for t in run.tags if t.epc not in expected] == []


async def test_silent_reader_is_reopened_and_reads_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "2", "--silent-after", "1.0",
             "--silent-for", "1.5") as s:
        cfg = reader_config(driver="r2000", port=s.port, silence_timeout_s=0.5,
                            response_timeout_s=0.3)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_reads(3)
                await run.wait_for(lambda r: r.status.disconnects >= 1, 10, "a silence reset")
                n = len(run.reads)
                await run.wait_reads(n + 5, timeout_s=10)
    assert "sent nothing for 0.5 s during inventory; reconnecting" in caplog.text
    assert run.status.connects >= 2
    assert run.status.state == "connected"


@given(now_s=st.floats(0, 1e7), pause_ms=st.integers(1, 1000))
def test_the_idle_beat_is_a_multiple_of_the_pause_about_one_pause_away(
        now_s: float, pause_ms: int) -> None:
    pause_s = pause_ms / 1000
    beat = idle_beat_s(now_s, pause_s)
    assert 0.5 * pause_s - 1e-6 <= beat - now_s <= 1.5 * pause_s + 1e-6
    assert abs(beat / pause_s - round(beat / pause_s)) < 1e-6
    # Another reader pausing a little later (within the same half pause) wakes with it.
    later = math.floor(now_s / pause_s + 0.5) * pause_s + 0.49 * pause_s
    if later >= now_s:
        assert idle_beat_s(later, pause_s) == pytest.approx(beat)


async def test_idle_readers_ask_on_a_common_beat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After five empty cycles an R2000 pauses idle_pause_ms between cycles, and the pauses
    of every idle reader end on the same beat: their answers come together, and the port pump,
    the port thread and the loop wake once for all of them (issue 12, the idle goal)."""
    sends: dict[int, list[float]] = {}
    real_send = FrameSession.send

    async def send(self: FrameSession[object], data: bytes) -> None:
        if data[3] == a0.Cmd.REAL_TIME_INVENTORY:
            sends.setdefault(id(self.link), []).append(asyncio.get_running_loop().time())
        await real_send(self, data)

    monkeypatch.setattr(FrameSession, "send", send)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with sim(tmp_path / "a", "r2000", "--pty", "--tags", "0") as sa, \
            sim(tmp_path / "b", "r2000", "--pty", "--tags", "0") as sb:
        async with Run(reader_config(driver="r2000", port=sa.port, name="a")):
            await asyncio.sleep(0.04)  # the second reader starts out of step
            async with Run(reader_config(driver="r2000", port=sb.port, name="b")):
                await asyncio.sleep(3.0)
    assert len(sends) == 2
    for times in sends.values():
        late = [t for t in times if t > times[-1] - 1.5]  # well after the five empty cycles
        assert 8 <= len(late) <= 22, f"not paced at about 10 rounds/s: {len(late)} in 1.5 s"
        off_beat = [t for t in late if abs(t / 0.1 - round(t / 0.1)) * 0.1 > 0.02]
        assert len(off_beat) <= len(late) // 5, f"rounds off the 100 ms beat: {off_beat}"
