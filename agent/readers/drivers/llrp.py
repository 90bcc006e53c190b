"""LLRP fixed-reader driver (Impinj Speedway/R700, Zebra FX7500/FX9600) over TCP.

One object per connection attempt, on the same supervisor as the serial drivers (the link is
pyserial's ``socket://host:port``: one seam for I/O). The codec is agent/readers/codecs/llrp.py.

* identify(): wait for the reader's READER_EVENT_NOTIFICATION with ConnectionAttemptEvent
  (LLRP 1.1 §13.2.6.x: a status other than Success, e.g. "a client-initiated connection already
  exists", is named and retried by the supervisor), then GET_READER_CAPABILITIES: manufacturer,
  model, firmware, antennas, the transmit power table.
* configure(): DELETE_ACCESSSPEC(0) and DELETE_ROSPEC(0) remove what an earlier client left,
  SET_READER_CONFIG sets the keepalive, ADD_ROSPEC (antennas, power mapped to the reader's power
  table: the highest entry not above the request, logged; session, tag population, a report
  every N tags), ENABLE_ROSPEC. Every response's LLRPStatus is checked and named on failure.
* reads(): START_ROSPEC, then RO_ACCESS_REPORT -> one TagRead per TagReportData; KEEPALIVE is
  acknowledged; reader events are logged (antenna connected/disconnected at WARNING). Three
  keepalive periods without any message -> ReaderSilent: the supervisor reconnects with backoff,
  and the next connection configures the reader again.
* Vendor extensions are never required: a reader that refuses CUSTOM_MESSAGE (Zebra) works;
  Impinj's peak RSSI (centi-dBm) is used when a report carries it; ``search_mode`` is sent only
  to an Impinj reader (after IMPINJ_ENABLE_EXTENSIONS), others get a WARNING.
* ``gpi_trigger``: the ROSpec starts when the GPI goes high and stops when it goes low (or after
  ``stop_after_s``); the reader does it, so inventory follows a photo-eye without a round trip.
  GPI and ROSpec events are enabled and logged; the status shows the GPI and the inventory.
* stop (the task is cancelled): STOP_ROSPEC and CLOSE_CONNECTION, bounded by a short timeout,
  so the reader is left idle and free for the next client.

Reads are stamped on the gateway's timeline: the reader's LastSeenTimestampUTC minus its
measured clock offset (agent/readers/readerclock.py), never later than the report's arrival
and never earlier than the report can have been held; the offset is re-measured on every report
and reader event, and steps of the reader's clock are logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import LlrpConfig
from agent.config.schema import LLRP_SEARCH_MODES
from agent.model import TagRead
from agent.readers.codecs import llrp
from agent.readers.codecs.llrp import LlrpMessage, MsgType
from agent.readers.codecs.llrp_params import CONNECTION_STATUS, VENDOR_IMPINJ, TagReport
from agent.readers.control import check_power
from agent.readers.drivers.base import DriverBase, Power, PowerResult, power_text
from agent.readers.link import Link, LinkError, SerialLink
from agent.readers.readerclock import ReaderClock
from agent.readers.session import (
    FrameSession,
    ReaderCommandError,
    ReaderError,
    ReaderSilent,
    ReaderTimeout,
)
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)

ROSPEC_ID = 0x7E1A  # ours; DELETE_ROSPEC(0) at connect removes any other client's
KEEPALIVES_MISSED = 3
CLOCK_WARN_S = 2.0
GOODBYE_TIMEOUT_S = 1.0
EVENT_GPI = 1  # ReaderEventNotificationSpec EventTypes (§13.2.5.1)
EVENT_ROSPEC = 2
PEN_NAMES = {25882: "Impinj", 10642: "Zebra", 161: "Motorola/Zebra", 22695: "ThingMagic"}
_RESPONSE: dict[int, int] = {
    MsgType.GET_READER_CAPABILITIES: MsgType.GET_READER_CAPABILITIES_RESPONSE,
    MsgType.GET_ROSPECS: MsgType.GET_ROSPECS_RESPONSE,
    MsgType.GET_READER_CONFIG: MsgType.GET_READER_CONFIG_RESPONSE,
    MsgType.SET_READER_CONFIG: MsgType.SET_READER_CONFIG_RESPONSE,
    MsgType.ADD_ROSPEC: MsgType.ADD_ROSPEC_RESPONSE,
    MsgType.DELETE_ROSPEC: MsgType.DELETE_ROSPEC_RESPONSE,
    MsgType.START_ROSPEC: MsgType.START_ROSPEC_RESPONSE,
    MsgType.STOP_ROSPEC: MsgType.STOP_ROSPEC_RESPONSE,
    MsgType.ENABLE_ROSPEC: MsgType.ENABLE_ROSPEC_RESPONSE,
    MsgType.DELETE_ACCESSSPEC: MsgType.DELETE_ACCESSSPEC_RESPONSE,
    MsgType.CLOSE_CONNECTION: MsgType.CLOSE_CONNECTION_RESPONSE,
    MsgType.CUSTOM_MESSAGE: MsgType.CUSTOM_MESSAGE,  # a vendor's response is one too
}


def power_index(table: tuple[tuple[int, int], ...], dbm: float) -> tuple[int, float] | None:
    """The highest entry of the TransmitPowerTable (index, dBm*100) not above ``dbm``; if every
    entry is above it, the lowest. None for an empty table."""
    if not table:
        return None
    want = round(dbm * 100)
    below = [(p, i) for i, p in table if p <= want]
    p, i = max(below) if below else min((p, i) for i, p in table)
    return i, p / 100


class LlrpReader(DriverBase[LlrpConfig]):
    def __init__(
        self,
        cfg: LlrpConfig,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        super().__init__(cfg, status, now=now, sync=sync)
        self._decoder = llrp.LlrpDecoder()
        # No idle resync over TCP: a partial message waits for its rest (decoder.resync: no-op).
        self.session: FrameSession[LlrpMessage] = FrameSession(link, self._decoder,
                                                               idle_resync_s=3600.0)
        self._msg_id = 0
        self.capabilities: llrp.Capabilities | None = None
        self._clock_warned = False
        self.antenna_ports: dict[int, bool] = {}  # every port's AntennaConnected, at connect
        self.clock = ReaderClock(ReaderClock.hold_for(cfg.report.every_n_tags,
                                                      cfg.report.timeout_ms))
        self._started = False
        self._indexes: list[int] = []  # the TransmitPower index per antenna of our ROSpec
        # Reports and keepalives that arrived while a request waited for its reply during
        # inventory (a power change): reads() handles them next, so no read is lost.
        self._held: deque[LlrpMessage] = deque()
        self._waiting: asyncio.Timeout | None = None  # reads() waiting for the next message

    # -- plumbing ------------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFFFFFF
        return self._msg_id

    async def _request(self, build: Callable[[int], bytes], what: str) -> LlrpMessage:
        """Send one request, wait for its response (same message id), check its LLRPStatus."""
        msg_id = self._next_id()
        data = build(msg_id)
        mtype = ((data[0] << 8) | data[1]) & 0x3FF
        expected = _RESPONSE.get(mtype)

        def is_reply(m: LlrpMessage) -> bool:
            return m.msg_id == msg_id and m.type in (expected, MsgType.ERROR_MESSAGE)

        try:
            reply = await self.session.request(data, is_reply,
                                               timeout_s=self.cfg.response_timeout_s * 5,
                                               on_other=self._unsolicited)
        except ReaderTimeout as exc:
            raise ReaderTimeout(f"no reply to {what} within "
                                f"{self.cfg.response_timeout_s * 5:.1f} s") from exc
        status = llrp.parse_status(reply, self._decoder.stats)
        if reply.type == MsgType.ERROR_MESSAGE or status is None or not status.ok:
            code = status.code if status is not None else -1
            self.status.note_error(code)
            detail = (f"{status.name}" + (f": {status.description}" if status.description
                                          else "")) if status is not None else "no LLRPStatus"
            raise ReaderCommandError(f"{what} refused by the reader: {detail}")
        return reply

    def _unsolicited(self, msg: LlrpMessage) -> None:
        """Messages that are not the awaited reply while configuring: handled or counted."""
        if self._started and msg.type in (MsgType.RO_ACCESS_REPORT, MsgType.KEEPALIVE):
            self._held.append(msg)  # a live change during inventory: reads() takes them next
            return
        if msg.type == MsgType.KEEPALIVE:
            return  # acknowledged in reads(); during configuration the reader waits for us
        if msg.type == MsgType.READER_EVENT_NOTIFICATION:
            self._reader_event(msg)
            return
        self.status.stray_frames += 1

    def _reader_event(self, msg: LlrpMessage) -> None:
        event = llrp.parse_reader_event(msg, self._decoder.stats)
        if event is None:
            self.status.malformed_frames += 1
            return
        when = self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for a in event.antenna_events:
            was = self.status.antennas.get(a.antenna_id)
            self.status.antennas[a.antenna_id] = a.connected
            log.warning("reader %s: antenna %d %s", self.cfg.name, a.antenna_id,
                        "connected" if a.connected else "DISCONNECTED")
            if not a.connected or was is False:  # a loss, or the end of one
                self.status.raise_alarm({
                    "type": "antenna_connected" if a.connected else "antenna_disconnected",
                    "antenna": a.antenna_id, "detected_at": when,
                    "detail": f"the reader reports antenna {a.antenna_id} "
                              + ("connected again" if a.connected else
                                 "disconnected: no reads from it until it is back")})
        for g in event.gpi_events:
            self.status.gpi[g.port] = g.high
            log.info("reader %s: GPI %d %s", self.cfg.name, g.port, "high" if g.high else "low")
        for r in event.rospec_events:
            if r.rospec_id == ROSPEC_ID and r.event_type in (0, 1):
                self.status.inventory_active = r.event_type == 0
                log.info("reader %s: inventory %s", self.cfg.name,
                         "started" if r.event_type == 0 else "stopped")
        if event.reader_exception:
            log.warning("reader %s: reader exception: %s", self.cfg.name, event.reader_exception)
            self.status.raise_alarm({"type": "reader_exception", "detected_at": when,
                                     "detail": event.reader_exception[:500]})
        if event.connection_closed:
            log.warning("reader %s: the reader is closing the connection", self.cfg.name)
        if event.timestamp_us is not None:
            self._note_clock(event.timestamp_us)

    def _note_clock(self, reader_us: int, now: datetime | None = None) -> None:
        """The reader's clock against ours (reads are stamped on ours): kept in the status, one
        WARNING when it is off by more than CLOCK_WARN_S (a reader without NTP), one per step."""
        step = self.clock.observe(reader_us, now or self._now())
        offset_s = round(self.clock.offset_s or 0.0, 3)
        self.status.reader_clock_offset_s = offset_s
        if step is not None:
            self.status.reader_clock_steps += 1
            log.warning("reader %s: its clock stepped by %+.3f s (now %+.3f s off the "
                        "gateway's); read times stay on the gateway's timeline", self.cfg.name,
                        step.step_s, step.offset_s)
        if abs(offset_s) > CLOCK_WARN_S and not self._clock_warned:
            self._clock_warned = True
            log.warning("reader %s: its clock is %+.1f s off the gateway's; reads are stamped "
                        "with the gateway's clock", self.cfg.name, offset_s)

    # -- connect -------------------------------------------------------------------------------

    async def identify(self) -> str:
        cfg = self.cfg
        # §14: the reader speaks first, with a ConnectionAttemptEvent.
        while True:
            try:
                msg = await self.session.next_frame(cfg.response_timeout_s * 5)
            except ReaderTimeout as exc:
                raise ReaderTimeout(
                    f"no READER_EVENT_NOTIFICATION within {cfg.response_timeout_s * 5:.1f} s "
                    "after connecting: is this an LLRP reader (TCP 5084)?") from exc
            if msg.type != MsgType.READER_EVENT_NOTIFICATION:
                self.status.stray_frames += 1
                continue
            event = llrp.parse_reader_event(msg, self._decoder.stats)
            if event is None or event.connection_attempt is None:
                continue
            if event.timestamp_us is not None:
                self._note_clock(event.timestamp_us)
            if event.connection_attempt != 0:
                name = CONNECTION_STATUS.get(event.connection_attempt, "unknown status")
                hint = (" (another client is connected to the reader: close it, or reboot the "
                        "reader)" if event.connection_attempt in (1, 2) else "")
                raise ReaderCommandError(f"the reader refused the connection: {name}{hint}")
            break
        reply = await self._request(llrp.get_reader_capabilities, "GET_READER_CAPABILITIES")
        caps = llrp.parse_capabilities(reply, self._decoder.stats)
        if caps is None:
            raise ReaderCommandError("GET_READER_CAPABILITIES_RESPONSE could not be decoded")
        self.capabilities = caps
        await self._antenna_states()
        maker = PEN_NAMES.get(caps.manufacturer_pen or -1, f"PEN {caps.manufacturer_pen}")
        self.status.model = f"{maker} model {caps.model}"
        self.status.firmware = caps.firmware or None
        self.status.max_antennas = caps.max_antennas or None
        powers = [p / 100 for _, p in caps.power_table_cdbm]
        power = f", power {min(powers):g}-{max(powers):g} dBm" if powers else ""
        return (f"LLRP reader {maker} model {caps.model}, firmware {caps.firmware or '?'}, "
                f"{caps.max_antennas} antennas{power}")

    async def _antenna_states(self) -> None:
        """Which antennas the reader sees connected now (GET_READER_CONFIG AntennaProperties),
        so status shows them before any AntennaEvent; a reader that refuses: left unknown."""
        try:
            reply = await self._request(lambda i: llrp.get_reader_config(
                i, llrp.REQUESTED_ANTENNA_PROPERTIES), "GET_READER_CONFIG")
        except ReaderCommandError as exc:
            log.info("reader %s: antenna states unknown: %s", self.cfg.name, exc)
            return
        self.antenna_ports = states = llrp.antenna_properties(reply, self._decoder.stats)
        for antenna in self.cfg.antennas:
            if antenna not in states:
                continue
            was = self.status.antennas.get(antenna)
            self.status.antennas[antenna] = states[antenna]
            if not states[antenna] and was is not False:
                log.warning("reader %s: antenna %d is not connected (configured in "
                            "antennas): no reads from it until it is", self.cfg.name, antenna)
                self.status.raise_alarm({
                    "type": "antenna_disconnected", "antenna": antenna,
                    "detected_at": self._now().isoformat(timespec="milliseconds").replace(
                        "+00:00", "Z"),
                    "detail": f"antenna {antenna} is configured but the reader reports it "
                              "not connected: check its cable and port"})

    def _power_indexes(self, power: float | dict[int, float] | dict[int, int] | None = None
                       ) -> list[int]:
        """The TransmitPower index per antenna (cfg.antennas order) for ``power`` (default:
        power_dbm): the highest table entry not above it, logged; 0 leaves the RFTransmitter
        out (the reader's own power) for an antenna without a power, or without a table."""
        cfg = self.cfg
        if power is None:
            power = cfg.power_dbm
        table = self.capabilities.power_table_cdbm if self.capabilities else ()
        if power is None or not table:
            if power is not None:
                log.warning("reader %s: the reader reports no power table; its own power "
                            "setting applies", cfg.name)
            return [0] * len(cfg.antennas)
        wanted = power if isinstance(power, dict) else dict.fromkeys(cfg.antennas, power)
        out: list[int] = []
        chosen: list[str] = []
        for antenna in cfg.antennas:
            dbm = wanted.get(antenna)
            picked = power_index(table, dbm) if dbm is not None else None
            out.append(picked[0] if picked else 0)
            if picked is not None and dbm is not None:
                chosen.append(f"antenna {antenna}: {picked[1]:g} dBm (asked {dbm:g})")
        log.info("reader %s: transmit power from the reader's table: %s", cfg.name,
                 "; ".join(chosen) or "the reader's own for every antenna")
        return out

    def _table_dbm(self, index: int) -> float | None:
        """The dBm of a TransmitPowerTable index (whole dBm as an int); None: not in it."""
        table = dict(self.capabilities.power_table_cdbm) if self.capabilities else {}
        cdbm = table.get(index)
        if cdbm is None:
            return None
        return cdbm // 100 if cdbm % 100 == 0 else cdbm / 100

    def _mode(self) -> int | None:
        """reader_mode (number or name), checked against the reader's UHFC1G2RFModeTable."""
        mode = self.cfg.reader_mode
        if mode is None:
            return None
        caps = self.capabilities
        wanted: int | str = int(mode) if isinstance(mode, str) and mode.isdigit() else mode
        found, why = llrp.find_mode(wanted, caps.rf_modes if caps else (),
                                    caps.manufacturer_pen if caps else None)
        if found is None:
            raise ReaderCommandError(f"{why}: fix readers[].reader_mode")
        if isinstance(wanted, str):
            log.info("reader %s: reader_mode %r is ModeIdentifier %d", self.cfg.name, mode,
                     found)
        return found

    @property
    def impinj(self) -> bool:
        return bool(self.capabilities and self.capabilities.manufacturer_pen == VENDOR_IMPINJ)

    async def _search_mode(self) -> bytes:
        """ImpinjInventorySearchMode for C1G2InventoryCommand, or b"" (not asked; not Impinj;
        the reader refused the Impinj extensions: a WARNING says so)."""
        cfg = self.cfg
        if cfg.search_mode is None:
            return b""
        if not self.impinj:
            log.warning("reader %s: search_mode %s is an Impinj setting; this reader (%s) "
                        "does not take it, so its own search mode applies", cfg.name,
                        cfg.search_mode, self.status.model)
            return b""
        try:
            await self._request(llrp.impinj_enable_extensions, "IMPINJ_ENABLE_EXTENSIONS")
        except ReaderCommandError as exc:
            log.warning("reader %s: search_mode %s not applied: %s", cfg.name, cfg.search_mode,
                        exc)
            return b""
        return llrp.impinj_inventory_search_mode(LLRP_SEARCH_MODES[cfg.search_mode])

    def _gpi(self) -> llrp.GpiTrigger | None:
        trigger = self.cfg.gpi_trigger
        if trigger is None:
            return None
        ports = self.capabilities.gpi_ports if self.capabilities else None
        if ports is not None and trigger.port > ports:
            raise ReaderCommandError(
                f"gpi_trigger.port {trigger.port}: the reader has "
                f"{ports} GPI input(s): fix readers[].gpi_trigger.port")
        stop_ms = round(trigger.stop_after_s * 1000) if trigger.stop_after_s else 0
        return llrp.GpiTrigger(trigger.port, stop_ms)

    async def configure(self) -> None:
        cfg = self.cfg
        try:  # only to say what an earlier client left; a reader may not answer it
            left = llrp.rospec_ids(await self._request(llrp.get_rospecs, "GET_ROSPECS"),
                                   self._decoder.stats)
        except ReaderCommandError:
            left = ()
        if left:
            log.warning("reader %s: removing ROSpec(s) left by an earlier client: %s",
                        cfg.name, ", ".join(str(i) for i in left))
        # ID 0 = all of them (§ DELETE_ROSPEC). Some readers (llrpkit's emulator) answer
        # M_ParameterError when there is none: nothing left behind, not a reason to stop.
        for build, what in ((lambda i: llrp.delete_accessspec(i, 0), "DELETE_ACCESSSPEC"),
                            (lambda i: llrp.delete_rospec(i, 0), "DELETE_ROSPEC")):
            try:
                await self._request(build, what)
            except ReaderCommandError as exc:
                log.info("reader %s: %s (taken as: nothing left by an earlier client)",
                         self.cfg.name, exc)
        keepalive_ms = round(cfg.keepalive_s * 1000)
        gpi = self._gpi()
        # With a GPI trigger: enable that input and hear its edges and the ROSpec's start/stop.
        events = {EVENT_GPI: True, EVENT_ROSPEC: True} if gpi else None
        extra = llrp.gpi_port_current_state(gpi.port) if gpi else b""
        await self._request(lambda i: llrp.set_reader_config(
            i, keepalive_ms=keepalive_ms, events=events, extra=extra), "SET_READER_CONFIG")
        self._mode_index = self._mode()
        self._search = await self._search_mode()
        await self._add_rospec(self._power_indexes())
        await self._request(lambda i: llrp.enable_rospec(i, ROSPEC_ID), "ENABLE_ROSPEC")
        if self.read_back_wanted:
            await self._read_back()
        if gpi:
            self.status.inventory_active = False
            log.info("reader %s: inventory waits for GPI %d to go high%s", cfg.name, gpi.port,
                     f" (stops after {gpi.stop_after_ms / 1000:g} s at most)"
                     if gpi.stop_after_ms else "")

    async def _add_rospec(self, indexes: list[int]) -> None:
        """ADD_ROSPEC of our ROSpec with these TransmitPower indexes (all else from cfg)."""
        cfg = self.cfg
        timeout_ms = cfg.report.timeout_ms or 0
        await self._request(lambda i: llrp.add_rospec(
            i, ROSPEC_ID, cfg.antennas, report_every_n_tags=cfg.report.every_n_tags,
            power_index=indexes, mode_index=self._mode_index, session=cfg.session,
            tag_population=cfg.tag_population, gpi=self._gpi(), aispec_duration_ms=timeout_ms,
            report_trigger=(llrp.REPORT_UPON_N_TAGS_OR_END_OF_AISPEC if timeout_ms
                            else llrp.REPORT_UPON_N_TAGS_OR_END_OF_ROSPEC),
            inventory_custom=self._search), "ADD_ROSPEC")
        self._indexes = indexes

    async def _read_back(self) -> None:
        """GET_ROSPECS: what the reader holds of our ROSpec (antennas, session, RF mode), for
        the confirmation of a settings change; a reader that does not answer: left unknown.
        Only when a change waits for it: against llrpkit's emulator a GET_ROSPECS after
        ENABLE_ROSPEC ended every connection with EOF (cause not investigated), and a plain
        connect must not depend on it."""
        try:
            reply = await self._request(llrp.get_rospecs, "GET_ROSPECS")
        except ReaderCommandError as exc:
            log.info("reader %s: ROSpec not read back: %s", self.cfg.name, exc)
            return
        got = llrp.rospec_settings(reply, ROSPEC_ID, self._decoder.stats)
        if got is None:
            log.warning("reader %s: GET_ROSPECS does not list ROSpec %d just added",
                        self.cfg.name, ROSPEC_ID)
            return
        self.read_back = {"source": "GET_ROSPECS", "antennas": list(got.antennas),
                          "session": got.session, "modeIndex": got.mode_index}
        if got.powers:
            self.status.power_reported = tuple(self._reported_dbm(got))
            self.read_back["powerDbm"] = {str(a): self._table_dbm(i) for a, i in got.powers}
        log.info("reader %s: the reader reports ROSpec %d with antennas %s, session %s",
                 self.cfg.name, ROSPEC_ID, list(got.antennas), got.session)

    def _reported_dbm(self, got: llrp.RospecSettings) -> list[float]:
        """The dBm the reader reports per antenna (cfg.antennas order; those with a power)."""
        by_antenna = dict(got.powers)
        out = []
        for antenna in self.cfg.antennas:
            dbm = self._table_dbm(by_antenna.get(antenna, 0))
            if dbm is not None:
                out.append(dbm)
        return out

    # -- output power at run time (a request, taken between two reports) ----------------------

    def _check_power(self, power: Power) -> Power:
        return check_power(self.cfg, power)

    def _requested(self) -> None:
        scope = self._waiting
        if scope is not None and not scope.expired():
            scope.reschedule(asyncio.get_running_loop().time())

    async def _resume(self, running: bool) -> None:
        """ENABLE (and START) our ROSpec after replacing it. A refusal here would leave the
        reader idle while the connection looks fine, so it is not a refused setting but a
        connection to set up again: ReaderError, the supervisor reconnects (and configure()
        applies the desired power)."""
        try:
            await self._request(lambda i: llrp.enable_rospec(i, ROSPEC_ID), "ENABLE_ROSPEC")
            if running:
                await self._request(lambda i: llrp.start_rospec(i, ROSPEC_ID), "START_ROSPEC")
        except ReaderCommandError as exc:
            raise ReaderError(f"inventory not restarted after replacing the ROSpec: {exc}; "
                              "reconnecting") from exc

    async def _apply_power(self, power: Power) -> PowerResult:
        """LLRP has no "edit ROSpec": the power lives in its AntennaConfigurations, so our
        ROSpec is replaced on the same connection (STOP, DELETE, ADD with the new
        RFTransmitter indexes, GET_ROSPECS to read back what the reader holds, ENABLE,
        START). Reports that arrive meanwhile are held and read next; the connection, the
        identification and the keepalive stay. A refused ADD puts the previous ROSpec back."""
        cfg = self.cfg
        indexes = self._power_indexes(power)
        if not any(indexes):
            raise ReaderCommandError(f"set power {power_text(power)}: the reader reports no "
                                     "transmit power table, so no power can be chosen")
        previous = self._indexes
        running = self._started and cfg.gpi_trigger is None
        if running:
            await self._request(lambda i: llrp.stop_rospec(i, ROSPEC_ID), "STOP_ROSPEC")
        try:
            await self._request(lambda i: llrp.delete_rospec(i, ROSPEC_ID), "DELETE_ROSPEC")
        except ReaderCommandError:
            if running:  # the old ROSpec is still there: reading goes on with it
                await self._request(lambda i: llrp.start_rospec(i, ROSPEC_ID), "START_ROSPEC")
            raise
        try:
            await self._add_rospec(indexes)
        except ReaderCommandError:
            await self._add_rospec(previous)
            await self._resume(running)
            raise
        # Read back before ENABLE: the ROSpec the reader now holds, as it reports it.
        try:
            got = llrp.rospec_settings(await self._request(llrp.get_rospecs, "GET_ROSPECS"),
                                       ROSPEC_ID, self._decoder.stats)
        except ReaderCommandError as exc:
            await self._resume(running)
            raise ReaderCommandError(f"set power {power_text(power)}: sent, but not "
                                     f"confirmed: {exc}") from exc
        await self._resume(running)
        reported = dict(got.powers) if got is not None else {}
        wrong = [f"antenna {a}: index {reported.get(a)} (asked {i})"
                 for a, i in zip(cfg.antennas, indexes, strict=True)
                 if i and reported.get(a) != i]
        if got is None or wrong:
            raise ReaderCommandError(
                f"set power {power_text(power)}: the reader accepted the ROSpec but reports "
                + ("; ".join(wrong) if got is not None else f"no ROSpec {ROSPEC_ID}"))
        dbm = tuple(self._reported_dbm(got))
        self.status.power_reported = dbm
        self.status.power_error = None
        if self.read_back is not None:  # the settings read-back the status shows: now this
            self.read_back["powerDbm"] = {str(a): self._table_dbm(i) for a, i in got.powers}
        log.info("reader %s: transmit power confirmed by GET_ROSPECS: %s (asked %s)", cfg.name,
                 ", ".join(f"antenna {a}: {self._table_dbm(i)} dBm" for a, i in got.powers),
                 power_text(power))
        return PowerResult(dbm, written=True)

    async def _next_message(self, silence_s: float) -> LlrpMessage | None:
        """The next message from the reader; None when a queued request wants its turn."""
        scope = asyncio.timeout(None)
        self._waiting = scope
        try:
            async with scope:
                return await self.session.next_frame(silence_s)
        except TimeoutError:
            if scope.expired():
                return None
            raise
        finally:
            self._waiting = None

    # -- inventory -----------------------------------------------------------------------------

    async def reads(self) -> AsyncIterator[TagRead]:
        cfg = self.cfg
        if cfg.gpi_trigger is None:  # a GPI-triggered ROSpec is started by the reader
            await self._request(lambda i: llrp.start_rospec(i, ROSPEC_ID), "START_ROSPEC")
        self._started = True
        silence_s = cfg.keepalive_s * KEEPALIVES_MISSED
        while True:
            if self._requests:
                await self._apply_requested()
            if self._held:
                msg: LlrpMessage | None = self._held.popleft()
            else:
                try:
                    msg = await self._next_message(silence_s)
                except ReaderTimeout as exc:
                    raise ReaderSilent(f"reader {cfg.name} sent nothing (not even a keepalive) "
                                       f"for {silence_s:.1f} s") from exc
            if msg is None:
                continue
            if msg.type == MsgType.RO_ACCESS_REPORT:
                now = self._now()
                synced = self._sync.synced()
                tags = llrp.parse_ro_access_report(msg, self._decoder.stats)
                newest_us = max((t.last_seen_us for t in tags if t.last_seen_us is not None),
                                default=None)
                if newest_us:  # the offset first, so this report's reads use it
                    self._note_clock(newest_us, now)
                for tag in tags:
                    if not tag.epc:
                        self.status.malformed_frames += 1
                        continue
                    self.status.tag_frames += 1
                    seen_us = tag.last_seen_us if tag.last_seen_us is not None \
                        else tag.first_seen_us
                    rssi: float | None = (tag.impinj_rssi_cdbm / 100
                                          if tag.impinj_rssi_cdbm is not None
                                          else None if tag.rssi_dbm is None
                                          else float(tag.rssi_dbm))
                    yield TagRead(reader=cfg.name, epc=tag.epc.hex().upper(),
                                  read_at=self.clock.stamp(seen_us, now),
                                  antenna=tag.antenna_id, rssi_dbm=rssi, pc=tag.pc,
                                  clock_synced=synced, extra=self._extra(tag))
                self.status.rounds += 1
            elif msg.type == MsgType.KEEPALIVE:
                await self.session.send(llrp.keepalive_ack(msg.msg_id))
            elif msg.type == MsgType.READER_EVENT_NOTIFICATION:
                self._reader_event(msg)
            elif msg.type == MsgType.ERROR_MESSAGE:
                status = llrp.parse_status(msg, self._decoder.stats)
                log.warning("reader %s: ERROR_MESSAGE from the reader: %s", cfg.name,
                            status.name if status is not None else "no status")
            else:
                self.status.stray_frames += 1


    def _extra(self, tag: TagReport) -> tuple[tuple[str, float | int | str], ...]:
        """A read's tea: fields: the reader's clock offset when it is off by more than
        CLOCK_WARN_S (the cloud sees why reader and gateway times differ); Impinj RF phase
        (radians) and Doppler (Hz) when the report carries them."""
        out: list[tuple[str, float | int | str]] = []
        offset_s = self.clock.offset_s
        if offset_s is not None and abs(offset_s) > CLOCK_WARN_S:
            out.append(("tea:readerClockOffsetS", round(offset_s, 3)))
        if tag.impinj_phase_raw is not None:  # 0..4095 over 0..2*pi
            out.append(("tea:rfPhaseRad", round(tag.impinj_phase_raw * math.tau / 4096, 4)))
        if tag.impinj_doppler_raw is not None:  # signed, 1/16 Hz
            out.append(("tea:dopplerHz", round(tag.impinj_doppler_raw / 16, 2)))
        return tuple(out)

    async def goodbye(self) -> None:
        """The agent stops: STOP_ROSPEC (when it was started) and CLOSE_CONNECTION, so the
        reader is idle and free for the next client. Bounded; failures only logged."""
        steps: list[tuple[Callable[[int], bytes], str]] = [
            (llrp.close_connection, "CLOSE_CONNECTION")]
        if self._started:
            steps.insert(0, (lambda i: llrp.stop_rospec(i, ROSPEC_ID), "STOP_ROSPEC"))
        for build, what in steps:
            try:
                async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                    await self._request(build, what)
            except (TimeoutError, ReaderError, LinkError, OSError) as exc:
                log.info("reader %s: %s at stop: %s", self.cfg.name, what,
                         exc or type(exc).__name__)
                return
        log.info("reader %s: %sconnection closed", self.cfg.name,
                 "inventory stopped, " if self._started else "")


async def probe_llrp(host: str, port: int = llrp.PORT, *, timeout_s: float = 2.0) -> str:
    """``edge-agent probe llrp://HOST[:PORT]``: connect, identify, close; one report.

    Raises LinkError (cannot connect), ReaderError (not an LLRP reader, or it refused us:
    another client is connected) with the reason.
    """
    cfg = LlrpConfig.model_validate({"name": "probe", "driver": "llrp", "host": host,
                                     "port": port, "response_timeout_s": timeout_s / 5})
    link = await SerialLink.open(cfg.link_spec, 0)
    try:
        status = ReaderStatus(cfg.name, cfg.driver, cfg.link_spec)
        reader = LlrpReader(cfg, link, status)
        who = await reader.identify()
        caps = reader.capabilities
        ports = reader.antenna_ports
        with contextlib.suppress(ReaderError):
            await reader._request(llrp.close_connection, "CLOSE_CONNECTION")
    finally:
        await link.aclose()
    lines = [f"llrp://{host}:{port}: {who}"]
    if caps is not None:
        powers = [p / 100 for _, p in caps.power_table_cdbm]
        lines.append(f"  antennas: {caps.max_antennas}; transmit power table: "
                     + (f"{len(powers)} entries, {min(powers):g}-{max(powers):g} dBm"
                        if powers else "none reported"))
        if caps.rf_modes:
            lines.append("  RF modes: " + llrp.mode_list(caps.rf_modes, caps.manufacturer_pen))
        if caps.gpi_ports is not None:
            lines.append(f"  GPI inputs: {caps.gpi_ports}")
    if ports:
        lines.append("  antennas connected: " + (", ".join(
            str(a) for a, up in sorted(ports.items()) if up) or "none"))
    return "\n".join(lines)
