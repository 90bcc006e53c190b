"""LLRP 1.0.1 fixed reader (Impinj Speedway / Zebra FX style): a pure, clock-driven device.

One device per TCP connection (``server.serve_tcp``). On connect it sends a
READER_EVENT_NOTIFICATION (ConnectionAttemptEvent); every request is answered with its
response (same message id); ADD / ENABLE / START_ROSPEC start an inventory that sends
RO_ACCESS_REPORTs at the configured read rate over the tag population; a KeepaliveSpec in
SET_READER_CONFIG makes it send KEEPALIVE every period. Unknown messages get an ERROR_MESSAGE
(M_UnsupportedMessage). CLOSE_CONNECTION, ``drop_after_s`` and ``busy`` end the connection:
the device only says when (:meth:`LLRPDevice.hangup_due_s`), the server closes the socket.

Wire encoding: :mod:`readersim.llrp_wire`.
"""

from __future__ import annotations

import logging
import math
import random
import struct
from dataclasses import dataclass
from typing import Literal

from readersim import llrp_wire as w
from readersim.device import Clock, Emission, Job, ScheduledDevice
from readersim.faults import DeviceFaults
from readersim.population import Population, TagSpec

Flavour = Literal["plain", "impinj"]
log = logging.getLogger(__name__)

STALE_ROSPEC_ID = 99
MAX_REPORT_RATE_PER_S = 20_000.0  # "unlimited" read rate: the radio's ceiling
TCP_BAUD = 100_000_000  # the server paces writes by baud; a LAN is not a serial line
CATCH_UP_S = 0.25  # reports later than this are not made up for
MAX_QUEUED_REQUESTS = 1024  # a client may pipeline requests; a real reader drops none

# ROSpec CurrentState.
DISABLED = 0
INACTIVE = 1
ACTIVE = 2

PEN_ZEBRA = 161  # Motorola / Zebra
MODEL_IMPINJ_R420 = 2001002
MODEL_ZEBRA_FX9600 = 9600


@dataclass(frozen=True, slots=True, kw_only=True)
class LLRPConfig:
    flavour: Flavour = "plain"
    ports: int = 4  # MaxNumberOfAntennaSupported
    connected_antennas: frozenset[int] = frozenset({1, 2, 3, 4})
    read_rate_per_s: float = 200.0  # tag reads/s while an ROSpec is active; inf = ceiling
    rssi_jitter_db: float = 2.0
    channels: int = 50  # ChannelIndex 1..channels (FCC hop table)
    firmware: str = "5.14.0.240"
    baud: int = TCP_BAUD  # paces the server's writes
    utc_at_epoch_s: float = 1_800_000_000.0  # wall time (UTC) at the clock's epoch
    reply_latency_s: float = 0.0
    # Faults (all off by default).
    drop_after_s: float | None = None  # close the connection this long after it opened
    stale_rospec: bool = False  # ROSpec 99 already exists at connect
    refuse_custom: bool = False  # CUSTOM_MESSAGE -> ERROR_MESSAGE 109 even when impinj
    busy: bool = False  # ConnectionAttemptEvent status 2, then close
    # GPI input ``port`` goes high ``first_s`` after the connection, for ``high_s`` of every
    # ``period_s`` (a photo-eye at a dock door): (port, period_s, high_s, first_s).
    gpi_pulse: tuple[int, float, float, float] | None = None
    gpis: int = 4  # GPIOCapabilities NumGPIs
    # Antenna ``antenna`` is unplugged ``at_s`` after the connection for ``for_s``: an
    # AntennaEvent (disconnected, then connected) and no reads from it meanwhile.
    antenna_down: tuple[int, float, float] | None = None
    # The reader's clock steps by ``step_s`` ``at_s`` after the connection (NTP on the reader
    # catching up, or a technician setting it): (at_s, step_s).
    clock_step: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.flavour not in ("plain", "impinj"):
            raise ValueError("flavour must be plain or impinj")
        if not 1 <= self.ports <= 0xFFFF:
            raise ValueError("ports must be 1..65535")
        bad = [a for a in self.connected_antennas if not 1 <= a <= self.ports]
        if bad:
            raise ValueError(f"antennas {sorted(bad)} do not exist on a {self.ports}-port reader")
        if self.read_rate_per_s < 0:
            raise ValueError("read rate must be >= 0")
        if self.channels < 1:
            raise ValueError("channels must be >= 1")
        if self.gpi_pulse is not None:
            port, period_s, high_s, first_s = self.gpi_pulse
            if not 1 <= port <= self.gpis:
                raise ValueError(f"GPI {port} does not exist on a reader with {self.gpis} GPIs")
            if not 0 < high_s < period_s or first_s < 0:
                raise ValueError("GPI pulse: need 0 < high_s < period_s and first_s >= 0")

    @property
    def accepts_custom(self) -> bool:
        return self.flavour == "impinj" and not self.refuse_custom

    @property
    def report_rate_per_s(self) -> float:
        rate = self.read_rate_per_s
        if rate == 0 or not math.isfinite(rate):
            return MAX_REPORT_RATE_PER_S
        return min(rate, MAX_REPORT_RATE_PER_S)


