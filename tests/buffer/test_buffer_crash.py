"""Crashes: SIGKILL of a writer process, and simulated power cuts (see powercut_harness.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import make_cfg

pytest.importorskip("apsw", reason="the power-cut VFS needs apsw (pip install apsw)")

from tests.support.powercut_harness import run_cut, run_kill


def test_sigkill_loses_no_acknowledged_row(tmp_path: Path) -> None:
    rng = random.Random(20260501)
    path = tmp_path / "buffer.db"
    total = 0
    for i in range(10):  # the same file, killed again and again at random moments
        result = run_kill(path, seed=i, delay_s=rng.uniform(0.05, 0.6))
        total += result.acked
        assert result.integrity == "ok"
        assert result.lost == [], f"run {i}: acknowledged reads missing: {result.lost[:10]}"
        assert result.resurrected == [], f"run {i}: acked events back: {result.resurrected[:10]}"
    assert total > 0


@pytest.mark.parametrize("synchronous", ["FULL", "EXTRA"])
def test_power_cut_loses_no_acknowledged_row(tmp_path: Path, synchronous: str) -> None:
    lost_unsynced = 0
    for i in range(5):
        path = tmp_path / f"cut-{i}.db"
        result = run_cut(path, synchronous, seed=i, cut_after_s=0.2 + 0.1 * i)
        lost_unsynced += result.unsynced_writes_lost
        assert result.integrity == "ok"
        assert result.acked > 0
        assert result.lost == [], f"cut {i}: acknowledged reads missing: {result.lost[:10]}"
        assert result.resurrected == [], f"cut {i}: acked events back: {result.resurrected[:10]}"
    assert lost_unsynced > 0, "the cuts must land in the middle of unsynced writes"


async def test_buffer_reopens_after_a_power_cut(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    run_cut(path, "FULL", seed=7, cut_after_s=0.3)
    async with await SqliteBuffer.open(make_cfg(tmp_path, path=path)) as buf:
        st = await buf.stats()
        assert st.quarantined_files == 0
        assert st.events_leased == 0  # leases of the dead process were released
        await buf.put_reads([])
