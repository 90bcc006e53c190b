"""Prometheus text exposition format (0.0.4) from a status snapshot."""

from __future__ import annotations

from typing import Any

PREFIX = "edge_agent_"

# name, type, help
METRICS: list[tuple[str, str, str]] = [
    ("agent_info", "gauge", "Agent version (value 1)"),
    ("reads_total", "counter", "Tag and barcode reads the reader reported, per reader"),
    ("reads_accepted_total", "counter", "Reads committed to the buffer (accepted)"),
    ("reads_waiting", "gauge", "Reads handed over but not yet committed (in memory)"),
    ("ingest_paused", "gauge", "1 while the buffer is full (backpressure) and readers wait"),
    ("reader_up", "gauge", "1 while the reader is connected, per reader"),
    ("reader_antenna_up", "gauge", "1 while the reader reports the antenna connected (LLRP)"),
    ("decoder_frames_total", "counter", "Frames decoded on the reader line (at last reconnect)"),
    ("decoder_bad_checksums_total", "counter", "Frames with a bad checksum, per reader"),
    ("decoder_bytes_discarded_total", "counter", "Line-noise bytes skipped, per reader"),
    ("buffer_reads_pending", "gauge", "Reads committed but not yet turned into events"),
    ("buffer_events_pending", "gauge", "Events waiting for the broker's confirmation"),
    ("buffer_oldest_event_age_seconds", "gauge", "Age of the oldest undelivered event"),
    ("buffer_size_bytes", "gauge", "Size of the buffer file on disk"),
    ("buffer_dropped_total", "counter", "Reads and events dropped (buffer full or too old)"),
    ("buffer_dead_letters", "gauge", "Events the broker refused permanently (kept)"),
    ("buffer_dead_letters_full", "gauge", "1 when dead letters reached buffer.dead_letters_max"),
    ("buffer_disk_full", "gauge", "1 while the disk holding the buffer is full"),
    ("uplink_connected", "gauge", "1 while connected to the broker"),
    ("uplink_published_total", "counter", "Messages confirmed by a PUBACK success code"),
    ("uplink_refused_total", "counter", "Messages refused by the broker, per reason"),
    ("uplink_inflight", "gauge", "QoS 1 messages awaiting their PUBACK"),
    ("uplink_events_delivered_total", "counter", "EPCIS events confirmed by the broker"),
    ("clock_synchronised", "gauge", "1 when the system clock is NTP-synchronised"),
    ("tap_dropped_total", "counter", "Live-view items dropped for slow viewers"),
    ("commands_total", "counter", "Remote commands by result (executed, refused, "
     "refusedUnanswered: over the refusal budget, badReplyTopics, handlerErrors)"),
    ("former_running", "gauge", "1 while the event former's process is ready (a busy line)"),
    ("former_starts_total", "counter", "Times the event former's process was started"),
    ("former_batches_total", "counter", "Batches of scans whose events the former formed"),
    ("former_events_total", "counter", "Events the former formed"),
    ("former_failures_total", "counter", "Batches the former did not answer (formed on the "
     "event loop instead: nothing lost)"),
    ("healthy", "gauge", "1 when /health answers 200"),
]


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float | int | bool | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(snap: dict[str, Any]) -> str:
    samples: dict[str, list[tuple[dict[str, str], float | int | bool | None]]] = {
        name: [] for name, _, _ in METRICS
    }
    samples["agent_info"].append(({"version": snap["version"],
                                   "gateway": snap["gateway"]["id"]}, 1))
    for r in snap["readers"]:
        lab = {"reader": r["name"]}
        samples["reads_total"].append((lab, r["readsTotal"]))
        samples["reader_up"].append((lab, r["state"] == "connected"))
        for antenna, state in (r.get("antennas") or {}).items():
            samples["reader_antenna_up"].append(({**lab, "antenna": antenna},
                                                 state == "connected"))
        dec = r.get("decoder") or {}
        samples["decoder_frames_total"].append((lab, dec.get("frames", 0)))
        samples["decoder_bad_checksums_total"].append((lab, dec.get("bad_checksums", 0)))
        samples["decoder_bytes_discarded_total"].append((lab, dec.get("bytes_discarded", 0)))
    ing = snap.get("ingest") or {}
    samples["reads_accepted_total"].append(({}, ing.get("accepted", 0)))
    samples["reads_waiting"].append(({}, ing.get("waiting", 0)))
    samples["ingest_paused"].append(({}, ing.get("paused", False)))
    b = snap["buffer"]
    samples["buffer_reads_pending"].append(({}, b["readsPending"]))
    samples["buffer_events_pending"].append(({}, b["depth"]))
    samples["buffer_oldest_event_age_seconds"].append(({}, b["oldestEventAgeS"] or 0.0))
    samples["buffer_size_bytes"].append(({}, b["sizeBytes"]))
    samples["buffer_dropped_total"].append(({}, b["dropped"]))
    samples["buffer_dead_letters"].append(({}, b["deadLetters"]))
    samples["buffer_dead_letters_full"].append(({}, b.get("deadLettersFull", False)))
    samples["buffer_disk_full"].append(({}, b["diskFull"]))
    u = snap["uplink"]
    samples["uplink_connected"].append(({"broker": u["broker"]}, u["connected"]))
    for result, n in (snap.get("commands") or {}).items():
        samples["commands_total"].append(({"result": result}, n))
    samples["uplink_published_total"].append(({}, u["published"]))
    by_reason = u.get("refusedByReason") or {}
    if by_reason:
        for reason, n in sorted(by_reason.items()):
            samples["uplink_refused_total"].append(({"reason": str(reason)}, n))
    else:
        samples["uplink_refused_total"].append(({"reason": "any"}, u["refused"]))
    samples["uplink_inflight"].append(({}, u["inFlight"]))
    samples["uplink_events_delivered_total"].append(({}, u["deliveredEvents"]))
    synced = snap["clock"]["synchronised"]
    samples["clock_synchronised"].append(({}, synced))
    samples["tap_dropped_total"].append(({}, snap["tap"]["dropped"]))
    former = snap.get("former")
    if former is not None:  # None: EDGE_AGENT_FORMER=0
        samples["former_running"].append(({}, former["running"]))
        for key in ("starts", "batches", "events", "failures"):
            samples[f"former_{key}_total"].append(({}, former[key]))
    samples["healthy"].append(({}, snap["health"]["ok"]))

    lines: list[str] = []
    for name, kind, help_text in METRICS:
        full = PREFIX + name
        lines.append(f"# HELP {full} {help_text}")
        lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples[name]:
            text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{full}{{{text}}} {_num(value)}" if text else f"{full} {_num(value)}")
    return "\n".join(lines) + "\n"
