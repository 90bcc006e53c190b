"""R2000 "A0" reader driver: identify, configure, keep a real-time inventory running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import R2000Config
from agent.model import TagRead
from agent.readers.codecs import a0
from agent.readers.link import Link
from agent.readers.session import FrameSession, ReaderCommandError, ReaderSilent, ReaderTimeout
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)


class R2000Reader:
    """One connection to one reader; the supervisor makes a fresh one per connection attempt."""

    def __init__(
        self,
        cfg: R2000Config,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        self.cfg = cfg
        self.status = status
        self._now = now
        self._sync = sync or SyncState()
        # Replies carry the reader's own address even when we talk to broadcast 0xFF (§1.3).
        self._decoder = a0.A0Decoder(None if cfg.address == a0.BROADCAST else cfg.address)
        self.session: FrameSession[a0.A0Frame] = FrameSession(link, self._decoder)
        self.firmware: str | None = None

    async def _command(self, cmd: int, data: bytes = b"") -> a0.A0Frame:
        return await self.session.request(
            a0.encode(self.cfg.address, cmd, data),
            lambda f: f.cmd == cmd,
            timeout_s=self.cfg.response_timeout_s,
            on_other=self._stray,
        )

    def _stray(self, frame: a0.A0Frame) -> None:
        # Leftovers of an inventory started before we (re)connected: harmless, counted.
        self.status.stray_frames += 1
        log.debug("reader %s: ignoring frame cmd=0x%02X while waiting", self.cfg.name, frame.cmd)

    async def identify(self) -> str:
        frame = await self._command(a0.Cmd.GET_FIRMWARE_VERSION)
        if len(frame.data) != 2:
            raise ReaderCommandError(
                f"unexpected firmware-version reply {frame.data.hex(' ')} (expected 2 bytes)"
            )
        self.firmware = f"{frame.data[0]}.{frame.data[1]}"
        return self.firmware

    async def _check(self, cmd: int, data: bytes, what: str) -> None:
        frame = await self._command(cmd, data)
        if frame.data[:1] != bytes((a0.SUCCESS,)):
            code = frame.data[0] if frame.data else -1
            raise ReaderCommandError(f"{what} refused: {a0.error_name(code)}")

    async def reads(self) -> AsyncIterator[TagRead]:
        """Run inventory rounds forever (after identify()), yielding every tag read."""
        antennas = self.cfg.antennas
        multi = len(antennas) > 1 or antennas != [1]
        while True:
            for antenna in antennas:
                if multi:
                    await self._check(a0.Cmd.SET_WORK_ANTENNA, bytes((antenna - 1,)),
                                      f"set work antenna {antenna}")
                async for read in self._round():
                    yield read

    async def _round(self) -> AsyncIterator[TagRead]:
        """One 0x89 command: tag frames until the summary or an error frame (§1.8)."""
        await self.session.send(a0.real_time_inventory(self.cfg.address, self.cfg.inventory_repeat))
        cfg = self.cfg
        while True:
            try:
                frame = await self.session.next_frame(cfg.silence_timeout_s)
            except ReaderTimeout as exc:
                raise ReaderSilent(
                    f"reader {cfg.name} sent nothing for {cfg.silence_timeout_s:.1f} s "
                    "during inventory"
                ) from exc
            if frame.cmd not in a0.INVENTORY_CMDS:
                self._stray(frame)
                continue
            parsed = a0.parse_inventory(frame)
            if isinstance(parsed, a0.TagFrame):
                self.status.tag_frames += 1
                yield TagRead(
                    reader=cfg.name,
                    epc=parsed.epc.hex().upper(),
                    read_at=self._now(),
                    antenna=parsed.antenna,
                    rssi_dbm=float(parsed.rssi_dbm),
                    pc=parsed.pc,
                    phase=parsed.phase,
                    frequency_khz=parsed.frequency_khz,
                    clock_synced=self._sync.synced(),
                )
            elif isinstance(parsed, a0.InventorySummary):
                self.status.rounds += 1
                return
            elif isinstance(parsed, a0.InventoryError):
                self.status.note_error(parsed.code)
                if parsed.code == 0x36:  # no tag in the field: a normal, empty round
                    return
                log.warning("reader %s: inventory error %s", cfg.name, parsed.description)
                await asyncio.sleep(cfg.response_timeout_s / 2)  # don't spin on a failing reader
                return
            elif isinstance(parsed, a0.AntennaMissing):
                self.status.note_error(parsed.code)
                log.warning("reader %s: antenna %d not connected", cfg.name, parsed.antenna)
            else:
                self.status.malformed_frames += 1
