"""LLRP driver against reader-sim llrp over real TCP (issue 11): identify, configure, reads,
keepalives, reconnects, stale ROSpecs, a busy reader."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from readersim.population import generated_tags

from tests.support.reader_support import Run, llrpkit_emulator, reader_config, sim
from tests.support.sim import SimProcess


def _population(count: int, seed: int, antennas: tuple[int, ...]) -> dict[str, int]:
    return {t.epc.hex().upper(): t.antenna
            for t in generated_tags(count, seed=seed, antennas=antennas)}


def _cfg(s: SimProcess, **fields: object) -> object:
    host, port = s.host_port
    fields.setdefault("antennas", [1, 2])
    return reader_config(driver="llrp", host=host, port=port, **fields)


async def test_identifies_configures_and_reads_the_population(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _population(6, 3, (1, 2))
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "6", "--seed", "3",
             "--tag-antennas", "1,2") as s, caplog.at_level(logging.INFO, logger="agent.readers"):
        async with Run(_cfg(s, power_dbm=27.6)) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: {t.epc for t in r.tags} >= set(expected), 15,
                               "every EPC of the population")
    for t in run.tags:
        assert t.epc in expected, t
        assert t.antenna == expected[t.epc]
        assert t.rssi_dbm is not None
        assert -100 < t.rssi_dbm < 0
    assert run.status.state == "connected"
    assert run.status.firmware
    offset = run.status.as_dict()["readerClockOffsetS"]
    assert offset is not None
    assert abs(offset) < 2.0  # the simulator's clock is the gateway's
    assert "transmit power from the reader's table: antenna 1: 27.5 dBm (asked 27.6)" \
        in caplog.text


async def test_a_dropped_connection_reconnects_and_reads_resume(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--drop-after",
             "1.0") as s:
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: r.status.connects >= 2, 15, "a second connection")
            n = len(run.reads)
            await run.wait_reads(n + 5, timeout_s=5)
    assert run.status.disconnects >= 1


async def test_silent_keepalives_reconnect_and_reads_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--silent-after", "1.0",
             "--silent-for", "2.0") as s, caplog.at_level(logging.WARNING, logger="agent.readers"):
        async with Run(_cfg(s, keepalive_s=0.5)) as run:  # type: ignore[arg-type]
            await run.wait_reads(3)
            await run.wait_for(lambda r: r.status.disconnects >= 1, 10, "a silence reset")
            n = len(run.reads)
            await run.wait_reads(n + 5, timeout_s=6)  # back within 3 s of the reader's return
    assert "not even a keepalive" in caplog.text


async def test_a_rospec_left_by_another_client_is_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--stale-rospec") as s, \
            caplog.at_level(logging.WARNING, logger="agent.readers"):
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
            await run.wait_for(lambda r: r.status.connects >= 1, 5, "connected")
    assert "removing ROSpec(s) left by an earlier client: 99" in caplog.text
    assert run.status.disconnects == 0


async def test_a_busy_reader_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--busy") as s, \
            caplog.at_level(logging.WARNING, logger="agent.readers"):
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: r.status.last_error is not None, 10, "the refusal")
    assert "Failed_A_Client_Initiated_Connection_Already_Exists" in str(run.status.last_error)
    assert "another client is connected" in caplog.text


async def test_impinj_flavour_reports_centi_dbm(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--flavour",
             "impinj") as s:
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
    assert "Impinj" in str(run.status.model)
    assert all(t.rssi_dbm is not None for t in run.tags)
    # ImpinjPeakRSSI is in centi-dBm: fractions of a dB, which plain PeakRSSI cannot carry.
    assert any(t.rssi_dbm != int(t.rssi_dbm) for t in run.tags if t.rssi_dbm is not None)


async def test_probe_names_manufacturer_model_firmware_antennas_and_power(
    tmp_path: Path,
) -> None:
    from agent.readers.drivers.llrp import probe_llrp
    from agent.readers.session import ReaderError

    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--flavour", "impinj") as s:
        host, port = s.host_port
        text = await probe_llrp(host, port)
    assert "LLRP reader Impinj" in text
    assert "firmware" in text
    assert "antennas: 4" in text
    assert "10-31.5 dBm" in text
    assert "antennas connected: 1, 2, 3, 4" in text
    assert "RF modes: 0 (max_throughput / fm0_640k)" in text
    assert "GPI inputs: 4" in text
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--busy") as s:
        host, port = s.host_port
        with pytest.raises(ReaderError, match="another client is connected"):
            await probe_llrp(host, port)


async def test_against_llrpkit_s_emulator_a_reader_we_did_not_write(tmp_path: Path) -> None:
    """Issue 11 item 8: the driver against an LLRP implementation of someone else. It found
    one difference: the emulator refuses DELETE_ROSPEC(0) when there is none (now tolerated)."""
    async with llrpkit_emulator(tags=5, seed=4) as port:
        cfg = reader_config(driver="llrp", host="127.0.0.1", port=port, antennas=[1, 2, 3, 4])
        async with Run(cfg) as run:
            await run.wait_reads(20, timeout_s=15)
    assert run.status.state == "connected"
    assert run.status.disconnects == 0
    assert "Impinj" in str(run.status.model)
    assert len({t.epc for t in run.tags}) >= 2
    assert all(t.antenna in (1, 2, 3, 4) and t.rssi_dbm is not None for t in run.tags)


async def test_llrp_over_tls_reads_and_refuses_an_unknown_ca(tmp_path: Path) -> None:
    """Issue 11 item 1: `tls:` means LLRP over TLS (5085 unless port is given); the reader's
    certificate is verified against the CA, and a wrong CA never falls back to plain TCP."""
    from tests.support.tlscerts import make_pki

    pki = make_pki(tmp_path / "pki")
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--tls-cert",
             str(pki.server_cert), "--tls-key", str(pki.server_key)) as s:
        assert s.port.startswith("tls://")
        host, port = s.host_port
        cfg = reader_config(driver="llrp", host=host, port=port, tls={"ca": str(pki.ca)})
        assert cfg.link_spec.startswith("tls://")
        async with Run(cfg) as run:
            await run.wait_reads(5)
        assert run.status.state == "connected"
        wrong = reader_config(driver="llrp", host=host, port=port,
                              tls={"ca": str(pki.other_ca)})
        async with Run(wrong) as bad:
            await bad.wait_for(lambda r: r.status.last_error is not None, 10, "a TLS refusal")
        assert "certificate verify failed" in str(bad.status.last_error)
        assert bad.reads == []


async def test_gpi_trigger_reads_only_while_the_photo_eye_is_blocked(tmp_path: Path) -> None:
    # GPI 1 goes high 1.5 s after the connection, for 1 s of every 3 s.
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--gpi-pulse",
             "1:3:1:1.5", "--log-level", "INFO") as s:
        async with Run(_cfg(s, gpi_trigger={"port": 1, "stop_after_s": 5})) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: r.status.inventory_active is False, 10, "configured")
            assert run.reads == []  # nothing before the GPI goes high
            await run.wait_for(lambda r: r.status.inventory_active is True, 10, "GPI high")
            assert run.status.as_dict()["gpi"] == {"1": "high"}
            await run.wait_reads(3, timeout_s=3)
            await run.wait_for(lambda r: r.status.inventory_active is False, 5, "GPI low")
            assert run.status.as_dict()["gpi"] == {"1": "low"}
            stopped_at = len(run.reads)
            await asyncio.sleep(1.0)  # still low: no reads come
            assert len(run.reads) == stopped_at
            await run.wait_for(lambda r: r.status.inventory_active is True, 5, "GPI high again")
            await run.wait_reads(stopped_at + 3, timeout_s=3)
    log_text = (tmp_path / "sim-llrp.log").read_text()
    assert "start on GPI 1 high, stop on GPI 1 low or after 5000 ms" in log_text


async def test_mode_by_name_search_mode_and_report_timeout_reach_an_impinj_reader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--flavour", "impinj",
             "--log-level", "INFO") as s, caplog.at_level(logging.INFO, logger="agent.readers"):
        async with Run(_cfg(s, reader_mode="AutoSet Dense Reader", search_mode="dual_target",
                            report={"every_n_tags": 50, "timeout_ms": 200})) as run:  # type: ignore[arg-type]
            await run.wait_reads(20)
    log_text = (tmp_path / "sim-llrp.log").read_text()
    assert "report every 50 tag(s) or 200 ms, mode 1000, search mode 2" in log_text
    assert "reader_mode 'AutoSet Dense Reader' is ModeIdentifier 1000" in caplog.text


async def test_a_plain_reader_warns_about_search_mode_and_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3") as s, \
            caplog.at_level(logging.WARNING, logger="agent.readers"):
        async with Run(_cfg(s, search_mode="single_target")) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
    assert "search_mode single_target is an Impinj setting" in caplog.text


async def test_an_unknown_mode_name_is_refused_naming_the_readers_modes(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3") as s:
        async with Run(_cfg(s, reader_mode="autoset_dense_reader")) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: r.status.last_error is not None, 10, "the refusal")
    assert "is not a mode of this reader (it has 1 (fm0_640k), 2 (m2_320k)" in str(
        run.status.last_error)


async def test_stop_leaves_the_reader_idle_and_the_connection_closed(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--log-level",
             "INFO") as s:
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_reads(3)
        log_text = (tmp_path / "sim-llrp.log").read_text()
        for _ in range(20):  # the simulator logs as it answers
            if "CLOSE_CONNECTION" in log_text:
                break
            await asyncio.sleep(0.1)
            log_text = (tmp_path / "sim-llrp.log").read_text()
    assert f"STOP_ROSPEC {0x7E1A}" in log_text
    assert "CLOSE_CONNECTION: closing" in log_text


async def test_a_reader_clock_far_off_still_stamps_reads_on_the_gateways_time(
    tmp_path: Path,
) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--clock-offset",
             "-3600") as s:
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_reads(10)
    now = datetime.now(UTC)
    assert all(abs((t.read_at - now).total_seconds()) < 10 for t in run.tags)
    offset = run.status.as_dict()["readerClockOffsetS"]
    assert -3601 < offset < -3599
    assert run.status.reader_clock_steps == 0
    # Each read says how far off the reader's clock is, so the cloud sees why they differ.
    offsets = [dict(t.extra)["tea:readerClockOffsetS"] for t in run.tags]
    assert all(-3601 < o < -3599 for o in offsets)  # type: ignore[operator]


@pytest.mark.parametrize("step_s", [3600.0, -600.0])
async def test_a_reader_clock_step_mid_session_moves_no_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, step_s: float
) -> None:
    """The reader's clock jumps 1 s into the session: reads stay on the gateway's timeline
    (no read an hour ahead or ten minutes back, so no presence window ends or restarts), the
    step is logged and counted once."""
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--clock-step",
             f"1.0:{step_s}") as s, caplog.at_level(logging.WARNING, logger="agent.readers"):
        async with Run(_cfg(s)) as run:  # type: ignore[arg-type]
            await run.wait_for(lambda r: r.status.reader_clock_steps >= 1, 10, "the step")
            n = len(run.reads)
            await run.wait_reads(n + 20, timeout_s=5)
    now = datetime.now(UTC)
    for t in run.tags:
        assert -10 < (t.read_at - now).total_seconds() <= 0.5, t.read_at
    times = [t.read_at for t in run.tags]
    assert max(abs((b - a).total_seconds()) for a, b in itertools.pairwise(times)) < 1.5
    assert run.status.reader_clock_steps == 1
    m = re.search(r"its clock stepped by ([-+][\d.]+) s", caplog.text)
    assert m, caplog.text
    assert abs(float(m.group(1)) - step_s) < 0.5
