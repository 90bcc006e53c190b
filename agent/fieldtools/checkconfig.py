"""``edge-agent check-config``: errors (exit 2) plus warnings for risky but valid settings.

Warnings use the same shape as errors, ``file:line: field.path: what is risky, what to do``,
and never change the exit code.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from agent.config import (
    AgentConfig,
    ConfigError,
    ConfigIssue,
    Loc,
    is_loopback,
    line_of,
    load_config_lines,
    read_secret_file,
)

MiB = 1024**2
BUFFER_MIN_BYTES = 10 * MiB
BUFFER_MAX_FS_FRACTION = 0.8
INFLIGHT_MAX = 1000
SILENCE_MIN_S = 1.0
PUBLISH_TIMEOUT_MIN_S = 2.0
COMMIT_INTERVAL_MAX_MS = 100.0
UNSTABLE_PORT_PREFIXES = ("/dev/ttyUSB", "/dev/ttyACM")


def _secret_files(model: BaseModel, loc: Loc) -> Iterator[tuple[Loc, Path]]:
    """Every ``*_file`` field set anywhere in the config, with its location."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        here = (*loc, name)
        if isinstance(value, BaseModel):
            yield from _secret_files(value, here)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _secret_files(item, (*here, i))
        elif name.endswith("_file") and value is not None:
            yield here, Path(value)


def secret_file_errors(cfg: AgentConfig, file: str, lines: dict[Loc, int]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for loc, path in _secret_files(cfg, ()):
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
        dotted = dotted.replace(".[", "[")
        try:
            read_secret_file(path, dotted, file=file, line=line_of(lines, *loc))
        except ConfigError as exc:
            issues.extend(exc.issues)
    return issues


def config_warnings(
    cfg: AgentConfig, file: str, lines: dict[Loc, int], *,
    disk_total: int | None = None,
) -> list[ConfigIssue]:
    """Risky settings that validate: each a ConfigIssue with the file and line."""
    out: list[ConfigIssue] = []

    def warn(loc: tuple[str | int, ...], message: str) -> None:
        dotted = ""
        for part in loc:
            dotted += f"[{part}]" if isinstance(part, int) else ("." if dotted else "") + part
        out.append(ConfigIssue(file, line_of(lines, *loc), dotted, message))

    m = cfg.uplink.mqtt
    if not is_loopback(m.host) and not m.tls_enabled:
        warn(("uplink", "mqtt", "host"),
             f"TLS is off towards the remote broker {m.host}: events and credentials travel in "
             "clear text; configure uplink.mqtt.tls (port 8883)")
    if m.inflight_window > INFLIGHT_MAX:
        warn(("uplink", "mqtt", "inflight_window"),
             f"{m.inflight_window} messages in flight is more than any broker grants "
             f"(Mosquitto: 20); expected 1..{INFLIGHT_MAX}, typically 20-100")
    if m.publish_timeout_s < PUBLISH_TIMEOUT_MIN_S:
        warn(("uplink", "mqtt", "publish_timeout_s"),
             f"{m.publish_timeout_s:g} s is shorter than a PUBACK takes over a slow mobile link: "
             f"every message would be sent twice; expected >= {PUBLISH_TIMEOUT_MIN_S:g} s")
    for i, r in enumerate(cfg.readers):
        if isinstance(r.port, str) and r.port.startswith(UNSTABLE_PORT_PREFIXES):
            warn(("readers", i, "port"),
                 f"{r.port} is numbered in plug order and may name another device after a "
                 "reboot; use the stable /dev/serial/by-id/... path (ls -l /dev/serial/by-id/)")
        if r.driver == "hid" and re.fullmatch(r"/dev/input/event\d+", str(r.port)):
            warn(("readers", i, "port"),
                 f"{r.port} is numbered in plug order and may name another device after a "
                 "reboot; use /dev/input/by-id/...-event-kbd or usb:VID:PID[:SERIAL] "
                 "(`edge-agent ports` lists both)")
        if r.silence_timeout_s < SILENCE_MIN_S:
            warn(("readers", i, "silence_timeout_s"),
                 f"{r.silence_timeout_s:g} s: an empty field between inventory rounds would "
                 f"reopen the reader again and again; expected >= {SILENCE_MIN_S:g} s")
        if r.reconnect_min_s > r.reconnect_max_s:
            warn(("readers", i, "reconnect_min_s"),
                 f"{r.reconnect_min_s:g} s is above reconnect_max_s {r.reconnect_max_s:g} s; "
                 "the backoff never grows; expected reconnect_min_s <= reconnect_max_s")
    b = cfg.buffer
    if b.commit_interval_ms > COMMIT_INTERVAL_MAX_MS:
        warn(("buffer", "commit_interval_ms"),
             f"{b.commit_interval_ms:g} ms delays every read this long before it is durable; "
             f"expected <= {COMMIT_INTERVAL_MAX_MS:g} ms (5 is the default)")
    if b.max_size < BUFFER_MIN_BYTES:
        warn(("buffer", "max_size"),
             f"{b.max_size} bytes holds only minutes of reads during an outage; expected "
             f">= 10MiB")
    total = disk_total if disk_total is not None else _filesystem_total(b.path)
    if total and b.max_size > BUFFER_MAX_FS_FRACTION * total:
        warn(("buffer", "max_size"),
             f"{b.max_size / MiB:.0f} MiB is more than 80% of the filesystem holding "
             f"{b.path} ({total / MiB:.0f} MiB): the disk fills before the buffer's limit "
             "applies; expected <= 80% of the filesystem")
    if cfg.http.enabled:
        host, _ = cfg.http.host_port
        if not is_loopback(host):
            warn(("http", "listen"),
                 f"/metrics and /health are reachable from the network on {cfg.http.listen} "
                 "without authentication; expected 127.0.0.1:PORT unless a firewall guards it")
            if cfg.http.ui and cfg.http.tls.cert is None:
                warn(("http", "listen"),
                     f"the technician's page on {cfg.http.listen} is served without TLS: the "
                     "admin password and the session cookie travel in clear text; set "
                     "http.tls.cert and http.tls.key (or listen on 127.0.0.1 and use an SSH "
                     "tunnel)")
    return out


def _filesystem_total(path: Path) -> int | None:
    p = Path(os.path.abspath(path))
    for candidate in (p, *p.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).total
            except OSError:
                return None
    return None


def check_config(path: str) -> tuple[AgentConfig | None, list[ConfigIssue], list[ConfigIssue]]:
    """(config or None, errors, warnings)."""
    try:
        cfg, lines = load_config_lines(path)
    except ConfigError as exc:
        return None, list(exc.issues), []
    errors = secret_file_errors(cfg, path, lines)
    return (None if errors else cfg), errors, config_warnings(cfg, path, lines)
