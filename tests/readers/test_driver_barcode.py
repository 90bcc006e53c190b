"""Barcode driver against reader-sim barcode on a real pseudo-terminal (in-process supervisor)."""

from __future__ import annotations

from pathlib import Path

import pytest
from readersim.barcode import DEFAULT_SCANS

from agent.model import BarcodeRead
from tests.support.reader_support import Run, reader_config, sim

EXPECTED = {(s.aim, s.data) for s in DEFAULT_SCANS}


def _scans(run: Run) -> list[BarcodeRead]:
    return [r for r in run.reads if isinstance(r, BarcodeRead)]


@pytest.mark.parametrize(
    ("sim_terminator", "terminator", "idle_flush_ms"),
    [("crlf", "CRLF", None), ("cr", "CR", 80.0), ("none", "none", 80.0)],
    ids=["crlf-only", "cr+idle", "timeout-framing"],
)
async def test_scans_arrive_raw_with_aim_and_gs(
    tmp_path: Path, sim_terminator: str, terminator: str, idle_flush_ms: float | None
) -> None:
    with sim(tmp_path, "barcode", "--pty", "--terminator", sim_terminator,
             "--interval", "0.25", "--baud", "115200") as s:
        cfg = reader_config(driver="barcode", port=s.port, terminator=terminator,
                            idle_flush_ms=idle_flush_ms, baudrate=115200)
        async with Run(cfg) as run:
            await run.wait_reads(len(DEFAULT_SCANS), timeout_s=15)
    scans = _scans(run)
    got = {(r.symbology, r.data) for r in scans}
    assert got == EXPECTED  # every code, AIM split off, GS (0x1D) kept, nothing else
    assert any(b"\x1d" in r.data for r in scans)
    assert all(r.reader == "r1" and r.read_at.tzinfo is not None for r in scans)
    assert run.status.model == "barcode scanner"


async def test_without_aim(tmp_path: Path) -> None:
    with sim(tmp_path, "barcode", "--pty", "--no-aim", "--interval", "0.2") as s:
        cfg = reader_config(driver="barcode", port=s.port, terminator="CRLF", aim=False)
        async with Run(cfg) as run:
            await run.wait_reads(len(DEFAULT_SCANS), timeout_s=15)
    assert {r.data for r in _scans(run)} == {s.data for s in DEFAULT_SCANS}
    assert all(r.symbology is None for r in _scans(run))


async def test_quiet_scanner_is_not_reset(tmp_path: Path) -> None:
    with sim(tmp_path, "barcode", "--pty", "--interval", "1.5") as s:
        cfg = reader_config(driver="barcode", port=s.port, terminator="CRLF")
        async with Run(cfg) as run:
            await run.wait_reads(2, timeout_s=10)
    assert run.status.connects == 1
    assert run.status.disconnects == 0
