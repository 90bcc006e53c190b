"""Value parsers shared by the schema and the code that uses the values (pure, no I/O)."""

from __future__ import annotations

import codecs
import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """``512MiB`` / ``2GB`` / ``1048576`` -> bytes."""
    if isinstance(value, bool):
        # pydantic turns only ValueError into a validation error, so not TypeError here.
        raise ValueError("expected a size such as 512MiB or a number of bytes")  # noqa: TRY004
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError("expected a size such as 512MiB, 2GB or a number of bytes")


TERMINATOR_NAMES: dict[str, bytes | None] = {
    "CR": b"\r",
    "LF": b"\n",
    "CRLF": b"\r\n",
    "TAB": b"\t",
    "ETX": b"\x03",
    "NONE": None,
}


def parse_terminator(spec: str) -> bytes | None:
    """A config value -> terminator bytes: ``CR``, ``LF``, ``CRLF``, ``TAB``, ``ETX``, ``none``
    (timeout framing only), or any string with Python escapes such as ``"\\x03"`` or ``"#\\r"``.
    """
    named = TERMINATOR_NAMES.get(spec.strip().upper(), b"")
    if named != b"":
        return named
    try:
        raw = codecs.decode(spec, "unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as exc:
        raise ValueError(f"terminator {spec!r}: {exc}") from exc
    if not raw:
        raise ValueError("terminator is empty; use 'none' for timeout framing only")
    return raw


FUNCTION_KEY_NAMES: tuple[str, ...] = tuple(f"f{n}" for n in range(1, 13))


def parse_gs_substitute(spec: str) -> tuple[str, str | None]:
    """How a keyboard-wedge scanner types GS (0x1D): ``ctrl+]`` -> ("ctrl", None),
    ``f1``..``f12`` -> ("key", "f8"), ``none`` -> ("none", None), one printable character
    -> ("char", "|"); ValueError for anything else."""
    text = spec.strip()
    low = text.lower()
    if low in {"ctrl+]", "ctrl-]", "^]"}:
        return "ctrl", None
    if low == "none":
        return "none", None
    if low in FUNCTION_KEY_NAMES:
        return "key", low
    if len(spec) == 1 and spec.isprintable() and spec != " ":
        return "char", spec
    raise ValueError(f"gs_substitute {spec!r}: expected ctrl+], f1..f12, none or one "
                     "printable character such as '|'")
