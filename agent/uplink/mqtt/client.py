"""The uplink's event-loop side: :class:`MqttUplink`, its publish window and futures, start,
close and fail-back. The design (why paho, MQTT 5, threads, sessions) is in the package
docstring, :mod:`agent.uplink.mqtt`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.uplink.mqtt.callbacks import PahoCallbacks
from agent.uplink.mqtt.compat import close_socket, new_client, send_disconnect
from agent.uplink.mqtt.packets import (
    MQTT_DEFAULT_RECEIVE_MAXIMUM,
    MQTT_MAX_PACKET_SIZE,
    new_properties,
    publish_packet_size,
)
from agent.uplink.mqtt.probe import connack_probe
from agent.uplink.mqtt.types import (
    Handler,
    InboundMessage,
    PacketTooLargeError,
    PublishResult,
    PublishTimeout,
    UplinkClosedError,
    UplinkError,
    UplinkNotConnected,
    UplinkStats,
    Will,
)
from agent.uplink.netwatch import NetworkNews, plain_address
from agent.uplink.security import build_ssl_context, resolve_password

log = logging.getLogger("agent.uplink.mqtt")  # one logger for the whole package

# The least time between two connect attempts made because the network changed (on_network).
NETWORK_RETRY_MIN_S = 2.0


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[PublishResult]
    topic: str
    size: int


# ----------------------------------------------------------------------------- the uplink


class MqttUplink(PahoCallbacks):
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
        self._holding = False  # switch_identity: new publishes wait for the new connection
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
        self._network_retries = 0
        self._network_retry_at_s = -NETWORK_RETRY_MIN_S  # time.monotonic() of the last one
        self._network_later: asyncio.TimerHandle | None = None  # one deferred, at most

        self._v5 = cfg.protocol == "5"
        self._brokers = tuple(cfg.brokers)
        c = new_client(client_id, v5=self._v5, brokers=self._brokers,
                       jitter_min_s=cfg.reconnect_min_s, jitter_max_s=cfg.reconnect_max_s,
                       rng=rng or random.Random())  # noqa: S311 - jitter, not cryptography
        self._paho_log = self._log.getChild("paho")
        self._last_paho_error: str | None = None  # written by paho's thread, read by it too
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
        self._attach(c)
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

    @property
    def network_retries(self) -> int:
        """Connect attempts made at once because the network came back (NetworkWatch)."""
        return self._network_retries

    def on_network(self, news: NetworkNews) -> None:
        """What the network watch saw (agent/uplink/netwatch.py), on the event loop.

        An interface, an address or a default route came up: while disconnected, the next
        connect attempt is now, with the backoff started over (failures on the network that
        went away say nothing about the one that came; issue 12: a gateway's Wi-Fi or 4G back
        after a long outage, whose backoff had grown to ``reconnect_max_s``).

        The address this connection is bound to went away (a lease lost, a 4G modem back
        with another address): the connection cannot carry another byte, but TCP would only
        notice at paho's keepalive, so it is shut down now and the uplink reconnects at
        once, from whatever address the network gives next."""
        if self._closed:
            return
        if news.kind == "address gone":
            self._address_gone(news.address)
            return
        if self._connected:
            return
        # At most one such attempt per NETWORK_RETRY_MIN_S: docker or VPN interfaces coming
        # and going on a gateway whose broker is down would otherwise make an attempt of
        # every message. News within that time makes one attempt when it is up (a link comes
        # with its carrier, then its address, then its route: the last may be the one that
        # works), never none.
        wait_s = self._network_retry_at_s + NETWORK_RETRY_MIN_S - time.monotonic()
        if wait_s > 0:
            if self._network_later is None:
                self._network_later = asyncio.get_running_loop().call_later(
                    wait_s, self._network_retry, news)
            return
        self._network_retry(news)

    def _network_retry(self, news: NetworkNews) -> None:
        self._network_later = None
        if self._closed or self._connected:
            return
        self._network_retry_at_s = time.monotonic()
        self._network_retries += 1
        where = f" on interface {news.index}" if news.index else ""
        self._log.info("uplink: the network changed (%s up%s); connecting to %s now, not "
                       "after the backoff", news.kind, where, self._where)
        self._client.backoff_attempt = 0
        self._client.skip_wait = True  # paho's thread ends its wait within 0.2 s

    def _address_gone(self, address: str) -> None:
        sock = self._client.socket() if self._connected else None
        if not isinstance(sock, socket.socket) or not address:
            return  # not connected (or over a transport that is not a socket: websockets)
        try:
            local = str(sock.getsockname()[0])
        except OSError:
            return  # closing already
        if plain_address(local) != plain_address(address):
            return  # another address of this gateway: this connection is not on it
        self._network_retries += 1
        self._log.info("uplink: %s, the address of this connection, went away; reconnecting "
                       "to %s now instead of waiting for the keepalive", address, self._where)
        self._client.backoff_attempt = 0
        self._client.skip_wait = True
        with contextlib.suppress(OSError):
            # paho's thread sees its socket end and reconnects (shutdown is safe across
            # threads; closing is left to paho, which owns the socket)
            sock.shutdown(socket.SHUT_RDWR)

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
            props = new_properties(PacketTypes.CONNECT)
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

    def set_will(self, will: Will) -> None:
        """Replace the will for the next connect: the CONNECT of each (re)connect carries the
        newest will given here (set in paho's pre-connect callback); the live connection
        keeps the will it connected with."""
        self._check_qos(will.qos, allow_zero=True)
        self._will = will

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
            send_disconnect(self._client, v5=self._v5)

    async def probe_first_broker(self, *, timeout_s: float = 5.0) -> tuple[bool, str]:
        """One MQTT CONNECT to the first broker with the agent's TLS settings and credentials
        (see :mod:`agent.uplink.mqtt.probe`). Returns (ok, reason)."""
        host, port = self._brokers[0]
        password = resolve_password(self._cfg) if self._cfg.username is not None else None
        return await connack_probe(host, port, ssl_context=self._ssl_context,
                                   client_id=f"{self._client_id}-probe", v5=self._v5,
                                   keepalive_s=self._cfg.keepalive_s,
                                   username=self._cfg.username, password=password,
                                   timeout_s=timeout_s)

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
        if self._network_later is not None:
            self._network_later.cancel()
            self._network_later = None
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
            close_socket(self._client)
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

    async def switch_identity(self, cert: str, key: str, password: str | None = None, *,
                              drain_s: float = 10.0) -> None:
        """A renewed client certificate: load it, let the PUBACKs in flight arrive (new
        publishes wait meanwhile, up to ``drain_s``), then leave the broker with DISCONNECT
        0x00 and reconnect at once with the new certificate. Nothing in flight is cut, so
        nothing is sent twice; what was waiting goes out on the new connection."""
        if self._ssl_context is None:
            raise UplinkError("the uplink has no TLS client identity to switch")
        self._ssl_context.load_cert_chain(cert, key, password)  # the next handshakes use it
        if not self._connected or self._closed:
            return
        self._holding = True
        try:
            async with asyncio.timeout(drain_s):
                while self._pending and self._connected:
                    self._slot_free.clear()
                    await self._slot_free.wait()
        except TimeoutError:
            self._log.warning("uplink: %d publishes still unacknowledged after %.1f s; "
                              "switching identity anyway (they are sent again)",
                              len(self._pending), drain_s)
        finally:
            try:
                if self._connected and not self._closed:
                    self._log.info("uplink: reconnecting to %s with the renewed certificate",
                                   self._where)
                    self._client.skip_wait = True
                    send_disconnect(self._client, v5=self._v5)
            finally:
                self._holding = False
                self._slot_free.set()

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
            props = new_properties(PacketTypes.PUBLISH)
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
                    if self.in_flight < self._window and not self._holding:
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
        subscribed: tuple[tuple[str, int], ...],
    ) -> None:
        if self._closing:
            return
        self._connects += 1
        self._connected = True
        # A subscription added between paho's connect (which sent ``subscribed``) and now was
        # not sent by either side: subscribe() saw no connection yet. Without this, a command
        # topic subscribed at start-up could stay unsubscribed until the next reconnect.
        sent = set(subscribed)
        for topic, qos, _handler in self._subs:
            if (topic, qos) not in sent:
                rc, _mid = self._client.subscribe(topic, qos=qos)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._log.warning("uplink: subscribe %r not sent now (%s); will retry on "
                                      "connect", topic, paho.error_string(rc))
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
