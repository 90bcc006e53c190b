"""R2000 "A0" reader driver: identify, configure, keep an inventory running.

reader-protocols.md §1. One object per connection attempt (the supervisor makes a fresh one):

* identify(): firmware version (0x72), then the temperature (0x7B, logged, kept in the status).
* configure(): output power (0x76, 1 / 4 / 8 bytes) when the reader reports another value
  (0x77 / 0x97) -- the reader saves it to flash, so it is not rewritten on every connect --
  then read back (0x77 / 0x97) to verify; the reported power goes into the status.
* between inventory rounds (never during one: the reader handles one command at a time):
  queued power requests (request_power(), same write-if-different-and-verify as configure),
  and the temperature (0x7B) every ``temperature_interval_s``; above ``temperature_warn_c``
  one WARNING, and one more when it is back below.
* reads(): forever, one of
    real_time    0x89 per antenna (set work antenna 0x74 before each),
    session      0x8B per antenna with session / target (and phase),
    fast_switch  0x8A over all antennas of an antenna group in one command.
  Ports 9-16 of 16-port readers live in antenna group 1 (0x6C); AntID is 0-7 within a group and
  the tag frame's RSSI bit 7 carries antenna bit 2 (codec: parse_inventory).

A reader that stays silent during inventory raises ReaderSilent: the supervisor closes the link,
reopens it and identifies the reader again. The 0x70 reset is never sent: it reboots the module
(and loses its temporary settings); a reopen recovers every state we have seen so far.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import R2000Config
from agent.model import TagRead
from agent.readers.codecs import a0
from agent.readers.control import check_power
from agent.readers.drivers.base import (
    DriverBase,
    Power,
    PowerResult,
    power_text,
)
from agent.readers.link import Link
from agent.readers.session import FrameSession, ReaderCommandError, ReaderSilent, ReaderTimeout
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)

NO_TAG = 0x36
ANTENNA_MISSING = 0x22
GROUP_SIZE = 8  # antennas per antenna group (0x6C)
IDLE_AFTER_CYCLES = 5  # empty inventory cycles before the idle pause applies


def idle_beat_s(now_s: float, pause_s: float) -> float:
    """When an idle pause that starts at ``now_s`` (the event loop's clock) ends: on a beat
    shared by every idle reader of the agent, the multiples of ``pause_s``, between half a pause
    and one and a half pauses away (one pause on average, as before).

    Idle readers that ask at once are answered at once, so the port pump, the port thread and
    the event loop wake once for all of them per beat instead of once for each: four idle
    readers cost about a quarter of the wake-ups (the idle goal, < 1 % of a core;
    docs/benchmarks.md "Footprint").
    """
    return (math.floor(now_s / pause_s + 0.5) + 1) * pause_s


class R2000Reader(DriverBase[R2000Config]):
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
        super().__init__(cfg, status, now=now, sync=sync)
        # Replies carry the reader's own address even when we talk to broadcast 0xFF (§1.3);
        # identify() then learns it, so noise for another address is refused from there on.
        self._antennas = frozenset(cfg.antennas)
        self._decoder = a0.A0Decoder(
            None if cfg.address == a0.BROADCAST else cfg.address, accept=self._plausible
        )
        self.session: FrameSession[a0.A0Frame] = FrameSession(link, self._decoder)
        self.firmware: str | None = None
        self.temperature_c: int | None = None
        # Host-side state of the reader; None = unknown (never assumed after a reconnect).
        self._group: int | None = None
        self._work_antenna: int | None = None
        self._warned: set[tuple[int, int]] = set()  # (code, antenna) already logged at WARNING
        self._tags_this_cycle = 0
        self._empty_cycles = 0
        self._clock = time.monotonic
        self._next_temperature_s: float | None = None  # None: not read periodically
        self._heard_s = self._clock()  # when the reader last sent a frame
        self._fasttid_warned = False

    def _plausible(self, frame: a0.A0Frame) -> bool:
        # Checked inside the decoder: a refused frame costs one byte, not the frames behind it.
        ok = a0.plausible(frame, phase=self.cfg.phase, antennas=self._antennas,
                          antenna_group=self._group or 0)
        if not ok and not self._fasttid_warned and self._looks_like_fasttid(frame):
            self._fasttid_warned = True
            log.warning("reader %s: tag frames are longer than their PC word says (FastTID "
                        "on in the reader's flash?); they are refused as implausible: turn "
                        "FastTID off with the vendor tool", self.cfg.name)
        return ok

    def _looks_like_fasttid(self, frame: a0.A0Frame) -> bool:
        """An inventory reply with a valid checksum, our address and an EPC of the PC's length
        followed by more (CRC + TID): what a reader with FastTID on sends (§1.6)."""
        data = frame.data
        n = len(data)
        if frame.cmd not in a0.INVENTORY_CMDS or n < 6 or n % 2:
            return False
        words = data[1] >> 3
        return words > 0 and n >= 4 + 2 * words + 2 * self.cfg.phase + 4

    # -- settings requested by other tasks (applied between rounds) ------------------------------

    def _check_power(self, power: Power) -> Power:
        return check_power(self.cfg, power)

    async def _between_rounds(self) -> None:
        await self._apply_requested()
        if self._next_temperature_s is not None and self._clock() >= self._next_temperature_s:
            self._next_temperature_s = self._clock() + self.cfg.temperature_interval_s
            await self._read_temperature()

    # -- requests --------------------------------------------------------------------------------

    async def _command(self, cmd: int, data: bytes = b"") -> a0.A0Frame:
        timeout_s = self.cfg.response_timeout_s
        request = a0.encode(self.cfg.address, cmd, data)
        try:
            try:
                reply = await self.session.request(
                    request, lambda f: f.cmd == cmd, timeout_s=timeout_s, on_other=self._stray
                )
            except ReaderTimeout:
                # One reply lost to line noise is no reason to reconnect: every command we
                # send is idempotent (reads, or settings to the same value), so ask once more.
                self.status.command_retries += 1
                log.debug("reader %s: no reply to 0x%02X, asking again", self.cfg.name, cmd)
                reply = await self.session.request(
                    request, lambda f: f.cmd == cmd, timeout_s=timeout_s, on_other=self._stray
                )
        except ReaderTimeout as exc:
            name = a0.Cmd(cmd).name.lower() if cmd in set(a0.Cmd) else "command"
            raise ReaderTimeout(
                f"no reply to {name} (0x{cmd:02X}) within {timeout_s:.2f} s"
            ) from exc
        self._heard_s = self._clock()
        return reply

    def _stray(self, frame: a0.A0Frame) -> None:
        # Leftovers of an inventory started before we (re)connected: harmless, counted.
        self.status.stray_frames += 1
        log.debug("reader %s: ignoring frame cmd=0x%02X while waiting", self.cfg.name, frame.cmd)

    async def _check(self, cmd: int, data: bytes, what: str) -> None:
        frame = await self._command(cmd, data)
        if frame.data[:1] != bytes((a0.SUCCESS,)):
            code = frame.data[0] if frame.data else -1
            if code >= 0:
                self.status.note_error(code)
            raise ReaderCommandError(f"{what} refused: {a0.error_name(code)}")

    # -- connect ---------------------------------------------------------------------------------

    async def identify(self) -> str:
        frame = await self._command(a0.Cmd.GET_FIRMWARE_VERSION)
        if len(frame.data) != 2:
            raise ReaderCommandError(
                f"unexpected firmware-version reply {frame.data.hex(' ')} (expected 2 bytes)"
            )
        self.firmware = f"{frame.data[0]}.{frame.data[1]}"
        # From here on only the reader's own address: half the noise that passes a checksum
        # names broadcast 0xFF.
        self._decoder.address = frame.address
        self._decoder.exact = True
        self.status.firmware = self.firmware
        self.status.model = "R2000"
        text = f"R2000 firmware {self.firmware}, address 0x{frame.address:02X}"
        try:
            temp = await self._command(a0.Cmd.GET_READER_TEMPERATURE)
        except ReaderTimeout:
            log.warning("reader %s: no reply to get_reader_temperature (0x7B)", self.cfg.name)
            return text  # not asked again on this connection
        if self._note_temperature(temp):
            text += f", {self.temperature_c} °C"
            if self.cfg.temperature_interval_s > 0:
                self._next_temperature_s = self._clock() + self.cfg.temperature_interval_s
        return text

    async def _read_temperature(self) -> None:
        if not self._note_temperature(await self._command(a0.Cmd.GET_READER_TEMPERATURE)):
            self._next_temperature_s = None  # an error code: stop asking on this connection

    def _note_temperature(self, frame: a0.A0Frame) -> bool:
        """Keep the 0x7B reading; WARNING when it crosses temperature_warn_c (either way)."""
        cfg, st = self.cfg, self.status
        temp = a0.parse_temperature(frame.data)
        if temp is None:
            code = frame.data[0] if frame.data else -1
            log.warning("reader %s: temperature not available: %s", cfg.name, a0.error_name(code))
            return False
        self.temperature_c = temp
        st.note_temperature(temp, cfg.temperature_warn_c)
        return True

    async def configure(self) -> None:
        power = self.cfg.power_dbm
        if power is None:
            try:  # only for the status: a reader that cannot tell is no reason to reconnect
                self.status.power_reported = tuple(await self._get_power(self._ports(None)))
            except (ReaderTimeout, ReaderCommandError) as exc:
                log.debug("reader %s: output power unknown: %s", self.cfg.name, exc)
            return
        try:
            await self._apply_power(power)
        except ReaderCommandError as exc:
            # A refused power setting is a configuration problem, not a reason to stop reading.
            self.status.power_error = str(exc)
            log.error("reader %s: %s; reading on with the reader's current power",  # noqa: TRY400
                      self.cfg.name, exc)

    async def _get_power(self, ports: int) -> list[int]:
        """Current power per port: 0x77 (1 byte = all equal, or 4 bytes), 0x97 for 8 ports."""
        if ports == 8:
            frame = await self._command(a0.Cmd.GET_OUTPUT_POWER_EIGHT)
            if len(frame.data) != 8:
                code = frame.data[0] if frame.data else -1
                raise ReaderCommandError(
                    f"get_output_power_eight (0x97) failed: {a0.error_name(code)}"
                )
            return list(frame.data)
        frame = await self._command(a0.Cmd.GET_OUTPUT_POWER)
        if len(frame.data) == 1:
            return [frame.data[0]] * 4
        if len(frame.data) in (4, 8):
            return list(frame.data[:4])
        raise ReaderCommandError(f"unexpected get_output_power reply {frame.data.hex(' ')}")

    def _ports(self, power: Power | None) -> int:
        wide = max(self.cfg.antennas) > 4 or (isinstance(power, dict) and max(power) > 4)
        return 8 if wide else 4

    async def _apply_power(self, power: Power) -> PowerResult:
        """0x77/0x97, then 0x76 only if the reader reports something else (it writes its
        flash), then 0x77/0x97 again: the reader must report what was asked (§1.5)."""
        cfg = self.cfg
        ports = self._ports(power)
        current = await self._get_power(ports)
        self.status.power_reported = tuple(current)
        if isinstance(power, int):
            wanted = [power]
            expected = [power] * ports
        else:
            expected = list(current)
            for port, dbm in power.items():
                expected[port - 1] = dbm
            wanted = expected
        if current == expected:
            log.info("reader %s: output power already %s", cfg.name,
                     power_text(power if isinstance(power, int) else wanted))
            self.status.power_error = None
            return PowerResult(tuple(current), written=False)
        await self._check(a0.Cmd.SET_OUTPUT_POWER, bytes(wanted),
                          f"set output power {power_text(wanted if len(wanted) > 1 else power)}")
        after = await self._get_power(ports)
        self.status.power_reported = tuple(after)
        if after != expected:
            raise ReaderCommandError(
                f"set output power {power_text(power)}: the reader accepted it but reports "
                f"{power_text(after)}")
        self.status.power_error = None
        log.info("reader %s: output power set to %s (was %s)", cfg.name,
                 power_text(wanted[0] if len(wanted) == 1 else wanted), current)
        return PowerResult(tuple(after), written=True)

    async def _select_group(self, group: int) -> None:
        """0x6C antenna group (16-port readers). Ports 1-8 only: never sent (4/8-port readers
        do not know the command), group 0 is assumed."""
        if self._group == group:
            return
        if group == 0 and max(self.cfg.antennas) <= GROUP_SIZE:
            self._group = 0
            return
        await self._check(a0.Cmd.SET_ANTENNA_GROUP, bytes((group,)), f"set antenna group {group}")
        self._group = group
        self._work_antenna = None

    async def _select_antenna(self, antenna: int) -> None:
        await self._select_group((antenna - 1) // GROUP_SIZE)
        ant_id = (antenna - 1) % GROUP_SIZE
        if self._work_antenna == ant_id:
            return
        await self._check(a0.Cmd.SET_WORK_ANTENNA, bytes((ant_id,)), f"set work antenna {antenna}")
        self._work_antenna = ant_id

    # -- inventory -------------------------------------------------------------------------------

    async def reads(self) -> AsyncIterator[TagRead]:
        """Run inventory rounds forever (after identify()), yielding every tag read."""
        cfg = self.cfg
        addr = cfg.address
        target = 0 if cfg.target == "A" else 1
        if cfg.inventory == "fast_switch":
            groups: dict[int, list[int]] = {}
            for antenna in cfg.antennas:
                groups.setdefault((antenna - 1) // GROUP_SIZE, []).append(antenna)
            commands = {
                group: a0.fast_switch_inventory(
                    addr,
                    [((a - 1) % GROUP_SIZE, cfg.fast_switch_stay) for a in ants],
                    interval_ms=cfg.fast_switch_interval_ms,
                    repeat=cfg.inventory_repeat,
                    session=cfg.session if cfg.phase else None,
                    target=target,
                    phase=cfg.phase,
                )
                for group, ants in groups.items()
            }
            while True:
                for group, command in commands.items():
                    await self._between_rounds()
                    await self._select_group(group)
                    async for read in self._round(command, group):
                        yield read
                await self._idle_pause()
        if cfg.inventory == "session":
            command = a0.session_inventory(
                addr, cfg.session, target, cfg.inventory_repeat,
                phase=True if cfg.phase else None,
            )
        else:
            command = a0.real_time_inventory(addr, cfg.inventory_repeat)
        while True:
            for antenna in cfg.antennas:
                await self._between_rounds()
                await self._select_antenna(antenna)
                async for read in self._round(command, (antenna - 1) // GROUP_SIZE):
                    yield read
            await self._idle_pause()

    async def _idle_pause(self) -> None:
        """After a few full cycles without a tag, pause briefly between cycles.

        An empty field otherwise costs a command/summary exchange per round, dozens per second
        per reader, for nothing. The first tag read ends the pause at once (the counter resets
        in _round), and a tag stays in a UHF field far longer than the pause.
        """
        if self._tags_this_cycle:
            self._empty_cycles = 0
        else:
            self._empty_cycles += 1
        self._tags_this_cycle = 0
        pause_s = self.cfg.idle_pause_ms / 1000
        if pause_s > 0 and self._empty_cycles >= IDLE_AFTER_CYCLES:
            loop = asyncio.get_running_loop()
            now_s = loop.time()
            await asyncio.sleep(idle_beat_s(now_s, pause_s) - now_s)

    def _note(self, code: int, antenna: int | None, text: str) -> None:
        """Count a reported error; log the first of each kind at WARNING, repeats at DEBUG."""
        self.status.note_error(code)
        key = (code, antenna or 0)
        if key in self._warned:
            log.debug("reader %s: %s", self.cfg.name, text)
        else:
            self._warned.add(key)
            log.warning("reader %s: %s (repeats are counted in the status)", self.cfg.name, text)

    async def _round(self, command: bytes, group: int) -> AsyncIterator[TagRead]:
        """One inventory command: tag frames until the summary or an error frame (§1.8)."""
        cfg = self.cfg
        await self.session.send(command)
        cmd = command[3]
        silence_s = cfg.silence_timeout_s
        while True:
            quiet_s = self._clock() - self._heard_s
            wait_s = max(0.001, min(cfg.round_end_timeout_s, silence_s - quiet_s))
            try:
                frame = self.session.frame_nowait() or await self.session.next_frame(wait_s)
            except ReaderTimeout as exc:
                if self._clock() - self._heard_s + 1e-3 >= silence_s:
                    raise ReaderSilent(
                        f"reader {cfg.name} sent nothing for {silence_s:.1f} s during inventory"
                    ) from exc
                # The reader is alive but this round's end never came: start the next one.
                self.status.rounds_unconfirmed += 1
                log.debug("reader %s: no end of round within %.2f s; next round", cfg.name,
                          cfg.round_end_timeout_s)
                return
            self._heard_s = self._clock()
            if frame.cmd != cmd:
                self._stray(frame)
                continue
            parsed = a0.parse_inventory(frame, antenna_group=group, phase=cfg.phase)
            if isinstance(parsed, a0.TagFrame):
                self.status.tag_frames += 1
                self._tags_this_cycle += 1
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
                if parsed.code == NO_TAG:  # no tag in the field: a normal, empty round
                    self.status.note_error(parsed.code)
                    return
                antenna = (self._work_antenna or 0) + 1 + GROUP_SIZE * group
                where = f" on antenna {antenna}" if cmd != a0.Cmd.FAST_SWITCH_ANT_INVENTORY else ""
                self._note(parsed.code, antenna, f"inventory error{where}: {parsed.description}")
                await asyncio.sleep(cfg.response_timeout_s / 2)  # don't spin on a failing reader
                return
            elif isinstance(parsed, a0.AntennaMissing):
                antenna = parsed.antenna + GROUP_SIZE * group
                self._note(parsed.code, antenna,
                           f"antenna {antenna} not connected: {a0.error_name(parsed.code)}")
            else:
                self.status.malformed_frames += 1
                log.debug("reader %s: malformed inventory frame %s", cfg.name, frame.data.hex(" "))
