"""``edge-agent status`` and ``edge-agent tail``: ask the running agent over its Unix socket."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from agent.config import AgentConfig
from agent.fieldtools.server import RUN_DIR, socket_candidates


class AgentNotRunning(Exception):
    """No agent answers on any candidate socket."""


def default_candidates() -> list[Path]:
    out = [RUN_DIR / "agent.sock"]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(Path(xdg) / "edge-agent.sock")
    return out


def _connect(candidates: Sequence[Path], timeout_s: float) -> socket.socket:
    tried: list[str] = []
    for path in candidates:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except OSError as exc:
            s.close()
            tried.append(f"{path} ({exc.strerror or exc})")
            continue
        return s
    raise AgentNotRunning("no agent answers on " + ", ".join(tried))


def candidates_for(cfg: AgentConfig | None, sock: str | None) -> list[Path]:
    if sock:
        return [Path(sock)]
    if cfg is not None:
        return socket_candidates(cfg)
    return default_candidates()


def request_status(candidates: Sequence[Path], timeout_s: float = 5.0) -> dict[str, Any]:
    with _connect(candidates, timeout_s) as s:
        s.sendall(b'{"cmd":"status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    result: dict[str, Any] = json.loads(data)
    return result


def agent_running(candidates: Sequence[Path]) -> bool:
    try:
        request_status(candidates, timeout_s=2.0)
    except (AgentNotRunning, OSError, ValueError):
        return False
    return True


def stream_tail(candidates: Sequence[Path], reader: str | None) -> Iterator[dict[str, Any]]:
    s = _connect(candidates, 5.0)
    s.settimeout(None)
    try:
        s.sendall(json.dumps({"cmd": "tail", "reader": reader}).encode() + b"\n")
        with s.makefile("rb") as f:
            for line in f:
                yield json.loads(line)
    finally:
        s.close()


# ----------------------------------------------------------------------------- formatting


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB"):
        if x < 1024:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"


def format_status(snap: dict[str, Any]) -> str:
    h = snap["health"]
    lines = [
        f"edge-agent {snap['version']}  gateway {snap['gateway']['id']} at "
        f"{snap['gateway']['site']}  pid {snap['pid']}  up {_age(snap['uptimeS'])}  "
        f"health: {'OK' if h['ok'] else 'UNHEALTHY'}",
    ]
    lines += [f"  ! {r}" for r in h["reasons"]]
    rows = [("READER", "STATE", "FIRMWARE", "READS/S", "READS", "LAST ERROR")]
    rows += [(r["name"], r["state"], r["firmware"] or "-", f"{r['readRate']:.1f}",
              str(r["readsTotal"]), r["lastError"] or "-") for r in snap["readers"]]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append("  " + "  ".join(
            c.rjust(widths[i]) if i in (3, 4) else c.ljust(widths[i])
            for i, c in enumerate(row[:5])) + "  " + row[5])
    for r in snap["readers"]:  # what a network reader says about its antennas and GPIs
        parts = [f"ant {a} {'connected' if s == 'connected' else s.upper()}"
                 for a, s in (r.get("antennas") or {}).items()]
        parts += [f"GPI {p} {s}" for p, s in (r.get("gpi") or {}).items()]
        if r.get("inventoryActive") is not None:
            parts.append("inventory " + ("running" if r["inventoryActive"] else "waiting"))
        if parts:
            lines.append(f"    {r['name']}: " + ", ".join(parts))
    b = snap["buffer"]
    lines.append(
        f"BUFFER  depth {b['depth']} events (+{b['readsPending']} reads), oldest "
        f"{_age(b['oldestEventAgeS'])}, size {_size(b['sizeBytes'])}, dropped {b['dropped']}, "
        f"dead letters {b['deadLetters']}, disk full {'YES' if b['diskFull'] else 'no'}")
    u = snap["uplink"]
    lines.append(
        f"UPLINK  {'connected to' if u['connected'] else 'NOT connected to'} {u['broker']}, "
        f"in flight {u['inFlight']}/{u['window']}, delivered {u['deliveredEvents']} events in "
        f"{u['deliveredMessages']} messages, refused {u['refused']}"
        + (f" (last: {u['lastRefusal']})" if u["lastRefusal"] else ""))
    synced = snap["clock"]["synchronised"]
    lines.append("CLOCK   " + {True: "NTP-synchronised", False: "NOT synchronised (events are "
                                "marked clockSynced=false)", None: "unknown"}[synced])
    extra = []
    if snap.get("http"):
        extra.append(f"metrics http://{snap['http']}/metrics")
    if snap.get("socket"):
        extra.append(f"socket {snap['socket']}")
    if extra:
        lines.append("LOCAL   " + ", ".join(extra))
    return "\n".join(lines)


def format_item(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    t = str(item.get("time", ""))[11:23]
    if kind == "read":
        ant = f"ant {item['antenna']}" if item.get("antenna") is not None else "ant -"
        rssi = f"{item['rssiDbm']:.0f} dBm" if item.get("rssiDbm") is not None else "- dBm"
        text = f"{t} {item['reader']} {ant} {rssi:>8}  {item['epc']}  {item['uri']}"
        return f"{text}  {item['hri']}" if item.get("hri") else text
    if kind == "scan":
        return f"{t} {item['reader']} scan {item.get('symbology') or ''} {item['data']!r}"
    if kind == "event":
        epcs = " ".join(item.get("epcList", []))
        return f"{t} EVENT {item.get('eventType')} {item.get('action')} {epcs} " \
               f"[{','.join(item.get('readers', []))}] committed"
    if kind == "dropped":
        return f"... {item['count']} item(s) dropped: this viewer was too slow"
    if kind == "antenna":
        state = str(item.get("state", "?"))
        return (f"{t} {item.get('reader')} ant {item.get('antenna')} "
                f"{state.upper() if state != 'connected' else state}")
    if kind == "hello":
        who = item.get("reader") or ", ".join(item.get("readers", []))
        ants = "; ".join(f"{reader}: " + ", ".join(f"ant {a} {s}" for a, s in states.items())
                         for reader, states in (item.get("antennas") or {}).items())
        return f"tailing {who}; Ctrl-C to stop" + (f"\nantennas: {ants}" if ants else "")
    if kind == "error":
        return f"error: {item.get('error')}"
    return None


def print_tail(items: Iterator[dict[str, Any]], out: TextIO = sys.stdout, *,
               as_json: bool = False) -> None:
    for item in items:
        if "error" in item:
            raise AgentNotRunning(str(item["error"]))
        if as_json:
            if item.get("type") != "tick":
                out.write(json.dumps(item) + "\n")
        else:
            text = format_item(item)
            if text is not None:
                out.write(text + "\n")
        out.flush()
