"""The line-tracking YAML loader: YAML -> plain data with the line of every key path,
``${ENV}`` / ``${ENV:-default}`` expansion, then validation against the schema.

Every problem becomes a :class:`~agent.config.errors.ConfigIssue` with file and line; the
CLI prints them and exits with code 2.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.config.errors import ConfigError, ConfigIssue
from agent.config.schema import DRIVER_TAGS, MISSING_HINTS, AgentConfig

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


Loc = tuple[str | int, ...]


def _expand_env(value: str, file: str, line: int, path: str, issues: list[ConfigIssue]) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        issues.append(
            ConfigIssue(file, line, path, f"environment variable {name} is not set "
                        f"(set it, or write ${{{name}:-default}})")
        )
        return ""

    return _ENV_RE.sub(repl, value)


_MAX_NODES = 100_000  # a config has hundreds; aliases of aliases can expand to billions
_MAX_DEPTH = 32  # a config nests 5 deep; PyYAML's composer recurses and would overflow the stack
_MAX_FILE_BYTES = 1024**2  # a config is a few KiB; anything larger is the wrong file
_MAX_SHOWN = 60  # characters of an offending value quoted back in a message

# The tags a config may carry: YAML's core schema. ``!!python/object`` and friends are refused
# (SafeLoader would refuse them too, but only when the value is constructed).
_CORE = "tag:yaml.org,2002:"
_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq",
                             "timestamp", "binary")}

# Keys whose values are secrets: never quoted back in a message (issue 13).
_SECRET_KEY_RE = re.compile(r"password|passphrase|secret|token|private", re.IGNORECASE)


class _AliasError(Exception):
    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.issue = (line, path, message)


def _construct(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str, issues: list[ConfigIssue],
    _open: set[int] | None = None, _count: list[int] | None = None,
) -> Any:
    """YAML node -> plain data, recording the line of every key path.

    Anchors and aliases are expanded; an alias used inside its own anchor (a cycle) or an
    expansion past ``_MAX_NODES`` nodes raises :class:`_AliasError` (a config error, never a
    RecursionError or a hang).
    """
    lines[loc] = node.start_mark.line + 1
    if _open is None:
        _open, _count = set(), [0]
    assert _count is not None
    _count[0] += 1
    if _count[0] > _MAX_NODES:
        raise _AliasError(node.start_mark.line + 1, _dotted(loc),
                          f"the document expands to more than {_MAX_NODES} values "
                          "(aliases of aliases?); expected a plain configuration")
    if id(node) in _open:
        raise _AliasError(node.start_mark.line + 1, _dotted(loc),
                          "an alias refers to its own anchor (a cycle); expected a value "
                          "that does not contain itself")
    line = node.start_mark.line + 1
    if node.tag not in _TAGS:
        issues.append(ConfigIssue(file, line, _dotted(loc), f"the YAML tag "
                                  f"{node.tag.replace(_CORE, '!!')} is not allowed in a config; "
                                  "expected a plain value (remove the tag)"))
        return None
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        _open.add(id(node))
        try:
            return _construct_collection(node, loc, lines, file, issues, _open, _count)
        finally:
            _open.discard(id(node))
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = _scalar(node)
    except (ValueError, OverflowError, TypeError, yaml.YAMLError) as exc:
        # !!int abc, !!timestamp 2001-02-30, a 5,000-digit number: PyYAML raises while
        # constructing; the technician gets the line and what is wrong instead of a traceback.
        shown = _shown(node.value, loc)
        why = getattr(exc, "problem", None) or str(exc)
        issues.append(ConfigIssue(file, line, _dotted(loc), f"cannot read {shown} as "
                                  f"{node.tag.replace(_CORE, '')}: {_clip(why)}; expected a "
                                  "plain value (quote it to keep it as text)"))
        return None
    if isinstance(value, float) and not math.isfinite(value):
        issues.append(ConfigIssue(file, line, _dotted(loc), f"got {node.value}, expected a "
                                  "finite number"))
        return None
    if isinstance(value, str) and "${" in value:
        value = _expand_env(value, file, line, _dotted(loc), issues)
    return value


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def is_secret_path(loc: tuple[Any, ...]) -> bool:
    """True when the key path names a secret value (``uplink.mqtt.password``), whose value is
    never quoted back. ``password_file`` / ``*_env`` name where a secret is, not the secret."""
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    return bool(_SECRET_KEY_RE.search(last)) and not last.endswith(("_file", "_env"))


def _shown(value: object, loc: tuple[Any, ...]) -> str:
    """A value quoted back in a message: clipped, and hidden where it is (or holds) a secret."""
    if is_secret_path(loc):
        return "<hidden secret value>"
    return _clip(repr(_redact(value)))


def _redact(value: object) -> object:
    if isinstance(value, dict):
        return {k: "<hidden>" if isinstance(k, str) and is_secret_path((k,)) else _redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _construct_collection(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str, issues: list[ConfigIssue],
    _open: set[int], _count: list[int],
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(file, key_node.start_mark.line + 1, _dotted(loc),
                                          "a key is a list or a mapping; expected a plain name "
                                          "such as 'gateway'"))
                continue
            key = str(key_node.value)
            if key in out:
                issues.append(ConfigIssue(file, key_node.start_mark.line + 1,
                                          _dotted((*loc, key)), "key appears twice"))
            child = (*loc, key)
            out[key] = _construct(value_node, child, lines, file, issues, _open, _count)
            lines[child] = key_node.start_mark.line + 1
        return out
    return [
        _construct(item, (*loc, i), lines, file, issues, _open, _count)
        for i, item in enumerate(node.value)
    ]


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    # pydantic adds the discriminator tag ('r2000') and validator names to locations.
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in DRIVER_TAGS or part.startswith("function-")):
            continue
        out.append(part)
    return tuple(out)


def _describe(err: Any, loc: Loc) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    ctx = err.get("ctx") or {}
    shown = _shown(err.get("input"), loc)
    if kind == "missing":
        hint = MISSING_HINTS.get(str(loc[-1])) if loc else None
        return f"required key is missing (expected {hint})" if hint else "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see README 'Configuration')"
    if kind == "literal_error":
        return f"got {shown}, expected one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"got {ctx.get('tag')!r}, expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"required key 'driver' is missing (expected {_drivers_text()})"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"got {shown}, {msg[0].lower()}{msg[1:]}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {shown})"


def _drivers_text() -> str:
    tags = sorted(DRIVER_TAGS)
    return ", ".join(tags[:-1]) + f" or {tags[-1]}"


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Load and validate a config file; raise :class:`ConfigError` listing every problem."""
    return load_config_lines(path)[0]


