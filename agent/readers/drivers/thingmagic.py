"""ThingMagic/JADAK Mercury module driver (M6e Nano on the SparkFun board, M6e, M7e).

reader-protocols.md §3. One object per connection attempt (the supervisor makes a fresh one):

* identify(): first recover a module an earlier process left streaming: send stop-reading
  (0x2F option 02) and discard whatever arrives until the line is quiet for ``drain_quiet_s``
  (at most 10x that). Then version (0x03) -- no answer at ``baudrate``: the same at the other
  common rates, and a module found there is switched to ``baudrate`` (0x06). Then boot
  firmware (0x04): a module powers up in its bootloader, where tag commands fail with 0x0101;
  the application answers 0x04 itself with 0x0101, "already running" (the Mercury API's boot
  sequence does the same). Then the version again when the bootloader answered, and the
  temperature (0x72).
* configure(): region (0x97, required: the radio stays off without it), tag protocol Gen2
  (0x93), antenna (0x91: one port, or the search list for several), read filter off (0x9A, so
  every read is reported), Gen2 session and target when configured (0x9B), read power (0x92,
  centi-dBm) when the module reports another value (0x62), then read back. A live settings
  change (antennas, session, target) reconnects, like every driver's, and is then read back
  from the module: antenna ports (0x61), session and target (0x6B), read power (0x62).
* reads(): continuous reading (0x2F wrapping 0x22, METADATA_ALL) streams one 0x22 record per
  read and a keep-alive (status 0x0400) about once a second. A module handles no other command
  while it streams, so power requests and the periodic temperature stop the stream, run, and
  start it again. When reading ends (shutdown, reconnect), stop-reading is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import ThingMagicReaderConfig
from agent.model import TagRead
from agent.readers.codecs import mercury
from agent.readers.control import check_power
from agent.readers.drivers.base import DriverBase, Power, PowerResult, power_text
from agent.readers.link import Link, LinkError, RateLink
from agent.readers.session import FrameSession, ReaderCommandError, ReaderSilent, ReaderTimeout
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a quiet stream looks at queued requests and the temperature timer
STOP_WAIT_S = 1.0  # how long to wait for the stop-reading reply before going on anyway


class ThingMagicReader(DriverBase[ThingMagicReaderConfig]):
    """One connection to one Mercury module."""

    def __init__(
        self,
        cfg: ThingMagicReaderConfig,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        super().__init__(cfg, status, now=now, sync=sync)
        self._decoder = mercury.MercuryDecoder()
        self.session: FrameSession[mercury.MercuryFrame] = FrameSession(link, self._decoder)
        self.version: mercury.VersionInfo | None = None
        self.temperature_c: int | None = None
        self._streaming = False
        self._clock = time.monotonic
        self._next_temperature_s: float | None = None
        self._heard_s = self._clock()
        self._warned: set[int] = set()
        self.drained_frames = 0  # frames discarded while recovering a streaming module

    # -- requests --------------------------------------------------------------------------------

    async def _command(
        self, request: bytes, *, timeout_s: float | None = None
    ) -> mercury.MercuryFrame:
        opcode = request[2]
        wait_s = timeout_s or self.cfg.response_timeout_s
        try:
            try:
                reply = await self.session.request(
                    request, lambda f: f.opcode == opcode, timeout_s=wait_s, on_other=self._stray
                )
            except ReaderTimeout:
                # One reply lost to line noise is no reason to reconnect: every command sent
                # here is idempotent (reads, or settings to the same value), so ask once more.
                self.status.command_retries += 1
                reply = await self.session.request(
                    request, lambda f: f.opcode == opcode, timeout_s=wait_s, on_other=self._stray
                )
        except ReaderTimeout as exc:
            raise ReaderTimeout(
                f"no reply to {_name(opcode)} (0x{opcode:02X}) within {wait_s:.2f} s"
            ) from exc
        self._heard_s = self._clock()
        return reply

    async def _check(self, request: bytes, what: str) -> mercury.MercuryFrame:
        frame = await self._command(request)
        if not frame.ok:
            self.status.note_error(frame.status)
            raise ReaderCommandError(f"{what} refused: {frame.status_text}")
        return frame

    def _stray(self, frame: mercury.MercuryFrame) -> None:
        self.status.stray_frames += 1
        log.debug("reader %s: ignoring frame opcode=0x%02X status=0x%04X while waiting",
                  self.cfg.name, frame.opcode, frame.status)

    # -- connect ---------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Stop a stream an earlier process left running, and discard it until the line is
        quiet; a module that is not streaming answers stop-reading and is quiet at once."""
        cfg = self.cfg
        await self.session.send(mercury.stop_reading())
        start = self._clock()
        deadline = start + 10 * cfg.drain_quiet_s
        resend_s = start + 3 * cfg.drain_quiet_s
        drained = 0
        while self._clock() < deadline:
            try:
                frame = await self.session.next_frame(cfg.drain_quiet_s)
            except ReaderTimeout:
                break
            if frame.opcode == mercury.Opcode.READ_TAG_ID_MULTIPLE:
                drained += 1
            if self._clock() >= resend_s:
                # Still streaming: the stop may have been lost to line noise; say it again.
                resend_s = self._clock() + 3 * cfg.drain_quiet_s
                await self.session.send(mercury.stop_reading())
        self.drained_frames += drained
        if drained:
            log.info("reader %s: the module was still streaming (left by an earlier process); "
                     "stopped it and discarded %d frames", cfg.name, drained)

    async def identify(self) -> str:
        await self._drain()
        version = await self._find_module()
        boot = await self._command(mercury.boot_firmware(), timeout_s=self.cfg.boot_timeout_s)
        booted = boot.ok
        if booted:
            version = await self._version()  # the application's firmware, not the bootloader's
        elif boot.status != mercury.INVALID_OPCODE:  # 0x0101: the application is running
            self.status.note_error(boot.status)
            raise ReaderCommandError(f"boot firmware refused: {boot.status_text}")
        self.version = version
        st = self.status
        st.model = version.model
        st.firmware = version.firmware_text
        st.max_antennas = mercury.MODEL_PORTS.get(version.hardware[0])
        text = (f"ThingMagic {version.model} firmware {version.firmware_text}, hardware "
                f"{version.dotted(version.hardware)}, bootloader "
                f"{version.dotted(version.bootloader)}")
        serial = await self._serial_number()
        if serial:
            text += f", serial {serial}"
        if booted:
            text += " (booted from the bootloader)"
        if await self._read_temperature():
            text += f", {self.temperature_c} °C"
            if self.cfg.temperature_interval_s > 0:
                self._next_temperature_s = self._clock() + self.cfg.temperature_interval_s
        return text

    async def _find_module(self) -> mercury.VersionInfo:
        """Version at ``baudrate``; if the module does not answer there (and ``baud_search``),
        look for it at the other rates and switch it to ``baudrate`` with 0x06."""
        cfg = self.cfg
        link = self.session.link
        try:
            return await self._version()
        except ReaderTimeout as exc:
            if not cfg.baud_search or not isinstance(link, RateLink):
                raise
            first = exc
        tried = [b for b in mercury.SEARCH_BAUDS if b != cfg.baudrate]
        for baud in tried:
            try:
                await link.set_baudrate(baud)
            except LinkError as exc:
                # A rate this adapter cannot do (921600 on some USB-serial chips): skip it.
                log.debug("reader %s: cannot use %d baud: %s", cfg.name, baud, exc)
                continue
            await self._drain()
            try:
                frame = await self.session.request(
                    mercury.get_version(), lambda f: f.opcode == mercury.Opcode.VERSION,
                    timeout_s=min(cfg.response_timeout_s, 0.5), on_other=self._stray)
            except ReaderTimeout:
                continue
            if mercury.parse_version(frame.data) is None:
                continue
            log.info("reader %s: the module answers at %d baud, not %d: switching it to %d "
                     "(0x06)", cfg.name, baud, cfg.baudrate, cfg.baudrate)
            await self._check(mercury.set_baud_rate(cfg.baudrate),
                              f"set baud rate {cfg.baudrate}")
            await link.set_baudrate(cfg.baudrate)  # the module talks at it after its reply
            return await self._version()
        await link.set_baudrate(cfg.baudrate)
        raise ReaderTimeout(f"{first}; no answer at {'/'.join(map(str, tried))} baud either "
                            "(check power and wiring)") from first

    async def _serial_number(self) -> str | None:
        """0x10 flags 0x40, for the log only: asked once, a module without it is no error."""
        try:
            frame = await self.session.request(
                mercury.get_serial_number(), lambda f: f.opcode == mercury.Opcode.HW_VERSION,
                timeout_s=self.cfg.response_timeout_s, on_other=self._stray)
        except ReaderTimeout:
            return None
        return mercury.parse_serial_number(frame.data) if frame.ok else None

    async def _version(self) -> mercury.VersionInfo:
        frame = await self._command(mercury.get_version())
        version = mercury.parse_version(frame.data) if frame.ok else None
        if version is None:
            raise ReaderCommandError(f"unexpected version reply {frame.status_text} "
                                     f"{frame.data.hex(' ')}")
        return version

    async def _read_temperature(self) -> bool:
        """0x72; WARNING when it crosses temperature_warn_c (either way). False: not known."""
        cfg, st = self.cfg, self.status
        frame = await self._command(mercury.get_temperature())
        temp = mercury.parse_temperature(frame.data) if frame.ok else None
        if temp is None:
            log.warning("reader %s: temperature not available: %s", cfg.name, frame.status_text)
            self._next_temperature_s = None
            return False
        self.temperature_c = temp
        st.note_temperature(temp, cfg.temperature_warn_c)
        return True

    async def configure(self) -> None:
        cfg = self.cfg
        await self._check(mercury.set_region(mercury.REGIONS[cfg.region]),
                          f"set region {cfg.region}")
        await self._check(mercury.set_tag_protocol(mercury.GEN2), "set tag protocol Gen2")
        if len(cfg.antennas) == 1:
            await self._check(mercury.set_antenna(cfg.antennas[0]),
                              f"set antenna {cfg.antennas[0]}")
        else:
            await self._check(mercury.set_antenna_search_list(cfg.antennas),
                              f"set antenna search list {cfg.antennas}")
        await self._check(mercury.disable_read_filter(), "disable the read filter")
        if cfg.session is not None:
            await self._check(mercury.set_gen2_session(cfg.session),
                              f"set Gen2 session {cfg.session}")
        if cfg.target is not None:
            await self._check(mercury.set_gen2_target(cfg.target), f"set Gen2 target {cfg.target}")
        if cfg.power_dbm is None:
            with contextlib.suppress(ReaderCommandError):
                self.status.power_reported = (await self._get_power_dbm(),)
        else:
            try:
                await self._apply_power(cfg.power_dbm)
            except ReaderCommandError as exc:
                # A refused power is a configuration problem, not a reason to stop reading.
                self.status.power_error = str(exc)
                log.error("reader %s: %s; reading on with the module's current power",  # noqa: TRY400
                          cfg.name, exc)
        if self.read_back_wanted:
            await self._read_back()

    async def _read_back(self) -> None:
        """What the module reports of the settings a live change asked for: its antenna ports
        (0x61: the TX/RX pair for one port, the search list for several), Gen2 session and
        target (0x6B) and read power (0x62). A value the module does not report (an older
        firmware refusing 0x6B) is None: not confirmed, not contradicted."""
        cfg = self.cfg
        ask = (mercury.get_antenna_ports() if len(cfg.antennas) == 1
               else mercury.get_antenna_search_list())
        frame = await self._command(ask)
        antennas = mercury.parse_antenna_ports(frame.data) if frame.ok else None
        frame = await self._command(mercury.get_gen2_param(mercury.GEN2_SESSION))
        session = mercury.parse_gen2_session(frame.data) if frame.ok else None
        frame = await self._command(mercury.get_gen2_param(mercury.GEN2_TARGET))
        target = mercury.parse_gen2_target(frame.data) if frame.ok else None
        if antennas is None:
            log.warning("reader %s: the module did not report its antenna ports (0x61)",
                        cfg.name)
            return
        self.read_back = {"source": "Mercury 0x61/0x6B", "antennas": antennas,
                          "session": session, "target": target}
        if self.status.power_reported:
            self.read_back["powerDbm"] = self.status.power_reported[0]
        log.info("reader %s: the module reports antennas %s, session %s, target %s", cfg.name,
                 antennas, "?" if session is None else session, target or "?")

    # -- power (configure, and requests between two stream runs) ---------------------------------

    def _check_power(self, power: Power) -> Power:
        return check_power(self.cfg, power)

    async def _get_power_dbm(self) -> int:
        frame = await self._command(mercury.get_read_power())
        centi = mercury.parse_read_power(frame.data) if frame.ok else None
        if centi is None:
            raise ReaderCommandError(f"get read power failed: {frame.status_text}")
        return round(centi / 100)

    async def _apply_power(self, power: Power) -> PowerResult:
        """0x62, then 0x92 only if the module reports something else, then 0x62 again: the
        module must report what was asked."""
        assert isinstance(power, int)  # _check_power folds {port: dBm} to one value
        cfg = self.cfg
        current = await self._get_power_dbm()
        self.status.power_reported = (current,)
        if current == power:
            log.info("reader %s: read power already %s", cfg.name, power_text(power))
            self.status.power_error = None
            return PowerResult((current,), written=False)
        await self._check(mercury.set_read_power(power * 100),
                          f"set read power {power_text(power)}")
        after = await self._get_power_dbm()
        self.status.power_reported = (after,)
        if after != power:
            raise ReaderCommandError(f"set read power {power_text(power)}: the module accepted "
                                     f"it but reports {power_text(after)}")
        self.status.power_error = None
        log.info("reader %s: read power set to %s (was %s)", cfg.name, power_text(power),
                 power_text(current))
        return PowerResult((after,), written=True)

    # -- reading ---------------------------------------------------------------------------------

    def _pause_due(self) -> bool:
        due = self._next_temperature_s
        return bool(self._requests) or (due is not None and self._clock() >= due)

    async def _between_runs(self) -> None:
        await self._apply_requested()
        due = self._next_temperature_s
        if due is not None and self._clock() >= due:
            self._next_temperature_s = self._clock() + self.cfg.temperature_interval_s
            await self._read_temperature()

    async def reads(self) -> AsyncIterator[TagRead]:
        """Continuous reading forever (after identify() and configure())."""
        try:
            while True:
                await self._between_runs()
                await self._check(mercury.start_reading(search_ms=self.cfg.search_ms),
                                  "start continuous reading")
                self._streaming = True
                self.status.rounds += 1
                async for read in self._stream():
                    yield read
                async for read in self._stop():
                    yield read
        finally:
            if self._streaming:
                # Shutdown or a failed link: tell the module to stop, best effort (the next
                # connect drains a module that did not hear it).
                self._streaming = False
                with contextlib.suppress(LinkError, OSError, TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self.session.send(mercury.stop_reading())

    async def _stream(self) -> AsyncIterator[TagRead]:
        """Records until a request or the temperature timer wants the stream paused."""
        cfg = self.cfg
        silence_s = cfg.silence_timeout_s
        while not self._pause_due():
            quiet_s = self._clock() - self._heard_s
            try:
                frame = await self.session.next_frame(max(0.001, min(POLL_S, silence_s - quiet_s)))
            except ReaderTimeout as exc:
                if self._clock() - self._heard_s + 1e-3 >= silence_s:
                    raise ReaderSilent(f"reader {cfg.name} sent nothing for {silence_s:.1f} s "
                                       "during continuous reading") from exc
                continue
            self._heard_s = self._clock()
            read = self._handle(frame)
            if read is not None:
                yield read

    async def _stop(self) -> AsyncIterator[TagRead]:
        """Stop-reading, keeping the reads that arrive before its reply."""
        await self.session.send(mercury.stop_reading())
        deadline = self._clock() + STOP_WAIT_S
        stopped = False
        while not stopped and (remaining := deadline - self._clock()) > 0:
            try:
                frame = await self.session.next_frame(remaining)
            except ReaderTimeout:
                break
            self._heard_s = self._clock()
            if frame.opcode == mercury.Opcode.MULTI_PROTOCOL_TAG_OP:
                stopped = True  # the stop reply
                continue
            read = self._handle(frame)
            if read is not None:
                yield read
        if not stopped:
            log.debug("reader %s: no reply to stop-reading within %.1f s", self.cfg.name,
                      STOP_WAIT_S)
        self._streaming = False

    def _handle(self, frame: mercury.MercuryFrame) -> TagRead | None:
        cfg, st = self.cfg, self.status
        if frame.opcode == mercury.Opcode.MULTI_PROTOCOL_TAG_OP:
            if frame.ok:
                self._stray(frame)
                return None
            # The module ended continuous reading itself: reconnect and set it up again.
            st.note_error(frame.status)
            raise ReaderCommandError(f"continuous reading ended: {frame.status_text}")
        parsed = mercury.parse_stream(frame)
        if isinstance(parsed, mercury.TagRecord):
            st.tag_frames += 1
            return TagRead(
                reader=cfg.name,
                epc=parsed.epc.hex().upper(),
                read_at=self._now(),
                antenna=parsed.antenna,
                rssi_dbm=None if parsed.rssi_dbm is None else float(parsed.rssi_dbm),
                pc=parsed.pc,
                phase=parsed.phase,
                frequency_khz=parsed.frequency_khz,
                clock_synced=self._sync.synced(),
            )
        if isinstance(parsed, mercury.StreamStatus):
            if parsed.keepalive:
                st.rounds += 1  # one search cycle without a tag
                return None
            st.note_error(parsed.status)
            text = f"continuous reading reports {mercury.status_name(parsed.status)}"
            if parsed.status in self._warned:
                log.debug("reader %s: %s", cfg.name, text)
            else:
                self._warned.add(parsed.status)
                log.warning("reader %s: %s (repeats are counted in the status)", cfg.name, text)
            return None
        if frame.opcode == mercury.Opcode.READ_TAG_ID_MULTIPLE:
            st.malformed_frames += 1
            log.debug("reader %s: malformed stream record %s", cfg.name, frame.data.hex(" "))
        else:
            self._stray(frame)
        return None


def _name(opcode: int) -> str:
    return mercury.Opcode(opcode).name.lower() if opcode in mercury.KNOWN_OPCODES else "command"
