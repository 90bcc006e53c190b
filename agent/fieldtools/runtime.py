"""What the running agent exposes to its field tools: one snapshot, health, read rates.

Built by app.py from the objects it wires; read-only towards them (counters and stats calls).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agent import __version__
from agent.buffer.api import BufferStats
from agent.clock import kernel_clock_synchronised
from agent.config import AgentConfig
from agent.fieldtools.tap import EventTap
from agent.readers.rates import RateTracker
from agent.readers.status import ReaderStatus
from agent.uplink.health import certificate_facts
from agent.uplink.mqtt import UplinkStats
from agent.uplink.security import cert_expiry

CORE_TASKS = ("ingest", "pipeline", "forwarder")


class IdentityView(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class FormerView(Protocol):
    """The event former (agent/pipeline/former.py): a busy line's events, formed apart."""

    def as_dict(self) -> dict[str, Any]: ...


class BufferView(Protocol):
    async def stats(self) -> BufferStats: ...


class UplinkView(Protocol):
    """What the field tools read from MqttUplink."""

    @property
    def connected(self) -> bool: ...

    def stats(self) -> UplinkStats: ...


class ForwarderView(Protocol):
    """What the field tools read from the Forwarder (counters since start)."""

    delivered_events: int
    delivered_messages: int
    dead_lettered: int
    last_refusal: str | None
    refused_by_reason: dict[str, int]


class IngestView(Protocol):
    accepted_total: int

    @property
    def waiting(self) -> int: ...

    @property
    def paused(self) -> bool: ...


class CommandsView(Protocol):
    def stats(self) -> dict[str, int]: ...


class ReaderCommands(Protocol):
    """agent/remote.py RemoteCommands, the handler of the signed remote commands: the page
    acts on readers through the same code (set power: readers.control(reader).set_power,
    confirmed by read-back). Each raises CommandError (``code``, ``message``) when refused."""

    async def set_reader_power(self, reader: str, dbm: Any) -> Mapping[str, Any]: ...

    async def set_reader_settings(self, reader: str, settings: Mapping[str, Any]
                                  ) -> Mapping[str, Any]: ...

    async def start_reader(self, reader: str) -> Mapping[str, Any]: ...

    async def stop_reader(self, reader: str) -> Mapping[str, Any]: ...


