"""Recent log lines for the page, and the support bundle (secrets removed)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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


def _secret_fields(model: BaseModel) -> Iterator[tuple[str, object]]:
    """(field name, value) of every field anywhere in the config that is, or names where to
    find, a secret: ``password``, ``password_file``, ``secret_env``, ``key_password_file``..."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _secret_fields(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    yield from _secret_fields(item)
        elif value is not None and _SECRET_NAME.search(name):
            yield name, value


_SECRET_NAME = re.compile(r"password|passphrase|secret|token|private", re.IGNORECASE)


def secret_values(cfg: AgentConfig) -> list[str]:
    """Every secret the config holds or points at (to scrub them from anything shown)."""
    out: list[str] = []
    for name, value in _secret_fields(cfg):
        if name.endswith("_file"):
            with contextlib.suppress(OSError):
                out.append(Path(str(value)).read_text().rstrip("\n"))
        elif name.endswith("_env"):
            out.append(os.environ.get(str(value), ""))
        elif isinstance(value, str):
            out.append(value)
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