def parse_config(text: str, file: str = "<config>") -> AgentConfig:
    return parse_config_lines(text, file)[0]


def load_config_lines(path: str | os.PathLike[str]) -> tuple[AgentConfig, dict[Loc, int]]:
    """Like :func:`load_config`, also returning the line of every key (for warnings)."""
    file = str(path)
    return parse_config_lines(_read_text(path, file), file)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _read_text(path: str | os.PathLike[str], file: str) -> str:
    """The file's text, or a :class:`ConfigError` saying why not. Only a regular file is
    opened: reading a FIFO would block start-up forever, a device would never end."""
    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigIssue(file, line, "", message)])

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise fail(f"is {kind}; expected a YAML config file (check the -c path)")
        if st.st_size > _MAX_FILE_BYTES:
            raise fail(f"is {st.st_size} bytes; expected a YAML config of at most "
                       f"{_MAX_FILE_BYTES // 1024} KiB (is this the right file?)")
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open does not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise fail(f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8; expected "
                   "a text file saved as UTF-8 (a binary file, or an editor's Latin-1?)",
                   line) from None


def line_of(lines: dict[Loc, int], *loc: str | int) -> int | None:
    """The line of a key path such as ``line_of(lines, "readers", 0, "port")``."""
    return _line_for(tuple(loc), lines)


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting deeper than ``_MAX_DEPTH`` before composing: PyYAML's parser is a state
    machine, its composer recurses (``[[[[...]]]]`` 5,000 deep is a RecursionError)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ConfigError([ConfigIssue(file, line, "", f"nested more than {_MAX_DEPTH} "
                                               "levels deep; expected a plain configuration")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_config_lines(text: str, file: str = "<config>") -> tuple[AgentConfig, dict[Loc, int]]:
    issues: list[ConfigIssue] = []
    try:
        _check_depth(text, file)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        position = getattr(exc, "position", None)  # a ReaderError (a NUL byte) has no mark
        if line is None and isinstance(position, int):
            line = text[:position].count("\n") + 1
        if isinstance(exc, yaml.reader.ReaderError):
            c = exc.character
            code = ord(c) if isinstance(c, str) else int(c)
            problem = f"the character U+{code:04X} is not allowed in YAML text (a binary file?)"
        else:
            problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(file, line, "", f"not valid YAML: {problem}")]) from exc
    if root is None:
        raise ConfigError([ConfigIssue(file, 1, "", "the file is empty; expected the keys "
                                       "gateway, readers, buffer and uplink")])
    lines: dict[Loc, int] = {}
    try:
        data = _construct(root, (), lines, file, issues)
    except _AliasError as exc:
        line, path, message = exc.issue
        raise ConfigError([ConfigIssue(file, line, path, message)]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "expected a mapping with the keys gateway, "
                                       "readers, buffer and uplink")])
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        reported = {i.path for i in issues}
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            if _dotted(loc) in reported:
                continue  # the value was already refused while reading the YAML
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "driver")
            issues.append(ConfigIssue(file, _line_for(loc, lines), _dotted(loc),
                                      _describe(err, loc)))
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    return cfg, lines


def read_secret_file(path: str | os.PathLike[str], field: str, *, file: str = "<config>",
                     line: int | None = None) -> str:
    """The secret a ``*_file`` key points at (``password_file`` -> ``password``).

    The file's text with one trailing newline stripped (``echo secret > file`` writes one).
    Raises :class:`ConfigError` naming the config file, line and field when it cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigIssue(
            file, line, field, f"cannot read the secret file {str(path)!r}: {why}; expected a "
            "readable file holding the secret (check its path and that the agent's user may "
            "read it)")]) from exc
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
