"""Health and status payloads (agent/uplink/health.py): pure functions, no broker.

The cloud parses these messages, so their shape is a contract (docs/uplink.md "State for the
cloud"): these tests pin every key and the type of every value, and check that the payloads
survive a JSON round trip unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.buffer.api import BufferStats
from agent.buffer.chain import ChainHead
from agent.readers.rates import RateTracker
from agent.readers.status import ReaderStatus
from agent.uplink.health import (
    HEALTH_SCHEMA,
    STATUS_SCHEMA,
    UplinkFacts,
    health_payload,
    status_payload,
)
from agent.uplink.security import CertExpiry

NOW = datetime(2026, 11, 28, 14, 0, 0, 123456, tzinfo=UTC)


def buffer_stats(**kw: Any) -> BufferStats:
    base: dict[str, Any] = {
        "generation": "g1", "reads_pending": 3, "events_pending": 100, "events_leased": 20,
        "oldest_event_age_s": 0.81234, "size_bytes": 1 << 20, "dropped_total": 0,
        "dead_letters": 1, "quarantined_files": 0, "disk_full": False,
    }
    base.update(kw)
    return BufferStats(**base)


def facts(**kw: Any) -> UplinkFacts:
    base: dict[str, Any] = {
        "connected": True, "broker": "broker-a:8883", "on_primary": True, "protocol": "5",
        "tls": True, "reconnects": 2, "delivered_events": 9000, "delivered_messages": 95,
        "refused_messages": 1, "dead_lettered": 1,
        "last_refusal": "reason code 0x87 Not authorized", "drain_rate_events_s": None,
        "publish_latency_ms_p50": 1.2, "publish_latency_ms_p99": 4.0,
        "event_latency_ms_p50": 60.1, "event_latency_ms_p99": 84.0,
    }
    base.update(kw)
    return UplinkFacts(**base)


def readers() -> dict[str, ReaderStatus]:
    up = ReaderStatus("dock-1", "r2000", "/dev/ttyUSB0", state="connected", reads_total=12345,
                      connects=1)
    down = ReaderStatus("dock-2", "chafon", "/dev/ttyUSB1", state="reconnecting",
                        last_error="serial port vanished", connects=3, disconnects=3)
    stopped = ReaderStatus("gate", "barcode", "/dev/ttyACM0", state="stopped", reads_total=7)
    return {r.name: r for r in (up, down, stopped)}


def cert(name: str, days: float | None) -> CertExpiry:
    na = None if days is None else NOW + timedelta(days=days)
    return CertExpiry(name, f"/etc/edge/{name}.pem", na, days)


def health(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "gateway": "gw1", "site": "lab", "version": "0.1.0", "now": NOW, "readers": readers(),
        "read_rates": {"dock-1": 41.5, "dock-2": 0.0}, "buffer": buffer_stats(),
        "uplink": facts(), "clock_synchronised": True,
        "certs": [cert("client", 33.4), cert("ca", 400.0)], "cert_warn_days": 30,
    }
    base.update(kw)
    return health_payload(**base)


# The contract: key -> type (or nested shape). None allowed where the value is optional.
OPT_FLOAT = (float, int, type(None))
HEALTH_SHAPE: dict[str, Any] = {
    "schema": str, "gateway": str, "site": str, "version": str, "ts": str,
    "buffer": {"depth": int, "readsPending": int, "oldestAgeS": OPT_FLOAT, "sizeBytes": int,
               "dropped": int, "quarantined": int, "deadLetters": int, "deadLettersFull": bool,
               "diskFull": bool},
    "uplink": {"connected": bool, "broker": str, "onPrimary": bool, "protocol": str,
               "tls": bool, "reconnects": int, "deliveredEvents": int,
               "deliveredMessages": int, "refusedMessages": int, "deadLettered": int,
               "lastRefusal": (str, type(None)), "drainRateEventsS": OPT_FLOAT,
               "latencyMs": {"publishP50": OPT_FLOAT, "publishP99": OPT_FLOAT,
                             "eventP50": OPT_FLOAT, "eventP99": OPT_FLOAT}},
    "clock": {"synchronised": (bool, type(None))},
}
READER_SHAPE: dict[str, Any] = {"state": str, "readRate": (float, int), "readsTotal": int,
                                "lastError": (str, type(None)), "connects": int,
                                "disconnects": int, "temperatureC": (int, type(None))}
CERT_SHAPE: dict[str, Any] = {"path": str, "notAfter": (str, type(None)),
                              "daysLeft": OPT_FLOAT, "warning": bool}


def check_shape(value: dict[str, Any], shape: dict[str, Any], where: str = "") -> None:
    assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
    for key, kind in shape.items():
        if isinstance(kind, dict):
            assert isinstance(value[key], dict), f"{where}.{key}"
            check_shape(value[key], kind, f"{where}.{key}")
        else:
            assert isinstance(value[key], kind), f"{where}.{key}: {value[key]!r} is not {kind}"


def check_health_shape(h: dict[str, Any]) -> None:
    check_shape({k: v for k, v in h.items() if k not in ("readers", "certificates")},
                HEALTH_SHAPE, "health")
    for name, r in h["readers"].items():
        check_shape(r, READER_SHAPE, f"readers.{name}")
    for name, c in h["certificates"].items():
        check_shape(c, CERT_SHAPE, f"certificates.{name}")


def roundtrip(payload: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(payload, allow_nan=False)  # strict: no NaN/Infinity, no datetimes
    back: dict[str, Any] = json.loads(text)
    assert back == payload
    return back


# ----------------------------------------------------------------------------- health


def test_health_shape_and_values() -> None:
    h = roundtrip(health())
    check_health_shape(h)
    assert h["schema"] == HEALTH_SCHEMA
    assert h["ts"] == "2026-11-28T14:00:00.123Z"
    assert h["readers"]["dock-1"] == {"state": "connected", "readRate": 41.5,
                                      "readsTotal": 12345, "lastError": None, "connects": 1,
                                      "disconnects": 0, "temperatureC": None}
    assert h["readers"]["dock-2"]["state"] == "reconnecting"
    assert h["readers"]["dock-2"]["lastError"] == "serial port vanished"
    assert h["readers"]["dock-2"]["disconnects"] == 3
    assert h["readers"]["gate"]["state"] == "stopped"
    assert h["readers"]["gate"]["readRate"] == 0.0  # no rate given: 0, not missing
    b = h["buffer"]
    assert b["depth"] == 120  # pending + leased
    assert b["oldestAgeS"] == 0.812
    assert b["deadLetters"] == 1
    assert h["uplink"]["lastRefusal"] == "reason code 0x87 Not authorized"
    assert h["uplink"]["latencyMs"]["eventP99"] == 84.0


def test_health_empty_buffer_and_offline_uplink() -> None:
    h = roundtrip(health(
        readers={}, read_rates={},
        buffer=buffer_stats(events_pending=0, events_leased=0, reads_pending=0,
                            oldest_event_age_s=None, disk_full=True, dropped_total=5),
        uplink=facts(connected=False, on_primary=False, broker="broker-b:8883",
                     last_refusal=None, drain_rate_events_s=250.0,
                     publish_latency_ms_p50=None, publish_latency_ms_p99=None,
                     event_latency_ms_p50=None, event_latency_ms_p99=None),
        certs=[]))
    check_health_shape(h)
    assert h["readers"] == {}
    assert h["certificates"] == {}
    assert h["buffer"]["depth"] == 0
    assert h["buffer"]["oldestAgeS"] is None
    assert h["buffer"]["diskFull"] is True
    assert h["buffer"]["dropped"] == 5
    u = h["uplink"]
    assert (u["connected"], u["onPrimary"], u["broker"]) == (False, False, "broker-b:8883")
    assert u["drainRateEventsS"] == 250.0
    assert u["latencyMs"] == {"publishP50": None, "publishP99": None, "eventP50": None,
                              "eventP99": None}


@pytest.mark.parametrize(("synced", "expected"), [(True, True), (False, False), (None, None)])
def test_health_clock(synced: bool | None, expected: bool | None) -> None:
    h = roundtrip(health(clock_synchronised=synced))
    assert h["clock"] == {"synchronised": expected}


def test_health_certificates_near_expiry_expired_and_unreadable() -> None:
    certs = [cert("client", 29.9), cert("ca", 30.0), cert("old", -2.5), cert("bad", None),
             cert("fine", 30.1)]
    h = roundtrip(health(certs=certs, cert_warn_days=30))
    check_health_shape(h)
    c = h["certificates"]
    assert c["client"]["warning"] is True
    assert c["ca"]["warning"] is True  # on the limit
    assert c["old"]["warning"] is True
    assert c["old"]["daysLeft"] == -2.5
    assert c["bad"] == {"path": "/etc/edge/bad.pem", "notAfter": None, "daysLeft": None,
                        "warning": True}  # unreadable is a warning, not silence
    assert c["fine"]["warning"] is False
    assert c["fine"]["notAfter"] == "2026-12-28T16:24:00.123Z"


def test_health_is_stable_in_shape() -> None:
    """Two messages from different situations have the same keys at every level (the cloud
    can rely on a key being there, with null when unknown)."""
    a = health()
    b = health(buffer=buffer_stats(oldest_event_age_s=None), uplink=facts(last_refusal=None),
               clock_synchronised=None)

    def keys(d: dict[str, Any], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in d.items():
            if prefix in ("readers.", "certificates."):
                continue
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, f"{prefix}{k}.")
        return out

    assert keys(a) == keys(b)


def test_reader_rates() -> None:
    # The health message's rates come from the one RateTracker (agent/readers/rates.py):
    # reads per second since the previous health message, however far apart they are.
    def rates(previous: dict[str, int], elapsed_s: float) -> dict[str, float]:
        tracker = RateTracker()
        tracker.record(1000.0, previous)
        return tracker.rates(1000.0 + elapsed_s, rs)

    rs = readers()
    assert rates({"dock-1": 12245, "gate": 7}, 10.0) == {
        "dock-1": 10.0, "dock-2": 0.0, "gate": 0.0}
    assert rates({"dock-1": 12045}, 30.0)["dock-1"] == 10.0  # sparser than the 10 s window
    # first tick (no previous count) and a counter that went backwards (reader restarted
    # with a fresh status): 0, never negative
    assert rates({"dock-1": 99999}, 10.0)["dock-1"] == 0.0
    assert rates({}, 10.0) == {"dock-1": 0.0, "dock-2": 0.0, "gate": 0.0}
    assert rates({"dock-1": 0}, 0.0) == {"dock-1": 0.0, "dock-2": 0.0, "gate": 0.0}



# ----------------------------------------------------------------------------- status


def test_status_online_birth() -> None:
    s = roundtrip(status_payload(state="online", gateway="gw1", site="lab", version="0.1.0",
                                 now=NOW, readers=["dock-1", "gate"], buffer_depth=42))
    assert s == {"schema": STATUS_SCHEMA, "state": "online", "gateway": "gw1", "site": "lab",
                 "version": "0.1.0", "ts": "2026-11-28T14:00:00.123Z",
                 "readers": ["dock-1", "gate"], "bufferDepth": 42}


def test_status_offline_carries_no_live_facts() -> None:
    s = roundtrip(status_payload(state="offline", gateway="gw1", site="lab", version="0.1.0",
                                 now=NOW, readers=["dock-1"], buffer_depth=42))
    assert s == {"schema": STATUS_SCHEMA, "state": "offline", "gateway": "gw1", "site": "lab",
                 "version": "0.1.0", "ts": "2026-11-28T14:00:00.123Z"}


def test_the_will_names_the_head_at_connect_apart_from_the_current_head() -> None:
    head = ChainHead(chain_id="c-1", seq=7, hash="sha-256:ab")
    will = roundtrip(status_payload(state="offline", gateway="gw1", site="lab", version="0.1.0",
                                    now=NOW, chain_at_connect=head))
    assert will["chainAtConnect"] == {"chainId": "c-1", "seq": 7, "hash": "sha-256:ab"}
    assert "chain" not in will  # a receiver never mistakes it for the current head
    online = roundtrip(status_payload(state="online", gateway="gw1", site="lab",
                                      version="0.1.0", now=NOW, chain=head))
    assert online["chain"] == will["chainAtConnect"]
    assert "chainAtConnect" not in online


def test_status_online_defaults() -> None:
    s = roundtrip(status_payload(state="online", gateway="gw1", site="lab", version="0.1.0",
                                 now=NOW))
    assert s["readers"] == []
    assert s["bufferDepth"] is None
