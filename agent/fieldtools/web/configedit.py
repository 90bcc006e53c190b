"""Configuration from the page: check, apply with a backup, roll back by itself.

``check`` is the validation of ``edge-agent check-config`` (YAML with lines, the schema,
secret files, security rules, warnings). ``apply`` keeps the current file as ``<config>.bak``,
writes the new text atomically (temp + rename), notes ``<config>.apply.json`` ("probation")
and restarts the agent; at start the agent sees the note and waits ``http.apply_confirm_s``
for every enabled reader and the broker. Connected: the note says "confirmed". Not: the backup
is put back, the note says "rolled back" with the reason, and the agent restarts with it.

Secret values (``password:``, ``...secret...``) are never sent to the page: they are shown as
:data:`HIDDEN` and put back from the current file when the text comes back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, ConfigIssue, parse_config_lines
from agent.config.loader import is_secret_path
from agent.fieldtools.checkconfig import config_warnings, secret_file_errors
from agent.uplink.security import check_security

log = logging.getLogger(__name__)

HIDDEN = "<hidden secret>"
# key: value on one line (block style), the value not a nested block
_LINE_RE = re.compile(r"^(?P<head>\s*(?:-\s+)?)(?P<key>[A-Za-z_][\w-]*)(?P<sep>\s*:\s+)"
                      r"(?P<value>[^#\s].*?)\s*$")


def _secret_lines(text: str) -> list[tuple[int, str, str]]:
    """(index, key, value) of every block-style line holding a secret value."""
    out = []
    for i, line in enumerate(text.splitlines()):
        m = _LINE_RE.match(line)
        if m and is_secret_path((m["key"],)):
            out.append((i, m["key"], m["value"]))
    return out


_FLOW_RE = re.compile(r"(?P<key>[A-Za-z_][\w-]*)(?P<sep>\s*:\s*)(?P<value>[^,{}\s][^,{}]*)")


def redact(text: str) -> str:
    """The text with every secret value replaced by :data:`HIDDEN`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _LINE_RE.match(line)
        if m and is_secret_path((m["key"],)):
            lines[i] = f'{line[:m.start("value")]}"{HIDDEN}"'
        elif "{" in line:  # flow style: {user: u, password: x}
            lines[i] = _FLOW_RE.sub(
                lambda f: f'{f["key"]}{f["sep"]}"{HIDDEN}"'
                if is_secret_path((f["key"],)) else f[0], line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def unredact(new_text: str, current_text: str) -> str:
    """Put the current file's secret values back where the page sent :data:`HIDDEN`."""
    current: dict[str, list[str]] = {}
    for _, key, value in _secret_lines(current_text):
        current.setdefault(key, []).append(value)
    seen: dict[str, int] = {}
    lines = new_text.splitlines()
    for i, key, value in _secret_lines(new_text):
        n = seen.get(key, 0)
        seen[key] = n + 1
        if value.strip("\"'") != HIDDEN:
            continue
        olds = current.get(key, [])
        if n >= len(olds):
            raise ConfigError([ConfigIssue("<page>", i + 1, key, f"{HIDDEN} stands for a value "
                                           "the current file does not have; type the value")])
        head, _, _ = lines[i].partition(":")
        lines[i] = f"{head}: {olds[n]}"
    return "\n".join(lines) + ("\n" if new_text.endswith("\n") else "")


@dataclass(slots=True)
class CheckResult:
    cfg: AgentConfig | None
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def issue(i: ConfigIssue) -> dict[str, Any]:
            return {"line": i.line, "path": i.path, "message": i.message, "text": str(i)}
        return {"ok": self.cfg is not None, "errors": [issue(i) for i in self.errors],
                "warnings": [issue(i) for i in self.warnings]}


def check_text(text: str, file: str) -> CheckResult:
    """What ``edge-agent check-config`` says about this text (as if it were ``file``)."""
    try:
        cfg, lines = parse_config_lines(text, file)
    except ConfigError as exc:
        return CheckResult(None, list(exc.issues))
    errors = secret_file_errors(cfg, file, lines)
    report = check_security(cfg)
    errors += [ConfigIssue(file, None, "security", e) for e in report.errors]
    warnings = config_warnings(cfg, file, lines)
    warnings += [ConfigIssue(file, None, "security", w) for w in report.warnings]
    return CheckResult(None if errors else cfg, errors, warnings)


def not_writable(path: Path) -> str | None:
    """Why the agent cannot replace ``path`` (temp file + rename + backup in its directory),
    or None."""
    parent = path.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"the agent may not write {parent} (its user, or the systemd unit: "
                "ProtectSystem=strict keeps /etc read-only); edit the file over SSH and restart "
                "the agent, or allow it: sudo sh deploy/install.sh --web-admin "
                "(docs/field-tools.md, \"Changing the configuration\")")
    if path.exists() and not os.access(path, os.W_OK):
        return f"the agent may not write {path}"
    return None


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (temp + fsync + rename, mode kept); the old file becomes
    ``<path>.bak``. Returns the backup's path."""
    backup = path.with_name(path.name + ".bak")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    if path.exists():
        shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


