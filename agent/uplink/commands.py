"""Remote commands: parsing and HMAC verification (pure; no I/O, time and secret injected).

A command is published on ``{prefix}/{site}/{gateway}/cmd/<name>`` with a JSON payload::

    {"ts": 1718000000.0, "nonce": "8f3c...", "body": {...}, "sig": "<hex HMAC-SHA256>"}

``sig = HMAC-SHA256(secret, canonical)`` where ``canonical`` is the UTF-8 of
``name + "\\n" + json(body) + "\\n" + repr_ts + "\\n" + nonce`` with ``json(body)`` the
body serialised with sorted keys, separators ``(",", ":")`` and ``ensure_ascii=True``, and
``repr_ts`` the ``ts`` field exactly as it appears in the payload's JSON text after parsing
and re-serialising with ``json.dumps`` (an int stays ``1718000000``, a float ``1718000000.5``).
Accepted only if ``|now - ts| <= max_skew_s`` and the nonce was not seen within the window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "CommandTarget",
    "CommandVerifier",
    "canonical",
    "command_name",
    "parse_command",
    "sign",
]

COMMANDS: Final = frozenset(
    {"ping", "status", "reload", "set_reader_power", "set_reader_settings", "start_reader",
     "stop_reader"}
)
_NONCE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
MAX_PAYLOAD: Final = 64 * 1024


class CommandError(Exception):
    """A command refused; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    body: dict[str, Any]
    ts: float
    nonce: str


class CommandTarget(Protocol):
    """What the app offers to remote commands. Each returns the reply's ``result``."""

    def status(self) -> Mapping[str, Any]: ...

    async def reload(self) -> Mapping[str, Any]: ...

    async def set_reader_power(self, reader: str, dbm: Any) -> Mapping[str, Any]:
        """``dbm``: a number (every port) or {"port": dBm} (R2000 ports 1-8)."""
        ...

    async def set_reader_settings(self, reader: str, settings: Mapping[str, Any]
                                  ) -> Mapping[str, Any]:
        """``settings``: antennas / session / inventory / target / reader_mode / search_mode
        (the keys the reader's driver has); applied by a reconnect, then read back."""
        ...

    async def start_reader(self, reader: str) -> Mapping[str, Any]: ...

    async def stop_reader(self, reader: str) -> Mapping[str, Any]: ...


def _ts_text(ts: int | float) -> str:
    return json.dumps(ts)


def canonical(name: str, body: Mapping[str, Any], ts: int | float, nonce: str) -> bytes:
    body_text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{name}\n{body_text}\n{_ts_text(ts)}\n{nonce}".encode()


def sign(secret: bytes, name: str, body: Mapping[str, Any], ts: int | float, nonce: str) -> str:
    return hmac.new(secret, canonical(name, body, ts, nonce), hashlib.sha256).hexdigest()


