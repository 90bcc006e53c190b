"""MQTT 5 uplink: an asyncio bridge over paho-mqtt that reports each message's PUBACK.

Why paho, MQTT 5 and this shape (docs/design.md §6):

* Only MQTT 5 tells a refused message from a delivered one: over 3.1.1 Mosquitto answers a
  normal PUBACK for a message it drops (ACL denial, oversize). ``publish()`` returns the PUBACK's
  reason code; the caller deletes its buffer row only when ``PublishResult.ok``.
* paho's ``wait_for_publish()`` / ``is_published()`` say "published" for a *refused* message, so
  we never use them: ``on_publish(client, userdata, mid, reason_code, properties)`` is the truth.
* paho ignores the broker's Receive Maximum and Maximum Packet Size from CONNACK. We enforce
  both: at most ``window = min(cfg.inflight_window, Receive Maximum)`` messages are held by paho
  at any time (counted here, since after a reconnect paho re-sends everything it holds at once,
  whatever its own inflight limit; its ``max_queued_messages`` / ``max_inflight_messages`` are
  set to the configured window as a backstop; paho refuses to change them while connected),
  and a PUBLISH larger than Maximum Packet Size is refused here
  with :class:`PacketTooLargeError` (Mosquitto would drop the connection with 0x95, paho would
  re-send the packet after reconnecting and the connection would loop forever).

Threads: paho's network thread (``loop_start``) runs the callbacks. Each callback only hands
its facts to the event loop with ``call_soon_threadsafe``; every piece of state (pending
futures, window, connection state) lives on the event loop and is touched by it alone, so no
lock is shared with paho and ``publish()`` is never called while holding a lock that
``on_publish`` takes. The "PUBACK before publish() returned the mid" race cannot bite either:
``publish()`` registers the mid in the same event-loop step in which paho returns it, and the
PUBACK handler can only run in a later step. Every callback is guarded: an exception escaping a
paho callback would kill its network thread.

Disconnects do not fail in-flight publishes: the session is persistent (clean_start=False,
Session Expiry Interval, stable client id) and paho re-sends unacknowledged QoS 1 messages after
reconnecting, so the future resolves then; the caller's timeout covers the rest. A caller that
gives up (timeout or cancel) leaves the message to paho: its mid is kept as *abandoned* until
its late PUBACK arrives (then ignored, counted) so the window accounting stays exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.uplink.security import build_ssl_context, resolve_password

_CS_DISCONNECTING: Final = _ConnectionState.MQTT_CS_DISCONNECTING
_CS_DISCONNECTED: Final = _ConnectionState.MQTT_CS_DISCONNECTED

__all__ = [
    "InboundMessage",
    "MqttUplink",
    "PacketTooLargeError",
    "PublishResult",
    "PublishTimeout",
    "UplinkClosedError",
    "UplinkError",
    "UplinkNotConnected",
    "UplinkStats",
    "Will",
    "publish_packet_size",
]

log = logging.getLogger(__name__)

MQTT_DEFAULT_RECEIVE_MAXIMUM: Final = 65535  # MQTT 5 §3.2.2.3.3: absent = 65,535
MQTT_MAX_PACKET_SIZE: Final = 268_435_455 + 5  # largest remaining length + fixed header
RC_NO_MATCHING_SUBSCRIBERS: Final = 0x10
RC_PACKET_TOO_LARGE: Final = 0x95


# ----------------------------------------------------------------------------- errors


class UplinkError(Exception):
    """Base of the uplink's errors."""


class UplinkNotConnected(UplinkError):
    """publish() was called while the broker connection is down; nothing was handed to paho."""


class PublishTimeout(UplinkError):
    """No PUBACK within the timeout. The message may still be delivered later (at least once)."""


class UplinkClosedError(UplinkError):
    """The uplink was closed before the PUBACK arrived, or publish() was called after aclose()."""


class PacketTooLargeError(UplinkError):
    """The PUBLISH packet exceeds the broker's Maximum Packet Size; it was not sent."""

    def __init__(self, size: int, limit: int, topic: str) -> None:
        super().__init__(
            f"PUBLISH to {topic!r} is {size} bytes, the broker's Maximum Packet Size is {limit}"
        )
        self.size = size
        self.limit = limit
        self.topic = topic


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The broker's PUBACK for one message: reason codes below 0x80 mean accepted."""

    reason_code: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.reason_code < 0x80