@dataclass(slots=True)
class ROSpecEntry:
    info: w.ROSpecInfo
    state: int = DISABLED
    stop_s: float | None = None  # ROSpecStopTrigger duration: when the active ROSpec ends


@dataclass(slots=True)
class LLRPStats:
    keepalives_sent: int = 0
    keepalive_acks: int = 0
    reports_sent: int = 0
    tag_reads: int = 0
    errors_sent: int = 0
    gpi_edges: int = 0
    gpi_starts: int = 0  # ROSpecs started by a GPI going high


class LLRPDevice(ScheduledDevice):
    """A simulated LLRP reader, one client connection."""

    def __init__(
        self,
        config: LLRPConfig,
        population: Population,
        *,
        clock: Clock,
        rng: random.Random,
        faults: DeviceFaults | None = None,
        epoch_s: float | None = None,
    ) -> None:
        super().__init__(
            clock=clock,
            rng=rng,
            baud=config.baud,
            faults=faults,
            epoch_s=epoch_s,
            max_queued_commands=MAX_QUEUED_REQUESTS,
        )
        self.config = config
        self.population = population
        self.connected_s = clock()
        self.llrp_stats = LLRPStats()
        self.rospecs: dict[int, ROSpecEntry] = {}
        if config.stale_rospec:
            stale = w.parse_rospec(w.Param(w.P_ROSPEC, w.rospec(STALE_ROSPEC_ID)[4:]))
            self.rospecs[STALE_ROSPEC_ID] = ROSpecEntry(stale, INACTIVE)
        self.keepalive_period_s: float | None = None
        self.events_enabled = True
        self._buf = bytearray()
        self._next_id = 1
        self._hello_pending = True
        self._hangup_s: float | None = None
        if config.drop_after_s is not None:
            self._hangup_s = self.connected_s + config.drop_after_s
        self._keepalive_s: float | None = None  # due time of the next KEEPALIVE
        self._report_s: float | None = None  # due time of the next RO_ACCESS_REPORT
        self._cursor = 0  # rotation through the visible tags
        self.gpi_high: dict[int, bool] = {}
        self.event_states: dict[int, bool] = {}  # ReaderEventNotificationSpec, by EventType
        self.last_rospec: w.ROSpecInfo | None = None  # the last one added (tests read it)
        self._gpi_edge_s: float | None = None
        self.antennas_down: set[int] = set()
        self._antenna_s: float | None = None  # due time of the next antenna change
        if config.antenna_down is not None:
            self._antenna_s = self.connected_s + config.antenna_down[1]
        if config.gpi_pulse is not None:
            self.gpi_high[config.gpi_pulse[0]] = False
            self._gpi_edge_s = self.connected_s + config.gpi_pulse[3]

    # -- connection ----------------------------------------------------------------------------

    def hangup_due_s(self) -> float | None:
        """Clock time at which the server should close the connection (None = keep it)."""
        return self._hangup_s

    def _hang_up(self, t_s: float) -> None:
        self._hangup_s = t_s if self._hangup_s is None else min(self._hangup_s, t_s)
        self._report_s = None
        self._keepalive_s = None
        for entry in self.rospecs.values():
            entry.stop_s = None

    def _msg_id(self) -> int:
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return msg_id

    def utc_us(self, t_s: float) -> int:
        """Sim clock time -> LLRP UTC timestamp (microseconds since the Unix epoch)."""
        step = self.config.clock_step
        stepped = step[1] if step is not None and t_s >= self.connected_s + step[0] else 0.0
        return round((self.config.utc_at_epoch_s + self.world_s(t_s) + stepped) * 1_000_000)

    # -- input ---------------------------------------------------------------------------------

    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        if self._hangup_s is not None and now_s >= self._hangup_s:
            return []
        self._buf += data
        messages, dropped = w.split_messages(self._buf)
        self.stats.bytes_discarded += dropped
        return [w.message(m.type, m.id, m.body, version=m.version) for m in messages]

    def _on_abort(self) -> None:
        self._buf.clear()

    # -- the schedule: connection event, keepalives, reports -----------------------------------

    def next_due_s(self) -> float | None:
        due = super().next_due_s()
        now = self._clock()
        if self._silent(now) or self._hello_pending:
            return due
        if self._hangup_s is not None and now >= self._hangup_s:
            return None  # the connection is over: nothing more will be sent
        own = [t for t in (self._keepalive_s, self._report_s, self._gpi_edge_s,
                           self._antenna_s) if t is not None]
        own += [e.stop_s for e in self.rospecs.values() if e.stop_s is not None]
        if due is not None:
            own.append(due)
        return min(own) if own else None

    def _auto_job(self, t0_s: float) -> Job | None:
        if self._hello_pending:
            self._hello_pending = False
            return self._hello(t0_s)
        if self._hangup_s is not None and t0_s >= self._hangup_s:
            return None
        if self._keepalive_s is not None and self.keepalive_period_s is not None:
            if self._keepalive_s < t0_s - self.keepalive_period_s:  # after a silence
                self._keepalive_s = t0_s
            if self._keepalive_s <= t0_s:
                due = self._keepalive_s
                self._keepalive_s = due + self.keepalive_period_s
                self.llrp_stats.keepalives_sent += 1
                return iter([Emission(due, w.message(w.KEEPALIVE, self._msg_id()))])
        if self._gpi_edge_s is not None and self._gpi_edge_s <= t0_s:
            return self._gpi_edge(self._gpi_edge_s)
        if self._antenna_s is not None and self._antenna_s <= t0_s:
            return self._antenna_change(self._antenna_s)
        ended = self._end_timed_rospecs(t0_s)
        if ended is not None:
            return ended
        if self._report_s is not None and self._report_s <= t0_s:
            return self._report(t0_s)
        return None

    def _end_timed_rospecs(self, t0_s: float) -> Job | None:
        """ROSpecStopTrigger duration (or a GPI stop trigger's timeout): the ROSpec goes back
        to inactive when it is over (a ROSpecEvent when enabled)."""
        ended: list[tuple[float, int]] = []
        for entry in self.rospecs.values():
            if entry.stop_s is not None and entry.stop_s <= t0_s:
                if entry.state == ACTIVE:
                    entry.state = INACTIVE
                    ended.append((entry.stop_s, entry.info.rospec_id))
                entry.stop_s = None
        if not ended:
            return None
        self._schedule(t0_s)
        if not self.event_states.get(2):
            return None
        return iter([Emission(t, w.rospec_event(self._msg_id(), self.utc_us(t), rid, False))
                     for t, rid in ended])

    def _antenna_change(self, t_s: float) -> Job:
        assert self.config.antenna_down is not None
        antenna, _at, for_s = self.config.antenna_down
        down = antenna not in self.antennas_down
        if down:
            self.antennas_down.add(antenna)
            self._antenna_s = t_s + for_s
        else:
            self.antennas_down.discard(antenna)
            self._antenna_s = None
        log.info("antenna %d %s", antenna, "unplugged" if down else "plugged in again")
        if self.event_states.get(8, True):  # AntennaEvent notifications: on unless disabled
            frame = w.antenna_event(self._msg_id(), self.utc_us(t_s), antenna, not down)
            return iter([Emission(t_s, frame)])
        return iter(())

    def _gpi_edge(self, t_s: float) -> Job:
        """The pulsed GPI changes: GPIEvent (when enabled), then ROSpecs with a GPI trigger on
        that port start (high) or stop (low), with ROSpecEvents (when enabled)."""
        assert self.config.gpi_pulse is not None
        port, period_s, high_s, _first = self.config.gpi_pulse
        high = not self.gpi_high.get(port, False)
        self.gpi_high[port] = high
        self._gpi_edge_s = t_s + (high_s if high else period_s - high_s)
        self.llrp_stats.gpi_edges += 1
        out: list[Emission] = []
        us = self.utc_us(t_s)
        if self.event_states.get(1):
            out.append(Emission(t_s, w.gpi_event(self._msg_id(), us, port, high)))
        for entry in self.rospecs.values():
            info = entry.info
            if high and entry.state == INACTIVE and info.start_gpi == port:
                entry.state = ACTIVE
                timeout_ms = info.stop_gpi_timeout_ms if info.stop_gpi is not None else 0
                entry.stop_s = t_s + timeout_ms / 1000 if timeout_ms else None
                self.llrp_stats.gpi_starts += 1
                if self.event_states.get(2):
                    out.append(Emission(t_s, w.rospec_event(self._msg_id(), us,
                                                            info.rospec_id, True)))
            elif not high and entry.state == ACTIVE and info.stop_gpi == port:
                entry.state = INACTIVE
                entry.stop_s = None
                if self.event_states.get(2):
                    out.append(Emission(t_s, w.rospec_event(self._msg_id(), us,
                                                            info.rospec_id, False)))
        self._schedule(t_s)
        return iter(out)

    def _hello(self, t0_s: float) -> Job:
        status = w.CONN_FAILED_CLIENT_CONNECTION_EXISTS if self.config.busy else w.CONN_SUCCESS
        yield Emission(t0_s, w.connection_event(self._msg_id(), self.utc_us(t0_s), status))
        if self.config.busy:
            self._hang_up(t0_s)

    def _active(self) -> ROSpecEntry | None:
        active = [e for e in self.rospecs.values() if e.state == ACTIVE]
        return min(active, key=lambda e: e.info.priority) if active else None

    def _antennas(self, entry: ROSpecEntry) -> list[int]:
        wanted = entry.info.antennas
        if 0 in wanted:
            return sorted(self.config.connected_antennas - self.antennas_down)
        return [a for a in wanted
                if a in self.config.connected_antennas and a not in self.antennas_down]

    def _visible(self, entry: ROSpecEntry, t_s: float) -> list[TagSpec]:
        world = self.world_s(t_s)
        return [tag for ant in self._antennas(entry) for tag in self.population.visible(world, ant)]

    def _report(self, t0_s: float) -> Job | None:
        entry = self._active()
        start = self._report_s
        if entry is None or start is None:
            self._report_s = None
            return None
        rate = self.config.report_rate_per_s
        n = self._per_report(entry)
        period = n / rate
        if start < t0_s - CATCH_UP_S:  # after a silence or a stall: no burst of catch-up
            start = t0_s
        self._report_s = start + period
        tags = self._visible(entry, start)
        if not tags:
            return None
        reads = [self._tag_read(tags, start - period + (i + 1) / rate) for i in range(n)]
        self.llrp_stats.reports_sent += 1
        self.llrp_stats.tag_reads += len(reads)
        return iter([Emission(start, w.ro_access_report(self._msg_id(), reads))])

    def _tag_read(self, tags: list[TagSpec], t_s: float) -> w.TagRead:
        tag = tags[self._cursor % len(tags)]
        self._cursor += 1
        jitter = self.config.rssi_jitter_db
        dbm = tag.rssi_dbm + (self._rng.uniform(-jitter, jitter) if jitter else 0.0)
        us = self.utc_us(t_s)
        return w.TagRead(
            epc=tag.epc,
            antenna=tag.antenna,
            rssi_dbm=round(dbm),
            channel=self._rng.randint(1, self.config.channels),
            first_us=us,
            last_us=us,
            impinj_rssi_cdbm=round(dbm * 100) if self.config.flavour == "impinj" else None,
        )

    # -- requests ------------------------------------------------------------------------------

    def _start(self, command: bytes, t0_s: float) -> Job:
        msg = w.parse_message(command)
        t = t0_s + self.config.reply_latency_s
        if msg.version != w.VERSION:
            self.llrp_stats.errors_sent += 1
            text = f"unsupported version {msg.version}: this reader speaks LLRP 1.0.1 only"
            return iter([Emission(t, w.error_message(msg.id, w.M_UNSUPPORTED_VERSION, text))])
        try:
            frame = self._answer(msg, t)
        except (w.WireError, struct.error) as exc:
            code = w.M_PARAMETER_ERROR
            rtype = w.RESPONSE_OF.get(msg.type)
            text = f"malformed message: {exc}"
            frame = w.response(rtype, msg.id, code, text) if rtype else w.error_message(msg.id)
        if frame is None:
            return iter(())
        if msg.type == w.CLOSE_CONNECTION:
            log.info("CLOSE_CONNECTION: closing")
            self._hang_up(t)
        if w.parse_message(frame).type == w.ERROR_MESSAGE:
            self.llrp_stats.errors_sent += 1
        return iter([Emission(t, frame)])

    def _answer(self, msg: w.Message, t_s: float) -> bytes | None:
        mid = msg.id
        mtype = msg.type
        if mtype == w.GET_READER_CAPABILITIES:
            return w.message(
                w.GET_READER_CAPABILITIES_RESPONSE, mid, w.llrp_status() + self._capabilities()
            )
        if mtype == w.GET_READER_CONFIG:
            return w.message(w.GET_READER_CONFIG_RESPONSE, mid, w.llrp_status() + self._config())
        if mtype == w.SET_READER_CONFIG:
            return self._set_config(msg, t_s)
        if mtype in (w.ADD_ROSPEC, w.GET_ROSPECS) or mtype in _ROSPEC_OPS:
            return self._rospec_request(msg, t_s)
        if mtype == w.CLOSE_CONNECTION:
            return w.response(w.CLOSE_CONNECTION_RESPONSE, mid)
        if mtype in (
            w.ADD_ACCESSSPEC,
            w.DELETE_ACCESSSPEC,
            w.ENABLE_ACCESSSPEC,
            w.DISABLE_ACCESSSPEC,
        ):
            return w.response(w.RESPONSE_OF[mtype], mid)
        if mtype == w.GET_ACCESSSPECS:
            return w.response(w.GET_ACCESSSPECS_RESPONSE, mid)
        if mtype == w.KEEPALIVE_ACK:
            self.llrp_stats.keepalive_acks += 1
            return None
        if mtype == w.ENABLE_EVENTS_AND_REPORTS:
            self.events_enabled = True
            return None
        if mtype == w.GET_REPORT:
            return None  # reports go out as they happen: nothing is held back
        if mtype == w.CUSTOM_MESSAGE:
            return self._custom(msg)
        return w.error_message(mid, w.M_UNSUPPORTED_MESSAGE, f"unsupported message type {mtype}")

    def _capabilities(self) -> bytes:
        cfg = self.config
        impinj = cfg.flavour == "impinj"
        return w.capabilities_body(
            antennas=cfg.ports,
            manufacturer=w.VENDOR_IMPINJ if impinj else PEN_ZEBRA,
            model=MODEL_IMPINJ_R420 if impinj else MODEL_ZEBRA_FX9600,
            firmware=cfg.firmware,
            gpis=cfg.gpis,
            modes=w.IMPINJ_MODES if impinj else w.PLAIN_MODES,
        )

    def _config(self) -> bytes:
        ident = w.tlv(w.P_IDENTIFICATION, w.u8(0) + w.u16(6) + bytes.fromhex("0016250a0b0c"))
        period = self.keepalive_period_s
        spec = w.keepalive_spec(period is not None, round((period or 0.0) * 1000))
        # AntennaProperties (221): AntennaConnected, AntennaID, AntennaGain (dBi * 100).
        ident += b"".join(
            w.tlv(221, w.u8(0x80 if a in self.config.connected_antennas
                          and a not in self.antennas_down else 0) + w.u16(a) + w.s16(600))
            for a in range(1, self.config.ports + 1))
        return ident + spec

    def _set_config(self, msg: w.Message, t_s: float) -> bytes:
        if not msg.body:
            raise w.WireError("SET_READER_CONFIG without its flags byte")
        events = w.find(msg.body[1:], w.P_READER_EVENT_NOTIFICATION_SPEC)
        if events is not None:
            for state in w.iter_params(events.body):
                if state.type == w.P_EVENT_NOTIFICATION_STATE and len(state.body) >= 3:
                    event_type, on = struct.unpack_from(">HB", state.body)
                    self.event_states[event_type] = bool(on & 0x80)
        spec = w.find(msg.body[1:], w.P_KEEPALIVE_SPEC)
        if spec is not None:
            if len(spec.body) < 5:
                raise w.WireError("KeepaliveSpec too short")
            kind, period_ms = struct.unpack_from(">BI", spec.body)
            if kind == 1 and period_ms > 0:
                self.keepalive_period_s = period_ms / 1000
                self._keepalive_s = t_s + self.keepalive_period_s
            else:
                self.keepalive_period_s = None
                self._keepalive_s = None
        return w.response(w.SET_READER_CONFIG_RESPONSE, msg.id)

    def _custom(self, msg: w.Message) -> bytes:
        if not self.config.accepts_custom:
            return w.error_message(msg.id, w.M_UNSUPPORTED_MESSAGE, "custom messages unsupported")
        if len(msg.body) < 5:
            raise w.WireError("CUSTOM_MESSAGE too short")
        vendor, subtype = struct.unpack_from(">IB", msg.body)
        if vendor != w.VENDOR_IMPINJ:
            return w.error_message(msg.id, w.M_UNSUPPORTED_MESSAGE, f"unknown vendor {vendor}")
        if subtype == w.IMPINJ_ENABLE_EXTENSIONS:  # Impinj answers 21 with subtype 22
            subtype = w.IMPINJ_ENABLE_EXTENSIONS_RESPONSE
        body = w.u32(vendor) + w.u8(subtype) + w.llrp_status()
        return w.message(w.CUSTOM_MESSAGE, msg.id, body)

    # -- ROSpecs -------------------------------------------------------------------------------

    def _rospec_request(self, msg: w.Message, t_s: float) -> bytes:
        mid = msg.id
        rtype = w.RESPONSE_OF[msg.type]
        if msg.type == w.GET_ROSPECS:
            specs = b"".join(self._echo(e) for e in self.rospecs.values())
            return w.message(w.GET_ROSPECS_RESPONSE, mid, w.llrp_status() + specs)
        if msg.type == w.ADD_ROSPEC:
            param = w.find(msg.body, w.P_ROSPEC)
            if param is None:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR, "no ROSpec")
            info = w.parse_rospec(param)
            modes = {m for m, _, _ in (w.IMPINJ_MODES if self.config.flavour == "impinj"
                                        else w.PLAIN_MODES)}
            if info.mode_id is not None and info.mode_id not in modes:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR,
                                  f"ModeIndex {info.mode_id} is not in the RF mode table")
            if info.search_mode is not None and not self.config.accepts_custom:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR,
                                  "unsupported Custom parameter (ImpinjInventorySearchMode)")
            bad = [i for _, i in info.powers if not 1 <= i <= len(w.POWER_TABLE_CDBM)]
            if bad:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR,
                                  f"TransmitPower index {bad[0]} is not in the power table "
                                  f"(1..{len(w.POWER_TABLE_CDBM)})")
            if info.start_gpi is not None and not 1 <= info.start_gpi <= self.config.gpis:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR,
                                  f"GPI {info.start_gpi} does not exist")
            self.last_rospec = info
            # The power goes last-but-one: tests match the line's end on the session.
            log.info("ADD_ROSPEC %d: antennas %s, report every %d tag(s)%s%s%s%s%s%s%s",
                     info.rospec_id, list(info.antennas), info.tags_per_report,
                     f" or {info.aispec_ms} ms" if info.aispec_ms else "",
                     f", mode {info.mode_id}" if info.mode_id is not None else "",
                     f", search mode {info.search_mode}" if info.search_mode is not None else "",
                     f", start on GPI {info.start_gpi} high" if info.start_gpi else "",
                     f", stop on GPI {info.stop_gpi} low or after {info.stop_gpi_timeout_ms} ms"
                     if info.stop_gpi else "",
                     f", power {self.power_text(info)}" if info.powers else "",
                     f", session {info.session}" if info.session is not None else "")
            if info.rospec_id == 0:
                return w.response(rtype, mid, w.M_FIELD_ERROR, "ROSpecID 0 is reserved")
            if info.rospec_id in self.rospecs:
                text = f"ROSpec {info.rospec_id} already exists"
                return w.response(rtype, mid, w.M_PARAMETER_ERROR, text)
            self.rospecs[info.rospec_id] = ROSpecEntry(info)
            return w.response(rtype, mid)
        if len(msg.body) < 4:
            raise w.WireError("no ROSpecID")
        (rospec_id,) = struct.unpack_from(">I", msg.body)
        if rospec_id == 0:
            if msg.type in (w.START_ROSPEC, w.STOP_ROSPEC):
                return w.response(rtype, mid, w.M_FIELD_ERROR, "ROSpecID 0 cannot be started")
            targets = list(self.rospecs.values())
        elif rospec_id in self.rospecs:
            targets = [self.rospecs[rospec_id]]
        else:
            return w.response(rtype, mid, w.M_PARAMETER_ERROR, f"no ROSpec {rospec_id}")
        if msg.type == w.START_ROSPEC:
            err = self._error_code(t_s)
            if err is not None:
                return w.response(rtype, mid, err, "injected error")
        for entry in targets:
            error = self._apply(msg.type, entry, t_s)
            if error:
                return w.response(rtype, mid, w.M_PARAMETER_ERROR, error)
        self._schedule(t_s)
        return w.response(rtype, mid)

    def _apply(self, mtype: int, entry: ROSpecEntry, t_s: float) -> str:
        rid = entry.info.rospec_id
        if mtype == w.DELETE_ROSPEC:
            del self.rospecs[rid]
        elif mtype == w.ENABLE_ROSPEC:
            if entry.state == DISABLED:
                entry.state = INACTIVE
                if entry.info.start_immediate:
                    self._activate(entry, t_s)
        elif mtype == w.DISABLE_ROSPEC:
            entry.state = DISABLED
            entry.stop_s = None
        elif mtype == w.START_ROSPEC:
            if entry.state == DISABLED:
                return f"ROSpec {rid} is disabled"
            self._activate(entry, t_s)
        elif mtype == w.STOP_ROSPEC:
            if entry.state == DISABLED:
                return f"ROSpec {rid} is disabled"
            log.info("STOP_ROSPEC %d", rid)
            entry.state = INACTIVE
            entry.stop_s = None
        return ""

    @staticmethod
    def _activate(entry: ROSpecEntry, t_s: float) -> None:
        entry.state = ACTIVE
        duration_ms = entry.info.duration_ms
        entry.stop_s = t_s + duration_ms / 1000 if duration_ms else None

    def _per_report(self, entry: ROSpecEntry) -> int:
        """Tag reads per RO_ACCESS_REPORT: N, or what the AISpec's duration holds when the
        report comes upon N tags or the end of the AISpec."""
        n = entry.info.tags_per_report
        if entry.info.aispec_ms and entry.info.report_trigger == 1:
            n = max(1, min(n, int(self.config.report_rate_per_s * entry.info.aispec_ms / 1000)))
        return n

    def _schedule(self, t_s: float) -> None:
        """(Re)start or stop the report clock after the ROSpec states changed."""
        entry = self._active()
        if entry is None:
            self._report_s = None
        elif self._report_s is None:
            self._report_s = t_s + self._per_report(entry) / self.config.report_rate_per_s

    @staticmethod
    def power_text(info: w.ROSpecInfo) -> str:
        """Each antenna's transmit power as the table maps its index: "[1: 30 dBm, 2: 25 dBm]"."""
        return "[" + ", ".join(f"{a}: {w.POWER_TABLE_CDBM[i - 1] / 100:g} dBm"
                               for a, i in info.powers) + "]"

    @staticmethod
    def _echo(entry: ROSpecEntry) -> bytes:
        raw = bytearray(entry.info.raw)
        raw[9] = entry.state  # header 4 + ROSpecID 4 + Priority 1 -> CurrentState
        return bytes(raw)


_ROSPEC_OPS = frozenset(
    {w.DELETE_ROSPEC, w.START_ROSPEC, w.STOP_ROSPEC, w.ENABLE_ROSPEC, w.DISABLE_ROSPEC}
)