def note_path(config: Path) -> Path:
    return config.with_name(config.name + ".apply.json")


def read_note(config: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(note_path(config).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_note(config: Path, note: dict[str, Any]) -> None:
    write_atomic(note_path(config), json.dumps(note, indent=1) + "\n")
    note_path(config).with_name(note_path(config).name + ".bak").unlink(missing_ok=True)


def roll_back(config: Path, note: dict[str, Any], reason: str) -> None:
    """Put the backup back and say why in the note (and the log)."""
    backup = Path(note["backup"])
    shutil.copy2(backup, config)
    write_note(config, {**note, "state": "rolled back", "reason": reason,
                        "finishedAt": time.time()})
    log.error("config apply: %s; the previous configuration %s is restored from %s and the "
              "agent restarts with it", reason, config, backup)


def _set_key_line(text: str, lines: dict[Any, int], index: int, key: str, value: str) -> str:
    """``key: value`` of reader ``index``: its line rewritten (comment after it kept), or a
    new line after the reader's ``name:``."""
    out = text.splitlines()
    at = lines.get(("readers", index, key))
    if at is not None:
        m = re.match(rf"^(\s*(?:-\s+)?{key}\s*:[ \t]*)(?P<old>[^#]*?)(?P<rest>\s+#.*)?$",
                     out[at - 1])
        if m is None:
            raise ValueError(f"{key} is not on a line of its own; edit it in Configuration")
        if not m["old"].strip():  # a block list of scalars below: "  - 1" lines, replaced
            col = len(m[1]) - len(m[1].lstrip(" -"))
            end = at
            while end < len(out) and re.match(r"^\s*-\s+[^:#{}\[\]]+?\s*(#.*)?$", out[end]) \
                    and len(out[end]) - len(out[end].lstrip()) >= col:
                end += 1
            if end == at:
                raise ValueError(f"{key} is not a one-line value or a list of scalars; edit it "
                                 "in Configuration")
            del out[at:end]
        head = m[1] if m[1].endswith((" ", "\t")) else m[1] + " "
        out[at - 1] = f"{head}{value}{m['rest'] or ''}"
    else:
        name_at = lines.get(("readers", index, "name"))
        if name_at is None:
            raise ValueError("cannot find the reader's name line; edit it in Configuration")
        m = re.match(r"^(\s*)(-\s+)?name\s*:", out[name_at - 1])
        if m is None:
            raise ValueError("the reader is written in flow style; edit it in Configuration")
        indent = len(m[1]) + len(m[2] or "")
        out.insert(name_at, " " * indent + f"{key}: {value}")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _set_power_line(text: str, lines: dict[Any, int], index: int, value: str) -> str:
    return _set_key_line(text, lines, index, "power_dbm", value)


def save_power(config: Path, reader: str, power: int | dict[int, int]) -> Path:
    """Write ``power_dbm`` of ``reader`` into the YAML (comments and layout kept); validated
    before it is written; returns the backup's path."""
    text = config.read_text()
    cfg, lines = parse_config_lines(text, str(config))
    index = next((i for i, r in enumerate(cfg.readers) if r.name == reader), None)
    if index is None:
        raise ValueError(f"reader {reader!r} is not in {config}")
    value = str(power) if isinstance(power, int) else (
        "{" + ", ".join(f"{p}: {d}" for p, d in sorted(power.items())) + "}")
    new = _set_power_line(text, lines, index, value)
    parse_config_lines(new, str(config))  # raises ConfigError when it would not load
    why = not_writable(config)
    if why:
        raise ValueError(why)
    return write_atomic(config, new)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"cannot write {value!r} as a reader setting")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a quoted YAML string


def save_settings(config: Path, reader: str, settings: dict[str, Any]) -> Path:
    """Write reader settings (antennas, session, inventory, ...) of ``reader`` into the YAML
    (comments and layout kept); the result must load and carry exactly these values, else
    nothing is written. Returns the backup's path."""
    text = config.read_text()
    cfg, lines = parse_config_lines(text, str(config))
    index = next((i for i, r in enumerate(cfg.readers) if r.name == reader), None)
    if index is None:
        raise ValueError(f"reader {reader!r} is not in {config}")
    new = text
    for key, value in settings.items():
        if not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"not a setting: {key!r}")
        _, lines = parse_config_lines(new, str(config))
        new = _set_key_line(new, lines, index, key, _yaml_value(value))
    checked, _ = parse_config_lines(new, str(config))  # raises ConfigError when it would not load
    got = checked.readers[index]
    wrong = [k for k, v in settings.items() if getattr(got, k, None) != v]
    if wrong:
        raise ValueError(f"the edited file would not carry {', '.join(wrong)} as set; edit it "
                         "in Configuration")
    why = not_writable(config)
    if why:
        raise ValueError(why)
    return write_atomic(config, new)
