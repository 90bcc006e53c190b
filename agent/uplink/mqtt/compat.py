"""The one module that touches paho-mqtt's internals. Everything else in the uplink calls
paho's public API or the functions here, so a paho upgrade has one file to check, and
``tests/uplink/test_paho_compat.py`` fails loudly, naming the attribute, when one of them moves.

What we rely on (checked against paho-mqtt 2.1 / 2.2):

* ``ReasonCode.names``: the class table patched at import so PUBACK 0x95 parses;
* ``Client.reconnect``, ``_reconnect_wait``, ``_ssl_wrap_socket``: overridden for our backoff,
  broker list and a TLS socket that is closed when its handshake fails;
* ``_host``, ``_port``, ``_ssl_context``, ``_connect_timeout``, ``_state``,
  ``_thread_terminate``: read or set by those overrides;
* ``_send_disconnect``: DISCONNECT 0x00 without leaving paho's loop (fail-back);
* ``_sock_close``: close a socket paho left open;
* ``_out_messages`` / ``_out_message_mutex``: the QoS 1 messages paho holds for re-sending.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import time
from types import MappingProxyType
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.uplink.mqtt.packets import (
    RC_PACKET_TOO_LARGE,
    describe_connect_error,
    publish_packet_size,
)

_CS_DISCONNECTING: Final = _ConnectionState.MQTT_CS_DISCONNECTING
_CS_DISCONNECTED: Final = _ConnectionState.MQTT_CS_DISCONNECTED


def accept_out_of_spec_puback_codes() -> None:
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


accept_out_of_spec_puback_codes()


RECENT_UP_S = 120.0  # a broker connected within this long counts as "recently reachable"
RECENT_CAP_S = 2.0  # the backoff cap meanwhile


class PahoClient(paho.Client):
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
    # monotonic time the broker was last reachable (connected); -inf: never yet
    last_up_s = float("-inf")
    up = False  # between a successful CONNACK and the next disconnect

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
        if time.monotonic() - self.last_up_s < RECENT_UP_S:
            # The broker was up moments ago (a restart, a short outage): keep trying at least
            # every RECENT_CAP_S so the backlog moves within seconds of its return, instead of
            # waiting out a reconnect_max_s sized for long outages.
            cap = min(cap, RECENT_CAP_S)
        self.backoff_attempt += 1
        deadline = time.monotonic() + self.rng.uniform(0, cap)
        while (self._state not in (_CS_DISCONNECTING, _CS_DISCONNECTED)
               and not self._thread_terminate and not self.skip_wait):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))


def new_client(client_id: str, *, v5: bool, brokers: tuple[tuple[str, int], ...],
               jitter_min_s: float, jitter_max_s: float, rng: random.Random) -> PahoClient:
    """Our paho client: a persistent session (3.1.1: clean session off; MQTT 5 sets clean
    start off at connect), paho's own reconnect loop driven by our backoff and broker list."""
    if v5:
        c = PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=paho.MQTTv5, reconnect_on_failure=True)
    else:
        c = PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=paho.MQTTv311, clean_session=False, reconnect_on_failure=True)
    c.suppress_exceptions = True  # second line of defence behind the guarded callbacks
    c.brokers = brokers
    c.jitter_min_s = jitter_min_s
    c.jitter_max_s = jitter_max_s
    c.rng = rng
    return c


def send_disconnect(client: paho.Client, *, v5: bool) -> None:
    """DISCONNECT with reason 0x00 (the broker discards the will) while paho's loop keeps
    running, so it reconnects at once (fail-back). paho's public ``disconnect()`` would stop
    reconnecting altogether."""
    client._send_disconnect(
        ReasonCode(PacketTypes.DISCONNECT, identifier=0) if v5 else None
    )


def close_socket(client: paho.Client) -> None:
    """Close the socket paho may leave open after ``loop_stop`` (a connect that failed after
    the TLS handshake, a DISCONNECT not yet flushed): never leak the fd."""
    with contextlib.suppress(Exception):
        client._sock_close()


def drop_held_larger_than(client: paho.Client, limit: int) -> list[tuple[int, int]] | None:
    """Remove the QoS 1 messages paho holds for re-sending whose PUBLISH exceeds ``limit``
    bytes; returns their (mid, size). None when paho no longer exposes its held messages (the
    caller then only warns)."""
    messages = getattr(client, "_out_messages", None)
    mutex = getattr(client, "_out_message_mutex", None)
    if messages is None or mutex is None:
        return None
    dropped: list[tuple[int, int]] = []
    with mutex:
        for mid, m in list(messages.items()):
            size = publish_packet_size(m.topic, len(m.payload), qos=m.qos,
                                       properties=m.properties)
            if size > limit:
                del messages[mid]
                dropped.append((mid, size))
    return dropped


def held_count(client: paho.Client) -> int:
    """How many messages paho holds for (re-)sending (diagnostics and tests)."""
    return len(getattr(client, "_out_messages", {}))
