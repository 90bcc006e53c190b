"""Site survey aggregates: the tap's reads folded into one small message per interval.

The browser gets about two messages a second however fast the readers read (1,000 reads/s
become two messages of per-tag and per-antenna totals), so the page stays responsive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Tag:
    epc: str
    reader: str
    antenna: int | None
    uri: str | None
    hri: str | None
    first: str
    last: str
    last_rssi: float | None
    peak_rssi: float | None
    count: int = 0


@dataclass(slots=True)
class _Antenna:
    reads: int = 0
    rssi_sum: float = 0.0
    rssi_n: int = 0
    rssi_max: float | None = None


@dataclass(slots=True)
class SurveyWindow:
    """What arrived since the last :meth:`flush` (only tags whose EPC starts with ``prefix``)."""

    prefix: str = ""
    tags: dict[tuple[str, str, int | None], _Tag] = field(default_factory=dict)
    antennas: dict[str, _Antenna] = field(default_factory=dict)
    reads: int = 0

    def add(self, item: dict[str, Any]) -> None:
        if item.get("type") != "read":
            return
        epc = str(item.get("epc", ""))
        if self.prefix and not epc.startswith(self.prefix):
            return
        reader, antenna = str(item.get("reader", "")), item.get("antenna")
        rssi = item.get("rssiDbm")
        when = str(item.get("time", ""))
        key = (epc, reader, antenna)
        tag = self.tags.get(key)
        if tag is None:
            tag = self.tags[key] = _Tag(epc, reader, antenna, item.get("uri"), item.get("hri"),
                                        when, when, rssi, rssi)
        tag.count += 1
        tag.last = when
        tag.last_rssi = rssi
        if rssi is not None and (tag.peak_rssi is None or rssi > tag.peak_rssi):
            tag.peak_rssi = rssi
        ant = self.antennas.setdefault(f"{reader}/{antenna if antenna is not None else '-'}",
                                       _Antenna())
        ant.reads += 1
        if rssi is not None:
            ant.rssi_sum += rssi
            ant.rssi_n += 1
            ant.rssi_max = rssi if ant.rssi_max is None else max(ant.rssi_max, rssi)
        self.reads += 1

    def flush(self, now_s: float, interval_s: float, dropped: int) -> dict[str, Any]:
        out = {
            "type": "survey",
            "time": now_s,
            "intervalS": interval_s,
            "reads": self.reads,
            "dropped": dropped,
            "tags": [{"epc": t.epc, "reader": t.reader, "antenna": t.antenna, "uri": t.uri,
                      "hri": t.hri, "first": t.first, "last": t.last, "lastRssi": t.last_rssi,
                      "peakRssi": t.peak_rssi, "count": t.count} for t in self.tags.values()],
            "antennas": {k: {"reads": a.reads,
                             "readsPerS": round(a.reads / interval_s, 1) if interval_s else None,
                             "rssiAvg": round(a.rssi_sum / a.rssi_n, 1) if a.rssi_n else None,
                             "rssiMax": a.rssi_max}
                         for k, a in sorted(self.antennas.items())},
        }
        self.tags.clear()
        self.antennas.clear()
        self.reads = 0
        return out
