"""Status (birth / offline) and health payloads for the cloud: pure functions, no I/O.

Schema: docs/uplink.md "Health payload". Keys are camelCase like the reader status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.buffer.api import BufferStats
from agent.pipeline.epcis import iso_ms
from agent.readers.status import ReaderStatus
from agent.uplink.security import CertExpiry

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
) -> dict[str, Any]:
    """Retained message on {prefix}/{site}/{gateway}/status: online (birth) or offline."""
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
    return out


def reader_rates(
    readers: Mapping[str, ReaderStatus], previous: Mapping[str, int], elapsed_s: float
) -> dict[str, float]:
    """Reads per second per reader since the previous health message."""
    if elapsed_s <= 0:
        return {name: 0.0 for name in readers}
    return {
        name: round(max(0, r.reads_total - previous.get(name, r.reads_total)) / elapsed_s, 2)
        for name, r in readers.items()
    }


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
    cert_out: dict[str, Any] = {}
    for c in certs:
        cert_out[c.name] = {
            "path": c.path,
            "notAfter": iso_ms(c.not_after) if c.not_after is not None else None,
            "daysLeft": c.days_left,
            "warning": c.days_left is None or c.days_left <= cert_warn_days,
        }
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
