"""Chafon driver against reader-sim chafon on a real pseudo-terminal (in-process supervisor)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from readersim.population import generated_tags

from tests.support.reader_support import Run, reader_config, sim


def _population(count: int, seed: int, antennas: tuple[int, ...] = (1,)) -> dict[str, int]:
    return {
        t.epc.hex().upper(): t.antenna
        for t in generated_tags(count, seed=seed, antennas=antennas)
    }


async def _all_seen(run: Run, expected: dict[str, int], timeout_s: float = 15.0) -> None:
    await run.wait_for(lambda r: {t.epc for t in r.tags} >= set(expected), timeout_s,
                       f"all {len(expected)} EPCs")


@pytest.mark.parametrize("per_frame", [1, 3])
async def test_answer_mode_288_two_antennas(tmp_path: Path, per_frame: int) -> None:
    """Status 0x03 chaining (1 or 3 tags per frame), the Ant bitmask and RSSI (§2.5)."""
    expected = _population(6, 2, (1, 2))
    with sim(tmp_path, "chafon", "--pty", "--antennas", "1,2", "--tag-antennas", "1,2",
             "--tags", "6", "--seed", "2", "--tags-per-frame", str(per_frame)) as s:
        cfg = reader_config(driver="chafon", port=s.port, antennas=[1, 2], scan_time_ms=500)
        async with Run(cfg) as run:
            await _all_seen(run, expected)
            await run.wait_for(lambda r: r.status.rounds >= 4, 10, "four inventories")
    for t in run.tags:
        assert t.epc in expected
        assert t.antenna == expected[t.epc]
        assert t.rssi_dbm is not None
        assert -80 <= t.rssi_dbm <= -50
    st = run.status
    assert st.model == "UHFReader288M"
    assert st.firmware == "0.22"
    assert st.malformed_frames == 0


async def test_uhfreader18(tmp_path: Path) -> None:
    expected = _population(4, 6)
    with sim(tmp_path, "chafon", "--pty", "--model", "18", "--tags", "4", "--seed", "6") as s:
        cfg = reader_config(driver="chafon", port=s.port, protocol="uhfreader18")
        async with Run(cfg) as run:
            await _all_seen(run, expected)
    assert run.status.model == "UHFReader18"
    for t in run.tags:
        assert t.epc in expected
        assert t.antenna == 1
        assert t.rssi_dbm is None  # UHFReader18 frames carry no RSSI


@pytest.mark.parametrize("model", ["288", "18"])
async def test_push_mode(tmp_path: Path, model: str) -> None:
    expected = _population(4, 8, (1, 3) if model == "288" else (1,))
    ants = "1,3" if model == "288" else "1"
    with sim(tmp_path, "chafon", "--pty", "--scan-mode", "--model", model, "--antennas", ants,
             "--tag-antennas", ants, "--tags", "4", "--seed", "8") as s:
        cfg = reader_config(driver="chafon", port=s.port, work_mode="push",
                            protocol=f"uhfreader{model}")
        async with Run(cfg) as run:
            await _all_seen(run, expected)
    for t in run.tags:
        assert t.epc in expected
        assert t.antenna == expected[t.epc]


async def test_push_mode_quiet_reader_is_asked_not_dropped(tmp_path: Path) -> None:
    """No tag in the field: the liveness check (0x21) keeps the connection."""
    with sim(tmp_path, "chafon", "--pty", "--scan-mode", "--tags", "0") as s:
        cfg = reader_config(driver="chafon", port=s.port, work_mode="push", silence_timeout_s=0.3)
        async with Run(cfg) as run:
            await run.wait_for(lambda r: r.status.state == "connected", 5, "connected")
            await run.wait_for(lambda r: r.status.decoder["frames"] >= 4, 10, "liveness replies")
    assert run.status.disconnects == 0


async def test_power_is_written_only_when_it_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "chafon", "--pty", "--tags", "2") as s:
        cfg = reader_config(driver="chafon", port=s.port, power_dbm=20)
        for reported, written in ((30, True), (20, False)):  # the reader stores the power
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="agent.readers"):
                async with Run(cfg) as run:
                    await run.wait_reads(2)
            assert f"band eu, {reported} dBm" in caplog.text  # what identify (0x21) reported
            assert ("power set to 20 dBm" in caplog.text) == written


async def test_error_status_is_named_counted_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "chafon", "--pty", "--tags", "2", "--error-code", "0xF8",
             "--error-after", "0", "--error-for", "1.0") as s:
        cfg = reader_config(driver="chafon", port=s.port)
        with caplog.at_level(logging.WARNING, logger="agent.readers"):
            async with Run(cfg) as run:
                await run.wait_for(lambda r: r.status.error_codes.get(0xF8, 0) >= 1, 10, "0xF8")
                await run.wait_reads(5)
    assert "0xF8 antenna_error" in caplog.text
    assert run.status.disconnects == 0


async def test_line_faults_resync_count_and_keep_delivering(tmp_path: Path) -> None:
    """Garbage, split frames, dropped bytes, bad CRCs and the doc's [BAD] vector: the 15 ms gap
    rule and the drop-one-byte rescan recover; CRC-16 lets no corrupted frame through."""
    expected = _population(5, 12)
    with sim(tmp_path, "chafon", "--pty", "--tags", "5", "--seed", "12", "--garbage", "0.1",
             "--split", "0.3", "--drop-byte", "0.05", "--bad-checksum", "0.05",
             "--bad-vectors", "0.1") as s:
        cfg = reader_config(driver="chafon", port=s.port, silence_timeout_s=2.0,
                            scan_time_ms=300)
        async with Run(cfg) as run:
            await run.wait_reads(200, timeout_s=30)
            await _all_seen(run, expected)
    stats = run.status.decoder
    assert stats["bad_checksums"] > 0
    assert stats["bytes_discarded"] > 0
    assert all(t.epc in expected for t in run.tags)


async def test_silent_reader_is_reopened_and_reads_again(tmp_path: Path) -> None:
    with sim(tmp_path, "chafon", "--pty", "--tags", "2", "--silent-after", "1.0",
             "--silent-for", "1.5") as s:
        cfg = reader_config(driver="chafon", port=s.port, silence_timeout_s=0.5,
                            response_timeout_s=0.3, scan_time_ms=200)
        async with Run(cfg) as run:
            await run.wait_reads(3)
            await run.wait_for(lambda r: r.status.disconnects >= 1, 10, "a silence reset")
            n = len(run.reads)
            await run.wait_reads(n + 5, timeout_s=10)
    assert run.status.state == "connected"
