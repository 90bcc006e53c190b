"""Chafon / UHFReader18 / UHFReader288 / UR-series reader driver.

reader-protocols.md §2. One object per connection attempt (the supervisor makes a fresh one):

* identify(): Get Reader Information (0x21): firmware, model, band, power, scan time.
* configure(): power (0x2F) and, for UHFReader18, scan time (0x25) -- both are stored in the
  reader's EEPROM, so they are written only when the reader reports another value.
* request_power() (answer mode): queued, applied between two inventory commands: 0x21 for
  the current power, 0x2F only if it differs, 0x21 again to verify. In push mode the reader
  streams on its own and takes commands unreliably: refused as not supported.
* reads(), ``work_mode: answer``: inventory 0x01 per antenna; the reader answers with status 0x03
  frames ("more frames follow") and ends with 0x01 / 0x02 / 0x04 (or 0xFB no tag). UHFReader288
  frames carry the antenna bitmask and an RSSI byte per tag; UHFReader18 frames carry neither.
* reads(), ``work_mode: push``: the reader is in scan mode and pushes ``reCmd 0xEE`` frames on its
  own. When the line is quiet for ``silence_timeout_s`` the driver asks 0x21 once as a
  liveness check; no answer -> ReaderSilent -> the supervisor reopens the port.

Framing has no start byte; the only resync is the 15 ms inter-byte gap rule (§2.2), applied
by FrameSession's idle resync with ``idle_resync_s = inter_byte_gap_ms / 1000``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import ChafonConfig
from agent.model import TagRead
from agent.readers.codecs import chafon
from agent.readers.control import check_power
from agent.readers.drivers.base import (
    DriverBase,
    Power,
    PowerResult,
)
from agent.readers.link import Link
from agent.readers.session import FrameSession, ReaderCommandError, ReaderSilent, ReaderTimeout
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)


class ChafonReader(DriverBase[ChafonConfig]):
    """One connection to one Chafon-family reader."""

    def __init__(
        self,
        cfg: ChafonConfig,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        super().__init__(cfg, status, now=now, sync=sync)
        self.form: chafon.Form = "18" if cfg.protocol == "uhfreader18" else "288"
        # Replies carry the reader's own address even when we talk to broadcast 0xFF (§2.3).
        # The decoder's own gap rule needs timestamps; FrameSession applies it instead.
        self._decoder = chafon.ChafonDecoder(
            None if cfg.address == chafon.BROADCAST else cfg.address, max_gap_s=None
        )
        self.session: FrameSession[chafon.ChafonFrame] = FrameSession(
            link, self._decoder, idle_resync_s=cfg.inter_byte_gap_ms / 1000
        )
        self.info: chafon.ReaderInfo | None = None
        self._early: list[TagRead] = []  # pushes that arrived while we waited for a reply
        self._warned: set[int] = set()

    # -- settings requested by other tasks (applied between inventories) -------------------------

    def _check_power(self, power: Power) -> Power:
        return check_power(self.cfg, power)

    async def _apply_power(self, power: Power) -> PowerResult:
        assert isinstance(power, int)  # check_power made it one value
        return await self._set_power(power, await self._read_power())

    async def _read_power(self) -> int | None:
        """0x21 Get Reader Information: the power the reader reports now."""
        frame = await self._request(
            chafon.get_reader_info(self.cfg.address), chafon.Cmd.GET_READER_INFO
        )
        info = chafon.parse_reader_info(frame)
        if not isinstance(info, chafon.ReaderInfo):
            what = info.description if info is not None else f"short reply {frame.data.hex(' ')}"
            raise ReaderCommandError(f"get reader information failed: {what}")
        self.info = info
        if info.power_dbm is not None:
            self.status.power_reported = (info.power_dbm,)
        return info.power_dbm

    async def _set_power(self, dbm: int, current: int | None) -> PowerResult:
        """0x2F only when the reader reports another value (EEPROM), then 0x21 to verify."""
        cfg = self.cfg
        if current == dbm:
            self.status.power_error = None
            log.info("reader %s: power already %d dBm", cfg.name, dbm)
            return PowerResult((dbm,), written=False)
        frame = await self._request(chafon.set_power(cfg.address, dbm), chafon.Cmd.SET_POWER)
        self._check(frame, f"set power {dbm} dBm")
        after = await self._read_power()
        if after != dbm:
            raise ReaderCommandError(
                f"set power {dbm} dBm: the reader accepted it but reports {after} dBm")
        self.status.power_error = None
        log.info("reader %s: power set to %d dBm (was %s dBm)", cfg.name, dbm, current)
        return PowerResult((dbm,), written=True)

    # -- requests --------------------------------------------------------------------------------

    async def _request(self, command: bytes, cmd: int) -> chafon.ChafonFrame:
        timeout_s = self.cfg.response_timeout_s
        try:
            return await self.session.request(
                command, chafon.is_reply_to(cmd), timeout_s=timeout_s, on_other=self._other
            )
        except ReaderTimeout as exc:
            name = chafon.Cmd(cmd).name.lower() if cmd in set(chafon.Cmd) else "command"
            raise ReaderTimeout(
                f"no reply to {name} (0x{cmd:02X}) within {timeout_s:.2f} s"
            ) from exc

    def _other(self, frame: chafon.ChafonFrame) -> None:
        if frame.cmd == chafon.Cmd.SCAN_PUSH:
            self._early.extend(self._push_reads(frame))  # a read is never thrown away
            return
        self.status.stray_frames += 1
        log.debug("reader %s: ignoring frame reCmd=0x%02X status=0x%02X while waiting",
                  self.cfg.name, frame.cmd, frame.status)

    def _check(self, frame: chafon.ChafonFrame, what: str) -> None:
        reply = chafon.parse_response(frame, form=self.form)
        if isinstance(reply, chafon.ChafonError):
            self.status.note_error(reply.status)
            raise ReaderCommandError(f"{what} refused: {reply.description}")

    # -- connect ---------------------------------------------------------------------------------

    async def identify(self) -> str:
        cfg = self.cfg
        try:
            frame = await self._request(
                chafon.get_reader_info(cfg.address), chafon.Cmd.GET_READER_INFO
            )
        except ReaderTimeout:
            if cfg.work_mode != "push" or not self._early:
                raise
            # Some readers in scan mode ignore commands; their pushes prove they are there.
            log.warning("reader %s: no reply to get reader information (0x21) in push mode; "
                        "reading the pushes anyway", cfg.name)
            self.status.model = cfg.protocol
            return f"{cfg.protocol} in push mode (did not answer 0x21)"
        info = chafon.parse_reader_info(frame)
        if not isinstance(info, chafon.ReaderInfo):
            what = info.description if info is not None else f"short reply {frame.data.hex(' ')}"
            raise ReaderCommandError(f"get reader information failed: {what}")
        self.info = info
        if info.power_dbm is not None:
            self.status.power_reported = (info.power_dbm,)
        self.status.firmware = info.firmware
        self.status.model = info.model
        power = f"{info.power_dbm} dBm" if info.power_dbm is not None else "power unknown"
        return (
            f"{info.model} firmware {info.firmware}, address 0x{info.address:02X}, band "
            f"{info.band_name}, {power}, scan time {info.scan_time_ms} ms"
        )

    async def configure(self) -> None:
        cfg = self.cfg
        info = self.info
        try:
            if cfg.power_dbm is not None and (info is None or info.power_dbm != cfg.power_dbm):
                if cfg.work_mode == "push":  # no read-back: the pushes may hide the reply
                    frame = await self._request(
                        chafon.set_power(cfg.address, cfg.power_dbm), chafon.Cmd.SET_POWER
                    )
                    self._check(frame, f"set power {cfg.power_dbm} dBm")
                    log.info("reader %s: power set to %d dBm", cfg.name, cfg.power_dbm)
                else:
                    await self._set_power(cfg.power_dbm, info.power_dbm if info else None)
            if (
                self.form == "18"
                and cfg.work_mode == "answer"
                and info is not None
                and info.scan_time_ms != cfg.scan_time_ms
            ):
                frame = await self._request(
                    chafon.set_scan_time(cfg.address, max(3, cfg.scan_time_ms // 100)),
                    chafon.Cmd.SET_SCAN_TIME,
                )
                self._check(frame, f"set scan time {cfg.scan_time_ms} ms")
                log.info("reader %s: scan time set to %d ms", cfg.name, cfg.scan_time_ms)
        except ReaderCommandError as exc:
            # A refused setting is a configuration problem, not a reason to stop reading.
            self.status.power_error = str(exc)
            log.error("reader %s: %s; reading on with the reader's settings",  # noqa: TRY400
                      cfg.name, exc)

    # -- reads -----------------------------------------------------------------------------------

    def reads(self) -> AsyncIterator[TagRead]:
        return self._push() if self.cfg.work_mode == "push" else self._answer()

    def _tag_read(self, tag: chafon.ChafonTag, antenna: int | None) -> TagRead:
        return TagRead(
            reader=self.cfg.name,
            epc=tag.epc.hex().upper(),
            read_at=self._now(),
            antenna=antenna,
            # The RSSI byte's unit is not documented; the UR-series readers send dBm + 129
            # like the A0 readers (simulator and captures agree), so the same offset is used.
            rssi_dbm=float(tag.rssi_raw - 129) if tag.rssi_raw is not None else None,
            clock_synced=self._sync.synced(),
        )

    def _push_reads(self, frame: chafon.ChafonFrame) -> list[TagRead]:
        parsed = chafon.parse_scan_push(frame, form=self.form)
        if isinstance(parsed, chafon.ChafonTag):
            self.status.tag_frames += 1
            antenna = parsed.antenna if self.form == "288" else self.cfg.antennas[0]
            return [self._tag_read(parsed, antenna)]
        if isinstance(parsed, chafon.ScanHeartbeat):
            self.status.rounds += 1
            return []
        self.status.malformed_frames += 1
        log.debug("reader %s: malformed push %s", self.cfg.name, frame.data.hex(" "))
        return []

    def _note(self, code: int, text: str) -> None:
        self.status.note_error(code)
        if code in self._warned:
            log.debug("reader %s: %s", self.cfg.name, text)
        else:
            self._warned.add(code)
            log.warning("reader %s: %s (repeats are counted in the status)", self.cfg.name, text)

    async def _answer(self) -> AsyncIterator[TagRead]:
        cfg = self.cfg
        target = 0 if cfg.target == "A" else 1
        if self.form == "18":
            commands = [(cfg.antennas[0], chafon.inventory_18(cfg.address))]
        else:
            commands = [
                (
                    antenna,
                    chafon.inventory_288(
                        cfg.address,
                        q=cfg.q_value,
                        session=cfg.session,
                        target=target,
                        antenna=antenna,
                        scan_time_100ms=cfg.scan_time_ms // 100,
                    ),
                )
                for antenna in cfg.antennas
            ]
        # The reply to one inventory may take the whole scan time, then the frames follow.
        first_s = cfg.scan_time_ms / 1000 + cfg.silence_timeout_s
        while True:
            for antenna, command in commands:
                await self._apply_requested()
                async for read in self._inventory(command, antenna, first_s):
                    yield read

    async def _inventory(
        self, command: bytes, antenna: int, first_s: float
    ) -> AsyncIterator[TagRead]:
        """One 0x01 command: status 0x03 frames, then a final frame (§2.5)."""
        cfg = self.cfg
        await self.session.send(command)
        timeout_s = first_s
        while True:
            try:
                frame = await self.session.next_frame(timeout_s)
            except ReaderTimeout as exc:
                raise ReaderSilent(
                    f"reader {cfg.name} sent nothing for {timeout_s:.1f} s during inventory"
                ) from exc
            timeout_s = cfg.silence_timeout_s
            if frame.cmd == chafon.Cmd.SCAN_PUSH:  # a reader in scan mode after all
                for read in self._push_reads(frame):
                    yield read
                continue
            if frame.cmd != chafon.Cmd.INVENTORY and not (
                frame.cmd == 0x00 and frame.status == chafon.Status.ILLEGAL_COMMAND
            ):
                self._other(frame)
                continue
            parsed = chafon.parse_inventory(frame, form=self.form)
            if isinstance(parsed, chafon.InventoryReply):
                for tag in parsed.tags:
                    self.status.tag_frames += 1
                    yield self._tag_read(tag, tag.antenna if self.form == "288" else antenna)
                if parsed.more:
                    continue
                self.status.rounds += 1
                if parsed.status == chafon.Status.INVENTORY_BUFFER_FULL:
                    self._note(parsed.status, f"inventory: {parsed.description}")
                elif parsed.no_tag:
                    self.status.note_error(parsed.status)
                return
            if isinstance(parsed, chafon.InventoryStatistics):
                continue
            if isinstance(parsed, chafon.ChafonError):
                self._note(parsed.status, f"inventory on antenna {antenna}: {parsed.description}")
                await asyncio.sleep(cfg.response_timeout_s / 2)  # don't spin on a failing reader
                return
            self.status.malformed_frames += 1
            log.debug("reader %s: malformed inventory frame %s", cfg.name, frame.data.hex(" "))

    async def _push(self) -> AsyncIterator[TagRead]:
        cfg = self.cfg
        while True:
            early, self._early = self._early, []
            for read in early:
                yield read
            try:
                frame = await self.session.next_frame(cfg.silence_timeout_s)
            except ReaderTimeout:
                # Quiet: no tag in the field, or a dead reader. Ask it something.
                try:
                    await self._request(
                        chafon.get_reader_info(cfg.address), chafon.Cmd.GET_READER_INFO
                    )
                except ReaderTimeout as exc:
                    raise ReaderSilent(
                        f"reader {cfg.name} pushed nothing for {cfg.silence_timeout_s:.1f} s "
                        "and did not answer get reader information"
                    ) from exc
                continue
            if frame.cmd == chafon.Cmd.SCAN_PUSH:
                for read in self._push_reads(frame):
                    yield read
            else:
                self._other(frame)
