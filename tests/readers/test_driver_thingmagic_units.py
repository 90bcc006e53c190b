"""ThingMagic driver pieces against a scripted link (no simulator): exact bytes both ways."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.config import ThingMagicReaderConfig
from agent.readers.codecs import mercury
from agent.readers.drivers.thingmagic import ThingMagicReader
from agent.readers.link import LinkBase
from agent.readers.status import ReaderStatus
from tests.support.reader_support import reader_config

EPC = bytes.fromhex("30 14 02 76 6c 00 00 40 00 00 00 01")


class ScriptedLink(LinkBase):
    """Hands out ``pending`` chunks, then whatever ``reply`` returns for each write."""

    def __init__(self, pending: list[bytes], reply: dict[bytes, bytes] | None = None) -> None:
        self.written: list[bytes] = []
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        for chunk in pending:
            self._queue.put_nowait(chunk)
        self._reply = reply or {}

    async def read(self) -> bytes:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        if data in self._reply:
            self._queue.put_nowait(self._reply[data])

    async def aclose(self) -> None:
        return None


def _reader(link: ScriptedLink, **fields: object) -> ThingMagicReader:
    cfg = reader_config(driver="thingmagic", port="/dev/null", region="EU3", **fields)
    assert isinstance(cfg, ThingMagicReaderConfig)
    return ThingMagicReader(cfg, link, ReaderStatus("r1", "thingmagic", "/dev/null"))


async def test_drain_sends_stop_first_and_discards_the_left_over_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [mercury.encode_tag_record(EPC, pc=0x3000) for _ in range(5)]
    stop_reply = mercury.encode_reply(0x2F, 0, bytes.fromhex("00 00 02"))
    link = ScriptedLink([b"".join(records[:3]), records[3][:7]],
                        {mercury.stop_reading(): records[3][7:] + records[4] + stop_reply})
    reader = _reader(link, drain_quiet_s=0.05)
    with caplog.at_level(logging.INFO, logger="agent.readers"):
        await reader._drain()
    assert link.written[0] == bytes.fromhex("ff 03 2f 00 00 02 5e 86")  # §3 stop vector
    assert reader.drained_frames == 5
    assert "the module was still streaming (left by an earlier process); stopped it and " \
           "discarded 5 frames" in caplog.text


async def test_drain_of_a_quiet_module_is_quick_and_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop_reply = mercury.encode_reply(0x2F, 0, bytes.fromhex("00 00 02"))
    link = ScriptedLink([], {mercury.stop_reading(): stop_reply})
    reader = _reader(link, drain_quiet_s=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with caplog.at_level(logging.INFO, logger="agent.readers"):
        await reader._drain()
    assert loop.time() - start < 0.3
    assert reader.drained_frames == 0
    assert "still streaming" not in caplog.text


async def test_drain_repeats_stop_while_records_keep_coming() -> None:
    """A stop lost to noise: the module keeps streaming, so the stop is sent again."""
    record = mercury.encode_tag_record(EPC, pc=0x3000)

    class Streaming(ScriptedLink):
        async def read(self) -> bytes:
            await asyncio.sleep(0.01)
            return record

    link = Streaming([])
    # a quiet gap of 0.2 s never comes (a record every 10 ms), even on a loaded machine
    reader = _reader(link, drain_quiet_s=0.2)
    await reader._drain()  # bounded: 10 x drain_quiet_s
    assert link.written.count(mercury.stop_reading()) >= 2
    assert reader.drained_frames > 10


async def test_stream_record_becomes_a_tag_read() -> None:
    reader = _reader(ScriptedLink([]))
    frame = mercury.MercuryDecoder().feed(
        mercury.encode_tag_record(EPC, pc=0x3000, antenna=1, rssi_dbm=-58,
                                  frequency_khz=866_300, phase=45))[0]
    read = reader._handle(frame)
    assert read is not None
    assert (read.reader, read.epc, read.antenna, read.rssi_dbm, read.pc, read.phase,
            read.frequency_khz) == ("r1", EPC.hex().upper(), 1, -58.0, 0x3000, 45, 866_300)
    assert reader.status.tag_frames == 1
    assert reader._handle(mercury.MercuryFrame(0x22, 0x0400, b"")) is None  # keep-alive
    assert reader.status.rounds == 1
