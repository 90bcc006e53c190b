"""Alarms raised by reader drivers reach the buffer as alarm rows (published on .../alarms)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from agent.app import _reader_alarms
from agent.buffer.api import PRIORITY_ALARM
from agent.buffer.sqlite import SqliteBuffer
from agent.readers.status import ReaderStatus
from tests.support.buffer_helpers import make_cfg


async def test_reader_alarms_are_stored_with_alarm_priority(tmp_path: Path) -> None:
    status = ReaderStatus("dock", "llrp", "socket://h:5084")
    status.raise_alarm({"type": "antenna_disconnected", "antenna": 2})
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        task = asyncio.create_task(_reader_alarms({"dock": status}, buf, every_s=0.01),
                                   name="reader-alarms")
        try:
            for _ in range(200):
                claimed = await buf.claim(10, lease_s=5)
                if claimed:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    (row,) = claimed
    assert row.kind == "alarm"
    assert row.priority == PRIORITY_ALARM
    assert json.loads(row.payload) == {"type": "antenna_disconnected", "antenna": 2,
                                       "reader": "dock"}
