"""The line-tracking YAML loader: YAML -> plain data with the line of every key path,
``${ENV}`` / ``${ENV:-default}`` expansion, then validation against the schema.

Every problem becomes a :class:`~agent.config.errors.ConfigIssue` with file and line; the
CLI prints them and exits with code 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.config.errors import ConfigError, ConfigIssue
from agent.config.schema import DRIVER_TAGS, AgentConfig

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
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        _open.add(id(node))
        try:
            return _construct_collection(node, loc, lines, file, issues, _open, _count)
        finally:
            _open.discard(id(node))
    assert isinstance(node, yaml.ScalarNode)
    value = _scalar(node)
    if isinstance(value, str) and "${" in value:
        value = _expand_env(value, file, node.start_mark.line + 1, _dotted(loc), issues)
    return value


def _construct_collection(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str, issues: list[ConfigIssue],
    _open: set[int], _count: list[int],
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
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


def _describe(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see README 'Configuration')"
    if kind == "literal_error":
        return f"got {err.get('input')!r}, expected one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"got {ctx.get('tag')!r}, expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"required key 'driver' is missing (expected {_drivers_text()})"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"got {err.get('input')!r}, {msg[0].lower()}{msg[1:]}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {err.get('input')!r})"


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
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(file, None, "", f"cannot read the file: {exc.strerror}")]) \
            from exc
    return parse_config_lines(text, file)


def line_of(lines: dict[Loc, int], *loc: str | int) -> int | None:
    """The line of a key path such as ``line_of(lines, "readers", 0, "port")``."""
    return _line_for(tuple(loc), lines)


def parse_config_lines(text: str, file: str = "<config>") -> tuple[AgentConfig, dict[Loc, int]]:
    issues: list[ConfigIssue] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
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
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "driver")
            issues.append(ConfigIssue(file, _line_for(loc, lines), _dotted(loc), _describe(err)))
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