@dataclass(slots=True)
class Runtime:
    cfg: AgentConfig
    readers: dict[str, ReaderStatus]
    buffer: BufferView
    uplink: UplinkView
    forwarder: ForwarderView
    ingest: IngestView
    tap: EventTap = field(default_factory=EventTap)
    monotonic: Callable[[], float] = time.monotonic
    started_s: float = field(default_factory=time.monotonic)
    rates: RateTracker = field(default_factory=RateTracker)
    down_since: dict[str, float] = field(default_factory=dict)
    http_address: str | None = None
    socket_path: str | None = None
    commands: CommandsView | None = None  # remote commands, when enabled
    # For the technician's page: the config file, the remote commands' reader handlers (the
    # same code path as a signed command) and a way to restart the agent (config apply).
    config_path: Path | None = None
    reader_commands: ReaderCommands | None = None
    restart: Callable[[], None] | None = None
    # When the broker last confirmed a message (seen by tick: to within a second).
    last_puback_s: float | None = None
    published_seen: int = 0
    identity: IdentityView | None = None  # certificate renewal over EST, when configured
    former: FormerView | None = None  # None: off (EDGE_AGENT_FORMER=0)

    def tick(self) -> None:
        """Once a second (server task): rate samples and how long each reader has been down."""
        now = self.monotonic()
        self.rates.sample(now, self.readers)
        published = self.uplink.stats().published_ok
        if published != self.published_seen:
            self.published_seen = published
            self.last_puback_s = now
        for name, r in self.readers.items():
            if r.state == "connected":
                self.down_since.pop(name, None)
            else:
                self.down_since.setdefault(name, now)

    def status_line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status``)."""
        up = sum(1 for r in self.readers.values() if r.state == "connected")
        broker = "connected" if self.uplink.connected else "disconnected"
        return (f"readers {up}/{len(self.readers)} connected, broker {broker}, "
                f"{self.ingest.accepted_total} reads accepted, "
                f"{self.forwarder.delivered_events} events delivered")

    def tasks_alive(self) -> dict[str, bool]:
        names = {t.get_name(): not t.done() for t in asyncio.all_tasks()}
        wanted = [*CORE_TASKS, *(f"reader-{n}" for n in self.readers)]
        return {n: names.get(n, False) for n in wanted}

    async def snapshot(self) -> dict[str, Any]:
        now = self.monotonic()
        self.tick()
        stats = await self.buffer.stats()
        u = self.uplink.stats()
        m = self.cfg.uplink.mqtt
        readers = []
        for name, r in self.readers.items():
            d = r.as_dict()
            d["readRate"] = round(self.rates.rate(name, now, r.reads_total), 2)
            down = self.down_since.get(name)
            d["downForS"] = None if down is None else round(now - down, 1)
            readers.append(d)
        snap: dict[str, Any] = {
            "version": __version__,
            "pid": os.getpid(),
            "gateway": {"id": self.cfg.gateway.id, "site": self.cfg.gateway.site},
            "uptimeS": round(now - self.started_s, 1),
            "readers": readers,
            # readsTotal (per reader) counts what readers reported; a read is accepted once
            # it is committed to the buffer; until then it waits in RAM (docs/buffer.md).
            "ingest": {
                "accepted": self.ingest.accepted_total,
                "waiting": self.ingest.waiting,
                "paused": self.ingest.paused,
            },
            "buffer": {
                "path": str(self.cfg.buffer.path),
                "depth": stats.events_pending,
                "readsPending": stats.reads_pending,
                "eventsLeased": stats.events_leased,
                "oldestEventAgeS": stats.oldest_event_age_s,
                "sizeBytes": stats.size_bytes,
                "usedBytes": stats.used_bytes,
                "maxSize": stats.max_size,
                "dropped": stats.dropped_total,
                "deadLetters": stats.dead_letters,
                "deadLettersMax": stats.dead_letters_max,
                "deadLettersFull": bool(stats.dead_letters_max
                                        and stats.dead_letters >= stats.dead_letters_max),
                "deadLettersHeld": stats.dead_letters_held,
                "quarantinedFiles": stats.quarantined_files,
                "diskFull": stats.disk_full,
            },
            "uplink": {
                "connected": bool(self.uplink.connected),
                "broker": f"{m.host}:{m.port}",
                "inFlight": u.in_flight,
                "window": u.window,
                "published": u.published_ok,
                "refused": u.published_refused,
                "refusedByReason": dict(self.forwarder.refused_by_reason),
                "timeouts": u.publish_timeouts,
                "connects": u.connects,
                "connectionLosses": u.connection_losses,
                "deliveredEvents": self.forwarder.delivered_events,
                "deliveredMessages": self.forwarder.delivered_messages,
                "deadLettered": self.forwarder.dead_lettered,
                "lastRefusal": self.forwarder.last_refusal,
                "lastPubackAgeS": None if self.last_puback_s is None
                else round(now - self.last_puback_s, 1),
            },
            "commands": self.commands.stats() if self.commands is not None else None,
            "identity": self.identity.as_dict() if self.identity is not None else None,
            "former": self.former.as_dict() if self.former is not None else None,
            "clock": {"synchronised": kernel_clock_synchronised()},
            "certificates": certificate_facts(cert_expiry(m, datetime.now(UTC)),
                                              m.cert_expiry_warn_days),
            "tasks": self.tasks_alive(),
            "tap": {"viewers": self.tap.viewers, "dropped": self.tap.dropped_total},
            "http": self.http_address,
            "socket": self.socket_path,
        }
        snap["health"] = self.health(snap)
        return snap

    def health(self, snap: dict[str, Any]) -> dict[str, Any]:
        """ok: readers connected or retrying within limits, core tasks alive, disk not full."""
        reasons: list[str] = []
        limit = self.cfg.http.reader_down_max_s
        for r in snap["readers"]:
            down = r["downForS"]
            if down is not None and down > limit:
                reasons.append(
                    f"reader {r['name']}: {r['state']} for {down:.0f} s (limit {limit:g} s)"
                    + (f": {r['lastError']}" if r["lastError"] else ""))
        for name, alive in snap["tasks"].items():
            if not alive:
                reasons.append(f"task {name} is not running")
        for name, c in snap.get("certificates", {}).items():
            if c["daysLeft"] is None:
                reasons.append(f"certificate {name} {c['path']}: no certificate can be read")
            elif c["daysLeft"] < 0:
                reasons.append(f"certificate {name} {c['path']} expired on {c['notAfter']}: "
                               "TLS connections fail until it is renewed")
        if snap["buffer"].get("deadLettersFull"):
            cap = snap["buffer"]["deadLettersMax"]
            reasons.append(f"buffer: dead letters at their cap of {cap} "
                           f"({self.cfg.buffer.dead_letter_policy}): fix the refusal, then "
                           "`edge-agent buffer dead-letters replay --all`")
        if snap["buffer"]["diskFull"]:
            reasons.append("buffer: the disk is full; reads are refused until space is freed")
        return {"ok": not reasons, "reasons": reasons}
