"""Status (birth / offline) and health for the cloud.

The payloads are pure functions (schema: docs/uplink.md "Health payload"; keys are camelCase
like the reader status). :class:`HealthReporter` is the one loop that sends them: a health
message every ``health_interval_s``, the birth message kept current, certificate expiry
warnings once a day, and the explicit offline status at a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agent.buffer.api import BufferStats, BufferStoreError
from agent.buffer.chain import ChainHead
from agent.clock import kernel_clock_synchronised, utcnow
from agent.config import AgentConfig
from agent.pipeline.epcis import iso_ms
from agent.readers.rates import RateTracker
from agent.readers.status import ReaderStatus
from agent.uplink.forwarder import Forwarder
from agent.uplink.mqtt import MqttUplink, UplinkError, Will
from agent.uplink.security import CertExpiry, cert_expiry

log = logging.getLogger(__name__)

HEALTH_SCHEMA = "trace-edge-agent/health/1"
STATUS_SCHEMA = "trace-edge-agent/status/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkFacts:
    """What the uplink knows about itself, taken from MqttUplink and Forwarder stats."""

    connected: bool
    broker: str
    on_primary: bool
    protocol: str
    tls: bool
    reconnects: int
    delivered_events: int
    delivered_messages: int
    refused_messages: int
    dead_lettered: int
    last_refusal: str | None
    drain_rate_events_s: float | None
    publish_latency_ms_p50: float | None
    publish_latency_ms_p99: float | None
    event_latency_ms_p50: float | None
    event_latency_ms_p99: float | None


def status_payload(
    *,
    state: str,
    gateway: str,
    site: str,
    version: str,
    now: datetime,
    readers: Sequence[str] = (),
    buffer_depth: int | None = None,
    chain: ChainHead | None = None,
    chain_at_connect: ChainHead | None = None,
) -> dict[str, Any]:
    """Retained message on {prefix}/{site}/{gateway}/status: online (birth) or offline.

    ``chain``: the head of the gateway's document chain (the last document frozen, delivered
    or not), so a cloud can tell a missing tail from a quiet gateway (docs/provenance.md).
    ``chain_at_connect`` (the will only, as ``chainAtConnect``): the head as the agent knew
    it when it connected; the broker sends the will later, after documents may have followed,
    so it is a lower bound and carries another name than the current ``chain``."""
    out: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "state": state,
        "gateway": gateway,
        "site": site,
        "version": version,
        "ts": iso_ms(now),
    }
    if state == "online":
        out["readers"] = list(readers)
        out["bufferDepth"] = buffer_depth
    if chain is not None:
        out["chain"] = _head(chain)
    if chain_at_connect is not None:
        out["chainAtConnect"] = _head(chain_at_connect)
    return out


def _head(chain: ChainHead) -> dict[str, Any]:
    return {"chainId": chain.chain_id, "seq": chain.seq, "hash": chain.hash}


def certificate_facts(certs: Sequence[CertExpiry], warn_days: int) -> dict[str, Any]:
    """``{"ca": {...}, "client": {...}}`` as the health message, ``edge-agent status`` and
    /health report them (the same expiry, :func:`agent.uplink.security.cert_expiry`)."""
    return {c.name: {
        "path": c.path,
        "notAfter": iso_ms(c.not_after) if c.not_after is not None else None,
        "daysLeft": c.days_left,
        "warning": c.days_left is None or c.days_left <= warn_days,
    } for c in certs}


def health_payload(
    *,
    gateway: str,
    site: str,
    version: str,
    now: datetime,
    readers: Mapping[str, ReaderStatus],
    read_rates: Mapping[str, float],
    buffer: BufferStats,
    uplink: UplinkFacts,
    clock_synchronised: bool | None,
    certs: Sequence[CertExpiry],
    cert_warn_days: int,
) -> dict[str, Any]:
    """Periodic message on {prefix}/{site}/{gateway}/health."""
    cert_out = certificate_facts(certs, cert_warn_days)
    return {
        "schema": HEALTH_SCHEMA,
        "gateway": gateway,
        "site": site,
        "version": version,
        "ts": iso_ms(now),
        "readers": {
            name: {
                "state": r.state,
                "readRate": read_rates.get(name, 0.0),
                "readsTotal": r.reads_total,
                "lastError": r.last_error,
                "connects": r.connects,
                "disconnects": r.disconnects,
                "temperatureC": r.temperature_c,  # R2000 0x7B; null for other readers
            }
            for name, r in readers.items()
        },
        "buffer": {
            "depth": buffer.events_pending + buffer.events_leased,
            "readsPending": buffer.reads_pending,
            "oldestAgeS": (round(buffer.oldest_event_age_s, 3)
                           if buffer.oldest_event_age_s is not None else None),
            "sizeBytes": buffer.size_bytes,
            "dropped": buffer.dropped_total,
            "quarantined": buffer.quarantined_files,
            "deadLetters": buffer.dead_letters,
            "deadLettersFull": bool(buffer.dead_letters_max
                                    and buffer.dead_letters >= buffer.dead_letters_max),
            "diskFull": buffer.disk_full,
        },
        "uplink": {
            "connected": uplink.connected,
            "broker": uplink.broker,
            "onPrimary": uplink.on_primary,
            "protocol": uplink.protocol,
            "tls": uplink.tls,
            "reconnects": uplink.reconnects,
            "deliveredEvents": uplink.delivered_events,
            "deliveredMessages": uplink.delivered_messages,
            "refusedMessages": uplink.refused_messages,
            "deadLettered": uplink.dead_lettered,
            "lastRefusal": uplink.last_refusal,
            "drainRateEventsS": uplink.drain_rate_events_s,
            "latencyMs": {
                "publishP50": uplink.publish_latency_ms_p50,
                "publishP99": uplink.publish_latency_ms_p99,
                "eventP50": uplink.event_latency_ms_p50,
                "eventP99": uplink.event_latency_ms_p99,
            },
        },
        "clock": {"synchronised": clock_synchronised},
        "certificates": cert_out,
    }


def status_message(cfg: AgentConfig, state: str, depth: int | None = None, *,
                   version: str, now: datetime | None = None,
                   chain: ChainHead | None = None,
                   chain_at_connect: ChainHead | None = None) -> bytes:
    """The retained status message (birth, will or offline) as bytes."""
    return json.dumps(status_payload(
        state=state, gateway=cfg.gateway.id, site=cfg.gateway.site, version=version,
        now=now or utcnow(), readers=[r.name for r in cfg.readers if r.enabled],
        buffer_depth=depth, chain=chain, chain_at_connect=chain_at_connect,
    )).encode()


class _Stats(Protocol):
    async def stats(self) -> BufferStats: ...

    async def chain_head(self) -> ChainHead | None: ...


@dataclass(slots=True)
class HealthReporter:
    cfg: AgentConfig
    version: str
    readers: Mapping[str, ReaderStatus]
    uplink: MqttUplink
    forwarder: Forwarder
    buffer: _Stats
    topics: Mapping[str, str]
    wall_s: Callable[[], float] = time.time
    monotonic_s: Callable[[], float] = time.monotonic
    rates: RateTracker = field(default_factory=RateTracker)
    _warned_day: dict[str, int] = field(default_factory=dict)
    _chain: ChainHead | None = None

    async def run(self) -> None:
        while True:
            await self.report_once()
            await asyncio.sleep(self.cfg.uplink.mqtt.health_interval_s)

    async def run_status(self) -> None:
        """Keep the chain head in the retained status current (task ``uplink-status``).

        After the head moves (a document frozen), the online status goes out again, retained,
        at most once per ``status_min_interval_s``: changes during the pause are taken
        together, so a burst of documents costs one status message a second. The birth for
        the next connect and the will (``chainAtConnect``) follow the same head."""
        changed = self.forwarder.head_changed
        while True:
            await changed.wait()
            changed.clear()
            await self.refresh_status()
            await asyncio.sleep(self.cfg.uplink.mqtt.status_min_interval_s)

    async def refresh_status(self) -> None:
        stats = await self.buffer.stats()
        self._chain = await self.buffer.chain_head()
        payload = self.status_bytes("online", stats.events_pending)
        self._update_birth_and_will(payload)
        if not self.uplink.connected:
            return  # the birth at the next connect carries it
        try:
            await self.uplink.publish(self.topics["status"], payload, retain=True,
                                      content_type="application/json", timeout_s=10.0)
        except UplinkError as exc:
            log.debug("status not delivered (the next connect's birth carries it): %s", exc)

    def _update_birth_and_will(self, birth: bytes) -> None:
        topic = self.topics["status"]
        self.uplink.set_birth(Will(topic, birth, retain=True))
        self.uplink.set_will(Will(topic, status_message(
            self.cfg, "offline", version=self.version, chain_at_connect=self._chain),
            qos=1, retain=True))

    async def report_once(self) -> dict[str, Any]:
        """Warn about certificates, refresh the birth message, publish one health message."""
        m = self.cfg.uplink.mqtt
        now = utcnow()
        certs = cert_expiry(m, now)
        self._warn_certificates(certs)
        stats = await self.buffer.stats()
        self._chain = await self.buffer.chain_head()
        self._update_birth_and_will(self.status_bytes("online", stats.events_pending))
        mono = self.monotonic_s()
        rates = self.rates.rates(mono, self.readers)
        self.rates.sample(mono, self.readers)
        payload = health_payload(
            gateway=self.cfg.gateway.id, site=self.cfg.gateway.site, version=self.version,
            now=now, readers=self.readers, read_rates=rates, buffer=stats,
            uplink=self.facts(), clock_synchronised=kernel_clock_synchronised(), certs=certs,
            cert_warn_days=m.cert_expiry_warn_days,
        )
        if self.uplink.connected:
            try:
                await self.uplink.publish(self.topics["health"], json.dumps(payload).encode(),
                                          content_type="application/json", timeout_s=10.0)
            except UplinkError as exc:
                log.debug("health message not delivered: %s", exc)
        return payload

    def facts(self) -> UplinkFacts:
        m = self.cfg.uplink.mqtt
        fs = self.forwarder.stats()
        us = self.uplink.stats()
        host, port = self.uplink.broker
        return UplinkFacts(
            connected=us.connected, broker=f"{host}:{port}", on_primary=self.uplink.on_primary,
            protocol=m.protocol, tls=m.tls_enabled, reconnects=us.reconnects,
            delivered_events=fs.delivered_events, delivered_messages=fs.delivered_messages,
            refused_messages=fs.refused_messages, dead_lettered=fs.dead_lettered,
            last_refusal=fs.last_refusal, drain_rate_events_s=fs.drain_rate_events_s,
            publish_latency_ms_p50=fs.publish_latency_ms_p50,
            publish_latency_ms_p99=fs.publish_latency_ms_p99,
            event_latency_ms_p50=fs.event_latency_ms_p50,
            event_latency_ms_p99=fs.event_latency_ms_p99,
        )

    def _warn_certificates(self, certs: Sequence[CertExpiry]) -> None:
        """A certificate near or past its end, or unreadable: WARNING once a day per file."""
        warn_days = self.cfg.uplink.mqtt.cert_expiry_warn_days
        day = int(self.wall_s() // 86400)
        for c in certs:
            if (c.days_left is None or c.days_left <= warn_days) and \
                    self._warned_day.get(c.name) != day:
                self._warned_day[c.name] = day
                log.warning("uplink: %s certificate %s %s", c.name, c.path,
                            "cannot be read" if c.days_left is None else
                            f"expired {-c.days_left:g} days ago" if c.expired else
                            f"expires in {c.days_left:g} days")

    def status_bytes(self, state: str, depth: int | None = None) -> bytes:
        return status_message(self.cfg, state, depth, version=self.version, chain=self._chain)

    async def say_offline(self) -> None:
        """Clean shutdown: an explicit retained offline (the will is not sent on DISCONNECT 0)."""
        if not self.uplink.connected:
            return
        with contextlib.suppress(BufferStoreError):  # the head as it is at the very end
            self._chain = await self.buffer.chain_head()
        try:
            await self.uplink.publish(self.topics["status"], self.status_bytes("offline"),
                                      retain=True, content_type="application/json",
                                      timeout_s=3.0)
        except UplinkError as exc:
            log.warning("offline status not delivered: %s", exc)