@dataclass(frozen=True, slots=True)
class Will:
    """A last-will (or birth) message. The will is set before connecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkStats:
    connected: bool
    connects: int  # successful CONNACKs
    reconnects: int  # successful CONNACKs after the first
    connection_losses: int
    connect_failures: int  # attempts that did not end in a successful CONNACK
    published_ok: int
    published_refused: int  # PUBACK reason code >= 0x80
    publish_timeouts: int  # callers that gave up (timeout or cancel) before the PUBACK
    late_acks: int  # PUBACKs that arrived after their caller gave up
    dropped_too_large: int  # held by paho, dropped when a new CONNACK lowered the limit
    in_flight: int  # messages paho holds (waited for + abandoned)
    window: int


Handler = Callable[[InboundMessage], object]


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it untyped


def _pack(properties: Properties) -> bytes:
    return bytes(properties.pack())  # type: ignore[no-untyped-call]


def _varint_len(n: int) -> int:
    size = 1
    while n > 127:
        n //= 128
        size += 1
    return size


def publish_packet_size(
    topic: str, payload_len: int, *, qos: int = 1, properties: Properties | None = None
) -> int:
    """Size in bytes of the MQTT 5 PUBLISH packet (fixed header included, as Maximum Packet
    Size counts it): [0x3x][remaining length][topic:2+n][packet id:2 if qos][props][payload]."""
    props_len = len(_pack(properties)) if properties is not None else 1
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + props_len + payload_len
    return 1 + _varint_len(remaining) + remaining


def _mqtt_str(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def _read_varint(reader: asyncio.StreamReader) -> int:
    value, shift = 0, 0
    for _ in range(4):
        b = (await reader.readexactly(1))[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
    raise asyncio.IncompleteReadError(b"", None)  # malformed length: treat as garbage


def connect_packet(client_id: str, *, v5: bool, keepalive_s: int, username: str | None = None,
                   password: str | None = None) -> bytes:
    """CONNECT with clean start, no will (MQTT 5 §3.1 / 3.1.1 §3.1); v5 without properties
    (Session Expiry Interval absent = 0: the session ends with the connection)."""
    flags = 0x02  # clean start / clean session
    payload = _mqtt_str(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username.encode())
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password.encode())
    header = _mqtt_str(b"MQTT") + bytes([5 if v5 else 4, flags]) + keepalive_s.to_bytes(2, "big")
    if v5:
        header += b"\x00"  # no properties
    body = header + payload
    return b"\x10" + _varint(len(body)) + body


def _connack_text(code: int, v5: bool) -> str:
    if v5:
        try:
            name = str(ReasonCode(PacketTypes.CONNACK, identifier=code))
        except Exception:  # an unknown code: paho refuses to name it
            name = "unknown reason"
        return f"0x{code:02X} {name}"
    return f"{code} {paho.connack_string(code)}"


def _accept_out_of_spec_puback_codes() -> None:
    """Let paho parse PUBACK 0x95 (Packet too large).

    Mosquitto 2.0.x answers a PUBLISH larger than its ``message_size_limit`` with PUBACK 0x95,
    a code MQTT 5 defines for CONNACK/DISCONNECT only. paho 2.2 then calls the PUBACK malformed
    and closes the connection, re-sends the message after reconnecting, and loops forever.
    Adding PUBACK to the code's packet list makes the refusal an ordinary result (ok=False).
    Idempotent; paho copies the class table into each ReasonCode it creates.
    """
    names = ReasonCode.names
    entry = names.get(RC_PACKET_TOO_LARGE)
    if not entry or "Packet too large" not in entry:
        return
    packets = entry["Packet too large"]
    if PacketTypes.PUBACK in packets:
        return
    patched = dict(names)
    patched[RC_PACKET_TOO_LARGE] = {**entry, "Packet too large": [*packets, PacketTypes.PUBACK]}
    ReasonCode.names = MappingProxyType(patched)


_accept_out_of_spec_puback_codes()


def describe_connect_error(exc: OSError) -> str:
    """One line naming the layer that failed: DNS, TLS or TCP."""
    if isinstance(exc, socket.gaierror):
        return f"DNS: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: server certificate verify failed: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return f"TCP: {exc.strerror or exc or type(exc).__name__}"


class _PahoClient(paho.Client):
    """paho's client with our reconnect policy, run inside paho's own thread:

    * full-jitter backoff ``uniform(0, min(max, min * 2**attempt))`` instead of paho's plain
      doubling (``_reconnect_wait`` is the hook paho's loop calls between attempts);
    * an ordered broker list: a failed attempt moves to the next broker, a lost connection
      is first retried on the same one; ``failback()`` asks for the first broker next;
    * remembers why the last attempt failed (paho swallows the OSError).
    """

    last_connect_error: str | None = None
    brokers: tuple[tuple[str, int], ...] = ()
    broker_index = 0
    last_attempt_failed = False
    backoff_attempt = 0
    jitter_min_s = 0.5
    jitter_max_s = 30.0
    rng: random.Random = random.Random()  # noqa: S311 - jitter, not cryptography
    skip_wait = False
    in_handshake = False

    def reconnect(self) -> MQTTErrorCode:
        if self.brokers:
            if self.skip_wait:  # fail back: first broker, now
                self.broker_index = 0
            elif self.last_attempt_failed:
                self.broker_index = (self.broker_index + 1) % len(self.brokers)
            self._host, self._port = self.brokers[self.broker_index]
        self.skip_wait = False
        self.last_attempt_failed = True  # until a CONNACK says otherwise
        self.in_handshake = False
        try:
            return super().reconnect()
        except OSError as exc:
            # A socket created before the failure (TLS accepted, CONNECT refused by a reset)
            # would otherwise stay open until the next attempt, or for ever at shutdown.
            with contextlib.suppress(Exception):
                self._sock_close()
            reason = describe_connect_error(exc)
            if self.in_handshake and not reason.startswith("TLS"):
                reason = f"TLS handshake: {reason.removeprefix('TCP: ')}"
            self.last_connect_error = reason
            raise

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        """paho's own, minus its leak: a failed handshake left the SSLSocket open. Our
        context always checks the hostname (or, with verify off, nothing at all)."""
        ctx = self._ssl_context
        if ctx is None:
            raise ValueError("TLS requested without an SSL context")
        ssl_sock = ctx.wrap_socket(tcp_sock, server_hostname=self._host,
                                   do_handshake_on_connect=False)
        self.in_handshake = True
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        self.in_handshake = False
        return ssl_sock

    def _reconnect_wait(self) -> None:
        if self.skip_wait:
            return
        cap = min(self.jitter_max_s, self.jitter_min_s * 2 ** min(self.backoff_attempt, 30))
        self.backoff_attempt += 1
        deadline = time.monotonic() + self.rng.uniform(0, cap)
        while (self._state not in (_CS_DISCONNECTING, _CS_DISCONNECTED)
               and not self._thread_terminate and not self.skip_wait):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[PublishResult]
    topic: str
    size: int


def _guarded(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Never let an exception escape into paho's network thread (it would end the thread)."""

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        def wrapper(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("uplink: error in paho callback %s (ignored)", name)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return deco


# ----------------------------------------------------------------------------- the uplink


class MqttUplink:
    """One MQTT 5 connection with per-message PUBACK results.

    ``await start()`` returns at once; paho connects (and reconnects, with
    ``reconnect_min_s``..``reconnect_max_s`` exponential delays) in its own thread.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        client_id: str,
        will: Will | None = None,
        birth: Will | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not client_id:
            raise ValueError("client_id must not be empty: a persistent session needs a stable id")
        self._cfg = cfg
        self._client_id = client_id
        self._will = will
        self._birth = birth
        self._log = logger or log

        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self._closing = False
        self._connected = False
        self._fail_logged = False
        self._fail_seen: set[tuple[str, str]] = set()
        self._attempt_failed = False
        self._changed = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._receive_maximum = MQTT_DEFAULT_RECEIVE_MAXIMUM
        self._maximum_packet_size: int | None = None
        self._window = cfg.inflight_window
        self._pending: dict[int, _Pending] = {}
        self._abandoned: dict[int, str] = {}  # mid -> topic; paho still holds the message
        self._birth_due = False
        self._birth_mids: set[int] = set()  # birth messages paho holds (also in _abandoned)
        self._subs: list[tuple[str, int, Handler]] = []
        self._subs_snapshot: tuple[tuple[str, int], ...] = ()  # read by paho's thread

        self._connects = 0
        self._losses = 0
        self._connect_failures = 0
        self._ok = 0
        self._refused = 0
        self._timeouts = 0
        self._late_acks = 0
        self._dropped_too_large = 0
        self._probe_failures = 0

        self._v5 = cfg.protocol == "5"
        self._brokers = tuple(cfg.brokers)
        if self._v5:
            c = _PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=paho.MQTTv5, reconnect_on_failure=True)
        else:  # 3.1.1: persistent session = clean session off
            c = _PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=paho.MQTTv311, clean_session=False,
                            reconnect_on_failure=True)
        c.suppress_exceptions = True  # second line of defence behind _guarded
        c.brokers = self._brokers
        c.jitter_min_s = cfg.reconnect_min_s
        c.jitter_max_s = cfg.reconnect_max_s
        c.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._paho_log = self._log.getChild("paho")
        self._last_paho_error: str | None = None  # written by paho's thread, read by it too
        c.on_log = self._cb_log
        if cfg.username is not None:
            c.username_pw_set(cfg.username, resolve_password(cfg))
        self._ssl_context: ssl.SSLContext | None = None
        if cfg.tls_enabled:
            self._ssl_context = build_ssl_context(cfg)  # shared by paho and the probe
            c.tls_set_context(self._ssl_context)
            if not cfg.tls.verify:
                c.tls_insecure_set(True)
        c.max_inflight_messages_set(self._window)
        c.max_queued_messages_set(self._window)
        if will is not None:
            self._check_qos(will.qos, allow_zero=True)
            c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        c.on_pre_connect = self._cb_pre_connect
        c.on_connect = self._cb_connect
        c.on_connect_fail = self._cb_connect_fail
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_message = self._cb_message
        self._client = c

    # ------------------------------------------------------------------ properties

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def connection_changed(self) -> asyncio.Event:
        """An event set at the next connect or disconnect (a fresh one after each change).

        Take it *before* checking ``connected``:
        ``ev = up.connection_changed; if not up.connected: await ev.wait()``.
        """
        return self._changed

    @property
    def receive_maximum(self) -> int:
        """The broker's Receive Maximum from the last CONNACK (65535 if it sent none)."""
        return self._receive_maximum

    @property
    def maximum_packet_size(self) -> int | None:
        """The broker's Maximum Packet Size from the last CONNACK (None: no limit announced)."""
        return self._maximum_packet_size

    @property
    def window(self) -> int:
        """Messages that may be awaiting a PUBACK at once: min(configured, Receive Maximum)."""
        return self._window

    @property
    def in_flight(self) -> int:
        """Messages paho holds: publishes being waited for plus abandoned ones."""
        return len(self._pending) + len(self._abandoned)

    @property
    def pending_count(self) -> int:
        """Publishes whose callers are still waiting for a PUBACK."""
        return len(self._pending)

    @property
    def probe_failures(self) -> int:
        """Fail-back probes the first broker did not pass (TCP, TLS or MQTT refusal)."""
        return self._probe_failures

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> UplinkStats:
        return UplinkStats(
            connected=self._connected,
            connects=self._connects,
            reconnects=max(0, self._connects - 1),
            connection_losses=self._losses,
            connect_failures=self._connect_failures,
            published_ok=self._ok,
            published_refused=self._refused,
            publish_timeouts=self._timeouts,
            late_acks=self._late_acks,
            dropped_too_large=self._dropped_too_large,
            in_flight=self.in_flight,
            window=self._window,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._closed:
            raise UplinkClosedError("the uplink was closed")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        host, port = self._brokers[0]
        if self._v5:
            props = _properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._cfg.session_expiry_s
            self._client.connect_async(host, port, keepalive=self._cfg.keepalive_s,
                                       clean_start=False, properties=props)
        else:
            self._client.connect_async(host, port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()
        self._log.debug("uplink: connecting to %s as %s (MQTT %s, TLS %s)", self._where,
                        self._client_id, self._cfg.protocol,
                        "on" if self._cfg.tls_enabled else "off")

    @property
    def _where(self) -> str:
        host, port = self.broker
        return f"{host}:{port}"

    @property
    def broker(self) -> tuple[str, int]:
        """The broker of the current (or last) connection."""
        return self._brokers[self._client.broker_index]

    @property
    def on_primary(self) -> bool:
        return self._client.broker_index == 0

    def set_birth(self, birth: Will | None) -> None:
        """Replace the message published after each connect (e.g. with a fresh depth)."""
        self._birth = birth

    async def failback_probe(self, *, interval_s: float | None = None,
                             connect_timeout_s: float = 5.0) -> None:
        """Run forever: while connected to a failover broker, probe the first broker every
        ``interval_s`` with a real MQTT CONNECT (see :meth:`probe_first_broker`); when it
        answers CONNACK success, leave the current broker with a DISCONNECT 0x00 (no will)
        and reconnect to the first one at once.

        A broker that takes TCP but refuses MQTT (credentials, ACL, overload, a half-dead
        process) is not failed back to: the refusal is logged once per reason (WARNING),
        repeats at DEBUG, until a fail-back succeeds or the reason changes."""
        interval = self._cfg.failback_probe_s if interval_s is None else interval_s
        if len(self._brokers) < 2:
            return
        host, port = self._brokers[0]
        logged: str | None = None
        while not self._closed:
            await asyncio.sleep(interval)
            if self._closed or not self._connected or self.on_primary:
                continue
            ok, reason = await self.probe_first_broker(timeout_s=connect_timeout_s)
            if not ok:
                self._probe_failures += 1
                if reason != logged:
                    logged = reason
                    self._log.warning("uplink: first broker %s:%d not ready for fail-back: %s;"
                                      " staying on %s", host, port, reason, self._where)
                else:
                    self._log.debug("uplink: first broker %s:%d still not ready: %s", host,
                                    port, reason)
                continue
            if self._closed or not self._connected or self.on_primary:
                continue
            logged = None
            self._log.info("uplink: first broker %s:%d accepts MQTT again; failing back from "
                           "%s", host, port, self._where)
            self._client.skip_wait = True
            self._client._send_disconnect(  # paho internal: DISCONNECT without leaving the loop
                ReasonCode(PacketTypes.DISCONNECT, identifier=0) if self._v5 else None
            )

    async def probe_first_broker(self, *, timeout_s: float = 5.0) -> tuple[bool, str]:
        """One MQTT CONNECT to the first broker with the agent's TLS settings and credentials,
        client id ``<client id>-probe``, clean start, no will, session expiry 0 (so the
        broker keeps nothing and publishes no will for it); success only on a CONNACK with
        reason code 0, then DISCONNECT. Returns (ok, reason)."""
        host, port = self._brokers[0]
        try:
            async with asyncio.timeout(timeout_s):
                return await self._probe(host, port)
        except TimeoutError:
            return False, f"no CONNACK within {timeout_s:g} s"
        except (ssl.SSLError, OSError) as exc:
            return False, f"connect failed: {describe_connect_error(exc)}"

    async def _probe(self, host: str, port: int) -> tuple[bool, str]:
        ctx = self._ssl_context
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=host if ctx is not None else None)
        try:
            password = resolve_password(self._cfg) if self._cfg.username is not None else None
            writer.write(connect_packet(f"{self._client_id}-probe", v5=self._v5,
                                        keepalive_s=self._cfg.keepalive_s,
                                        username=self._cfg.username, password=password))
            await writer.drain()
            try:
                kind = (await reader.readexactly(1))[0]
                if kind != 0x20:
                    return False, f"answered 0x{kind:02X}... instead of a CONNACK (not MQTT?)"
                body = await reader.readexactly(await _read_varint(reader))
            except asyncio.IncompleteReadError:
                return False, "accepted TCP but closed the connection without a CONNACK"
            if len(body) < 2:
                return False, "answered a truncated CONNACK"
            code = body[1]
            if code != 0:
                return False, ("refused the MQTT connection: CONNACK "
                               f"{_connack_text(code, self._v5)}")
            writer.write(b"\xe0\x00")  # DISCONNECT, normal (v5: reason 0 may be omitted)
            with contextlib.suppress(OSError):
                await writer.drain()
            return True, "CONNACK success"
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def wait_connected(self, timeout_s: float | None = None) -> bool:
        """Wait until connected; False on timeout or if the uplink is closed."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self._connected:
                    if self._closed:
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return self._connected
        return True

    async def aclose(self, *, drain_s: float = 0.0) -> None:
        """Stop publishing, optionally wait ``drain_s`` for outstanding PUBACKs, then send
        DISCONNECT (reason 0: the broker discards the will) and stop paho's thread.
        Callers still waiting get :class:`UplinkClosedError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._birth_due = False
        if drain_s > 0 and self._pending and self._connected:
            try:
                async with asyncio.timeout(drain_s):
                    while self._pending:
                        self._slot_free.clear()
                        await self._slot_free.wait()
            except TimeoutError:
                self._log.warning(
                    "uplink: %d publishes still unacknowledged after %.1fs drain",
                    len(self._pending), drain_s,
                )
        self._closing = True
        if self._started:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
            # paho can stop its thread with a socket still open (a connect that failed after
            # the TLS handshake, a DISCONNECT not yet flushed): close it, never leak the fd.
            with contextlib.suppress(Exception):
                self._client._sock_close()
        was_connected = self._connected
        self._connected = False
        for mid, entry in list(self._pending.items()):
            if not entry.future.done():
                entry.future.set_exception(
                    UplinkClosedError(f"uplink closed before PUBACK (mid {mid})")
                )
        self._pending.clear()
        self._abandoned.clear()
        self._birth_mids.clear()
        self._slot_free.set()
        self._pulse()
        if was_connected:
            self._log.info("uplink: disconnected from %s (closed)", self._where)

    async def __aenter__(self) -> MqttUplink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ publish

    @staticmethod
    def _check_qos(qos: int, *, allow_zero: bool = False) -> None:
        if qos == 1 or (allow_zero and qos in (0, 1)):
            return
        # QoS 0 has no PUBACK; for QoS 2 paho ignores PUBREC reason codes (refusals are lost).
        raise ValueError(f"qos {qos} not supported: the uplink confirms QoS 1 only")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        content_type: str | None = None,
        timeout_s: float | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        correlation_data: bytes | None = None,
    ) -> PublishResult:
        """Send one QoS 1 message and return the broker's PUBACK.

        MQTT 5 properties (content type, user properties, correlation data) are left out over
        MQTT 3.1.1, which has none.

        Raises :class:`UplinkNotConnected` if the connection is down (nothing is queued),
        :class:`PacketTooLargeError` if the packet exceeds the broker's Maximum Packet Size,
        :class:`PublishTimeout` if no PUBACK came within ``timeout_s`` (default
        ``cfg.publish_timeout_s``; it also covers waiting for a free window slot) and
        :class:`UplinkClosedError` after ``aclose()``. A refused message is a *result*
        (``ok`` False), not an exception.
        """
        self._check_qos(qos)
        if self._closed:
            raise UplinkClosedError("the uplink is closed")
        if not self._connected:
            raise UplinkNotConnected(f"not connected to {self._where}")
        props: Properties | None = None
        if self._v5 and (content_type is not None or user_properties
                         or correlation_data is not None):
            props = _properties(PacketTypes.PUBLISH)
            if content_type is not None:
                props.ContentType = content_type
            if user_properties:
                props.UserProperty = list(user_properties)
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        size = publish_packet_size(topic, len(payload), qos=qos, properties=props)
        self._check_size(topic, size)
        timeout = self._cfg.publish_timeout_s if timeout_s is None else timeout_s
        entry: _Pending | None = None
        mid = -1
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._closed:
                        raise UplinkClosedError("the uplink is closed")
                    if not self._connected:
                        raise UplinkNotConnected(f"not connected to {self._where}")
                    if self.in_flight < self._window:
                        break
                    self._slot_free.clear()
                    await self._slot_free.wait()
                self._check_size(topic, size)  # the limit may have changed while we waited
                # No await between paho's publish() and registering its mid: the PUBACK
                # handler runs on this loop, so it cannot see the mid before we record it.
                info = self._client.publish(topic, payload, qos=qos, retain=retain,
                                            properties=props)
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    raise UplinkError(f"paho refused the message: {paho.error_string(info.rc)}")
                # MQTT_ERR_NO_CONN: the connection dropped a moment ago and paho has queued the
                # message in its session; it re-sends it after reconnecting, so we wait for it.
                loop = asyncio.get_running_loop()
                entry = _Pending(loop.create_future(), topic, size)
                self._pending[info.mid] = entry
                mid = info.mid
                return await entry.future
        except TimeoutError as exc:
            if entry is not None and entry.future.done() and not entry.future.cancelled():
                return entry.future.result()  # the PUBACK won the race against the timeout
            raise PublishTimeout(f"no PUBACK for {topic!r} within {timeout}s") from exc
        finally:
            if entry is not None and self._pending.get(mid) is entry:
                # The caller gave up (timeout/cancel): paho still holds the message and will
                # re-send it; keep its slot until its PUBACK comes and then ignore that.
                del self._pending[mid]
                if not self._closed:
                    self._abandoned[mid] = topic
                self._timeouts += 1

    def _check_size(self, topic: str, size: int) -> None:
        limit = self._maximum_packet_size
        if limit is not None and size > limit:
            raise PacketTooLargeError(size, limit, topic)
        if size > MQTT_MAX_PACKET_SIZE:
            raise PacketTooLargeError(size, MQTT_MAX_PACKET_SIZE, topic)

    # ------------------------------------------------------------------ subscribe

    async def subscribe(self, topic: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(msg)`` on the event loop for each message matching ``topic``
        (e.g. ``queue.put_nowait``). Re-subscribed after every reconnect."""
        if self._closed:
            raise UplinkClosedError("the uplink is closed")
        self._subs.append((topic, qos, handler))
        self._subs_snapshot = tuple((t, q) for t, q, _ in self._subs)
        if self._connected:
            rc, _mid = self._client.subscribe(topic, qos=qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._log.warning("uplink: subscribe %r not sent now (%s); will retry on connect",
                                  topic, paho.error_string(rc))

    # ------------------------------------------------------------------ paho thread side

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            self._log.debug("uplink: event loop closed; dropped %s", fn.__name__)

    @_guarded("on_log")
    def _cb_log(self, client: paho.Client, userdata: Any, level: int, buf: str) -> None:
        # paho logs a dropped socket at ERROR; we report state changes ourselves (once, with
        # this text as the reason), so its own lines go to DEBUG.
        if level == paho.MQTT_LOG_ERR:
            self._last_paho_error = buf
        self._paho_log.debug("%s", buf)

    @_guarded("on_pre_connect")
    def _cb_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._last_paho_error = None
        self._post(self._on_attempt)

    @_guarded("on_connect")
    def _cb_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._post(self._on_connect_failed, f"refused by broker: {reason_code}")
            return
        self._client.last_attempt_failed = False
        self._client.backoff_attempt = 0
        receive_max = getattr(properties, "ReceiveMaximum", None) or MQTT_DEFAULT_RECEIVE_MAXIMUM
        max_packet = getattr(properties, "MaximumPacketSize", None)
        window = max(1, min(self._cfg.inflight_window, int(receive_max)))
        dropped = self._drop_oversize_held(client, max_packet) if max_packet else []
        subs = self._subs_snapshot
        if subs:
            client.subscribe([(t, q) for t, q in subs])
        self._post(self._on_connected, bool(flags.session_present), int(receive_max),
                   int(max_packet) if max_packet else None, window, dropped)

    def _drop_oversize_held(self, client: paho.Client, limit: int) -> list[tuple[int, int]]:
        """Remove held messages that no longer fit a (lowered) Maximum Packet Size.

        Otherwise paho re-sends them, the broker disconnects us (0x95) and that repeats
        forever. Uses paho internals (``_out_messages``); without them we only warn.
        """
        messages = getattr(client, "_out_messages", None)
        mutex = getattr(client, "_out_message_mutex", None)
        if messages is None or mutex is None:
            return []
        dropped: list[tuple[int, int]] = []
        with mutex:
            for mid, m in list(messages.items()):
                size = publish_packet_size(m.topic, len(m.payload), qos=m.qos,
                                           properties=m.properties)
                if size > limit:
                    del messages[mid]
                    dropped.append((mid, size))
        return dropped

    @_guarded("on_connect_fail")
    def _cb_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        reason = self._client.last_connect_error or "connection attempt failed"
        self._post(self._on_connect_failed, reason)

    @_guarded("on_disconnect")
    def _cb_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        reason = str(reason_code)
        if flags.is_disconnect_packet_from_server:
            reason = f"broker sent DISCONNECT: {reason}"
        elif self._last_paho_error:
            reason = f"{reason} ({self._last_paho_error})"
        self._last_paho_error = None
        self._post(self._on_disconnected, reason)

    @_guarded("on_publish")
    def _cb_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = int(reason_code.value)
        reason = reason_code.getName()
        extra = getattr(properties, "ReasonString", None)
        if extra:
            reason = f"{reason}: {extra}"
        self._post(self._on_puback, mid, code, reason)

    @_guarded("on_message")
    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        inbound = InboundMessage(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            properties=getattr(msg, "properties", None),
        )
        self._post(self._on_message, inbound)

    # ------------------------------------------------------------------ event-loop side

    def _pulse(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _on_attempt(self) -> None:
        self._attempt_failed = False

    def _on_connected(
        self,
        session_present: bool,
        receive_max: int,
        max_packet: int | None,
        window: int,
        dropped: list[tuple[int, int]],
    ) -> None:
        if self._closing:
            return
        self._connects += 1
        self._connected = True
        self._fail_logged = False
        self._fail_seen.clear()
        self._receive_maximum = receive_max
        self._maximum_packet_size = max_packet
        self._window = window
        again = f" (reconnect #{self._connects - 1})" if self._connects > 1 else ""
        self._log.info(
            "uplink: connected to %s%s; session present=%s, receive maximum=%d, window=%d, "
            "maximum packet size=%s", self._where, again, session_present, receive_max, window,
            max_packet if max_packet is not None else "none",
        )
        for mid, size in dropped:
            self._dropped_too_large += 1
            entry = self._pending.pop(mid, None)
            topic = entry.topic if entry else self._abandoned.pop(mid, "?")
            assert max_packet is not None
            self._log.error(
                "uplink: dropped held message mid %d to %r: %d bytes exceeds the new maximum "
                "packet size %d", mid, topic, size, max_packet,
            )
            if entry is not None and not entry.future.done():
                entry.future.set_exception(PacketTooLargeError(size, max_packet, topic))
        self._pulse()
        if self._birth is not None:
            self._birth_due = True
        self._send_birth_if_due()
        self._slot_free.set()

    def _on_connect_failed(self, reason: str) -> None:
        if self._closing or self._attempt_failed:
            return  # paho reports a refused CONNACK both as on_connect and on_disconnect
        self._attempt_failed = True
        self._connect_failures += 1
        key = (self._where, reason)
        if key not in self._fail_seen:  # once per (broker, reason) until the next connect
            self._fail_seen.add(key)
            self._fail_logged = True
            self._log.warning(
                "uplink: connect failed: %s (%s); retrying with full-jitter backoff up to %g s",
                reason, self._where, self._cfg.reconnect_max_s,
            )
        else:
            self._log.debug("uplink: connect failed again: %s", reason)

    def _on_disconnected(self, reason: str) -> None:
        if self._closing:
            return
        if not self._connected:
            self._on_connect_failed(reason)
            return
        self._connected = False
        self._losses += 1
        self._fail_logged = False
        self._attempt_failed = True  # this connection's end is not a failed attempt
        self._log.warning(
            "uplink: connection lost: %s (%s); %d messages await re-send",
            reason, self._where, self.in_flight,
        )
        self._pulse()
        self._slot_free.set()  # waiters re-check and raise UplinkNotConnected

    def _on_puback(self, mid: int, code: int, reason: str) -> None:
        entry = self._pending.pop(mid, None)
        if entry is not None:
            result = PublishResult(code, reason)
            if result.ok:
                self._ok += 1
            else:
                self._refused += 1
                self._log.warning("uplink: broker refused message to %r: 0x%02X %s",
                                  entry.topic, code, reason)
            if not entry.future.done():
                entry.future.set_result(result)
        elif mid in self._birth_mids:
            self._birth_mids.discard(mid)
            self._abandoned.pop(mid, None)
            level = logging.DEBUG if code < 0x80 else logging.WARNING
            self._log.log(level, "uplink: PUBACK for birth message: 0x%02X %s", code, reason)
        elif mid in self._abandoned:
            topic = self._abandoned.pop(mid)
            self._late_acks += 1
            self._log.info("uplink: late PUBACK for abandoned message to %r: 0x%02X %s",
                           topic, code, reason)
        else:
            self._log.debug("uplink: PUBACK for unknown mid %d (0x%02X %s)", mid, code, reason)
        self._send_birth_if_due()
        self._slot_free.set()

    def _send_birth_if_due(self) -> None:
        birth = self._birth
        if (not self._birth_due or birth is None or not self._connected or self._closed
                or self.in_flight >= self._window):
            return
        self._birth_due = False
        info = self._client.publish(birth.topic, birth.payload, qos=birth.qos, retain=birth.retain)
        if birth.qos > 0 and info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS,
                                         MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._abandoned[info.mid] = birth.topic  # nobody waits; its PUBACK frees the slot
            self._birth_mids.add(info.mid)
        elif info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("uplink: birth message not sent: %s", paho.error_string(info.rc))

    def _on_message(self, msg: InboundMessage) -> None:
        for topic, _qos, handler in list(self._subs):
            if paho.topic_matches_sub(topic, msg.topic):
                try:
                    handler(msg)
                except Exception:
                    self._log.exception("uplink: handler for %r failed on %r", topic, msg.topic)