def command_name(cmd_prefix: str, topic: str) -> str:
    """``.../cmd/<name>`` -> name; raises CommandError for anything else."""
    if not topic.startswith(cmd_prefix + "/"):
        raise CommandError("bad_topic", f"not a command topic: {topic!r}")
    name = topic[len(cmd_prefix) + 1:]
    if name not in COMMANDS:
        raise CommandError("unknown_command",
                           f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
    return name


MAX_DEPTH: Final = 8  # a command is {"body": {"dbm": {...}}}: 3 levels; json recurses
MAX_TOPIC_BYTES: Final = 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a command may carry")


def json_depth(payload: bytes) -> int:
    """Deepest [ / { nesting of a JSON text, counted before parsing (json.loads recurses, so
    50,000 brackets would raise RecursionError inside it). Brackets inside strings are not
    counted; invalid JSON gets some number and then fails to parse."""
    depth = deepest = 0
    in_string = escaped = False
    for b in payload:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def reply_topic_problem(topic: str, *, reply_prefix: str, own_base: str) -> str | None:
    """Why a command's Response Topic must not be used (None: it may). A valid MQTT publish
    topic (§4.7: no wildcards, no NUL, at most MAX_TOPIC_BYTES here), not a $SYS topic, under
    the configured reply prefix, and never one of the agent's own topics outside that prefix."""
    if not topic:
        return "empty response topic"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"response topic longer than {MAX_TOPIC_BYTES} bytes"
    if any(c in topic for c in "+#\x00"):
        return "response topic with a wildcard or NUL (not a publish topic)"
    if topic.startswith("$"):
        return "response topic under $ (broker-reserved)"
    if not (topic == reply_prefix or topic.startswith(reply_prefix.rstrip("/") + "/")):
        return f"response topic outside the reply prefix {reply_prefix!r}"
    own_reply = own_base + "/cmd-reply"
    if topic.startswith(own_base + "/") and not topic.startswith(own_reply + "/"):
        return "response topic is one of the agent's own topics"
    root = own_base.rsplit("/", 2)[0]
    if topic.startswith(root + "/") and not topic.startswith(own_base + "/") \
            and topic[len(root) + 1:].count("/") >= 1:
        return "response topic is another gateway's"
    return None


def parse_command(name: str, payload: bytes) -> tuple[Command, str]:
    """Parse the payload; returns the command and its claimed signature (not yet checked)."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError("malformed", f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    depth = json_depth(payload)
    if depth > MAX_DEPTH:
        raise CommandError("malformed", f"payload nests more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise CommandError("malformed", f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("malformed", "payload must be a JSON object")
    ts, nonce, body, sig = data.get("ts"), data.get("nonce"), data.get("body", {}), data.get("sig")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise CommandError("malformed", "'ts' must be a finite number (epoch seconds)")
    if not isinstance(nonce, str) or not _NONCE_RE.match(nonce):
        raise CommandError("malformed", "'nonce' must be 8-128 characters of [A-Za-z0-9_-]")
    if not isinstance(body, dict):
        raise CommandError("malformed", "'body' must be a JSON object")
    if not isinstance(sig, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sig):
        raise CommandError("malformed", "'sig' must be 64 hex digits (HMAC-SHA256)")
    return Command(name, body, ts, nonce), sig.lower()


class CommandVerifier:
    """Signature, timestamp window and nonce cache (a nonce is kept for 2 * max_skew_s)."""

    def __init__(self, secret: bytes, *, max_skew_s: float, clock: Callable[[], float],
                 max_nonces: int = 10_000) -> None:
        if not secret:
            raise ValueError("the command secret is empty")
        self._secret = secret
        self._skew = max_skew_s
        self._clock = clock
        self._max = max_nonces
        self._nonces: dict[str, float] = {}  # nonce -> forget after (clock time)

    def verify(self, cmd: Command, sig: str) -> None:
        expected = sign(self._secret, cmd.name, cmd.body, cmd.ts, cmd.nonce)
        if not hmac.compare_digest(expected, sig):
            raise CommandError("unauthorised", "bad signature")
        now = self._clock()
        if abs(now - cmd.ts) > self._skew:
            raise CommandError("stale", f"timestamp is {now - cmd.ts:+.0f} s off (allowed "
                               f"±{self._skew:g} s)")
        self._forget(now)
        if cmd.nonce in self._nonces:
            raise CommandError("replayed", "nonce already used")
        if len(self._nonces) >= self._max:
            raise CommandError("busy", "too many commands in the replay window; retry later")
        self._nonces[cmd.nonce] = now + 2 * self._skew

    def _forget(self, now: float) -> None:
        for nonce in [n for n, until in self._nonces.items() if until < now]:
            del self._nonces[nonce]


def reply_payload(name: str, *, ok: bool, result: Mapping[str, Any] | None = None,
                  error: CommandError | None = None, nonce: str | None = None) -> bytes:
    out: dict[str, Any] = {"command": name, "ok": ok}
    if nonce is not None:
        out["nonce"] = nonce
    if result is not None:
        out["result"] = dict(result)
    if error is not None:
        out["error"] = {"code": error.code, "message": error.message}
    return json.dumps(out, separators=(",", ":"), default=str).encode()


def require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        raise CommandError("bad_argument", f"body.{key} is missing or has the wrong type")
    return value
