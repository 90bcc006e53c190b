"""The serial link over a real pseudo-terminal: a port that vanishes mid-write is a LinkError
and one INFO line, not an asyncio ERROR with a traceback (seen in the disk-full e2e test)."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from agent.readers.link import Link, LinkError, SerialLink


async def _write_until_it_fails(link: Link) -> None:
    for _ in range(50):
        await link.write(b"\xa0\x04\x01\x89\x01\xd1")
        await asyncio.sleep(0.01)


async def test_a_port_that_vanishes_during_writes_is_a_quiet_link_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    os.close(slave)
    link = await SerialLink.open(port, 115200)
    os.close(master)  # the device is gone: writes now fail with EIO
    with caplog.at_level(logging.INFO), pytest.raises(LinkError):
        await _write_until_it_fails(link)
    await link.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text
    assert "the link closes and reconnects" in caplog.text
