"""Recent log lines for the page, and the support bundle (secrets removed)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.fieldtools.web.configedit import HIDDEN, redact

MAX_LINES = 200


class LogRing(logging.Handler):
    """The last :data:`MAX_LINES` log lines of this process (formatted like the text log)."""

    def __init__(self, maxlen: int = MAX_LINES) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=maxlen)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


def secret_values(cfg: AgentConfig) -> list[str]:
    """Every secret the config holds or points at (to scrub them from anything shown)."""
    out: list[str] = []
    m = cfg.uplink.mqtt
    c = cfg.uplink.commands
    if m.password:
        out.append(m.password)
    for f in (m.password_file, c.secret_file, m.tls.key_password_file):
        if f is not None:
            with contextlib.suppress(OSError):
                out.append(Path(f).read_text().rstrip("\n"))
    out.extend(os.environ[e] for e in (m.password_env, c.secret_env) if e and os.environ.get(e))
    return [s for s in out if len(s) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, HIDDEN)
    return text


def bundle(cfg: AgentConfig, config_path: Path | None, snapshot: dict[str, Any],
           doctor: list[dict[str, Any]], logs: list[str]) -> str:
    config_text = None
    if config_path is not None:
        try:
            config_text = redact(config_path.read_text())
        except OSError as exc:
            config_text = f"(cannot read {config_path}: {exc.strerror or exc})"
    doc = {
        "kind": "edge-agent support bundle",
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gateway": snapshot.get("gateway"),
        "version": snapshot.get("version"),
        "config": {"path": str(config_path) if config_path else None, "text": config_text},
        "status": snapshot,
        "buffer": snapshot.get("buffer"),
        "doctor": doctor,
        "logs": logs,
    }
    return scrub(json.dumps(doc, indent=1, default=str), secret_values(cfg)) + "\n"
