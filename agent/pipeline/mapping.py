"""Reader config -> what the pipeline needs per reader and antenna (pure, resolved once).

An antenna's mapping is the reader's mapping with the antenna's ``antenna_map`` overrides on
top. Presence is kept per *station* = (reader, read point): antennas that share a read point
share presence (two antennas covering one door), antennas with different read points are
separate doors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.config import AntennaMapping, AnyReaderConfig, OnDepartConfig, PresenceConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class EventMapping:
    """The EPCIS business context of one antenna (or of a whole reader)."""

    read_point: str | None = None
    biz_location: str | None = None
    biz_step: str | None = None
    disposition: str | None = None
    action: str = "OBSERVE"
    depart_biz_step: str | None = None
    depart_disposition: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceParams:
    window_s: float = 1.0
    depart_after_s: float = 10.0
    min_reads: int = 1
    min_rssi_dbm: float | None = None
    heartbeat_s: float | None = None

    @classmethod
    def from_config(cls, c: PresenceConfig) -> PresenceParams:
        return cls(window_s=c.window_s, depart_after_s=c.depart_after_s, min_reads=c.min_reads,
                   min_rssi_dbm=c.min_rssi_dbm, heartbeat_s=c.heartbeat_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderPlan:
    name: str
    mode: str = "presence"  # "presence" | "every_read"
    mapping: EventMapping = field(default_factory=EventMapping)
    antennas: dict[int, EventMapping] = field(default_factory=dict)
    presence: PresenceParams = field(default_factory=PresenceParams)
    double_scan_window_s: float = 0.0

    def mapping_for(self, antenna: int | None) -> EventMapping:
        if antenna is None:
            return self.mapping
        return self.antennas.get(antenna, self.mapping)

    def station(self, antenna: int | None) -> str:
        """Presence key of the antenna's read point: ``reader|readPoint`` (``reader|`` if none)."""
        return f"{self.name}|{self.mapping_for(antenna).read_point or ''}"


def _merge(base: EventMapping, o: AntennaMapping) -> EventMapping:
    dep: OnDepartConfig | None = o.on_depart
    return EventMapping(
        read_point=o.read_point or base.read_point,
        biz_location=o.biz_location or base.biz_location,
        biz_step=o.biz_step or base.biz_step,
        disposition=o.disposition or base.disposition,
        action=o.action or base.action,
        depart_biz_step=dep.biz_step if dep else base.depart_biz_step,
        depart_disposition=dep.disposition if dep else base.depart_disposition,
    )


def plan_for(rc: AnyReaderConfig) -> ReaderPlan:
    base = EventMapping(
        read_point=rc.read_point, biz_location=rc.biz_location, biz_step=rc.biz_step,
        disposition=rc.disposition, action=rc.action,
        depart_biz_step=rc.on_depart.biz_step if rc.on_depart else None,
        depart_disposition=rc.on_depart.disposition if rc.on_depart else None,
    )
    return ReaderPlan(
        name=rc.name, mode=rc.mode, mapping=base,
        antennas={a: _merge(base, m) for a, m in rc.antenna_map.items()},
        presence=PresenceParams.from_config(rc.presence),
        double_scan_window_s=rc.double_scan_window_s,
    )


def plans_for(readers: Iterable[AnyReaderConfig]) -> dict[str, ReaderPlan]:
    return {rc.name: plan_for(rc) for rc in readers}
