"""The paho-thread side of the uplink: paho's callbacks, each guarded, each only handing its
facts to the event loop with ``call_soon_threadsafe`` (see the package docstring, "Threads").

:class:`PahoCallbacks` is a base of :class:`~agent.uplink.mqtt.client.MqttUplink`; the state it
reads is set by that class, the ``_on_*`` handlers it posts run on the event loop there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.osnames import name_thread
from agent.uplink.mqtt.compat import PahoClient, drop_held_larger_than
from agent.uplink.mqtt.packets import MQTT_DEFAULT_RECEIVE_MAXIMUM
from agent.uplink.mqtt.types import InboundMessage, Will

log = logging.getLogger("agent.uplink.mqtt")


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


class PahoCallbacks:
    """paho thread side. Touches only: ``_client`` (paho, thread-safe calls), the snapshot
    ``_subs_snapshot``, ``_will`` and ``_last_paho_error`` (written on this thread or replaced
    atomically), and ``_post`` to reach the loop."""

    _cfg: MqttConfig
    _client: PahoClient
    _loop: asyncio.AbstractEventLoop | None
    _log: logging.Logger
    _paho_log: logging.Logger
    _last_paho_error: str | None
    _subs_snapshot: tuple[tuple[str, int], ...]
    _will: Will | None

    # Event-loop handlers, defined by MqttUplink.
    def _on_attempt(self) -> None:
        raise NotImplementedError

    def _on_connect_failed(self, reason: str) -> None:
        raise NotImplementedError

    def _on_connected(self, session_present: bool, receive_max: int, max_packet: int | None,
                      window: int, dropped: list[tuple[int, int]],
                      subscribed: tuple[tuple[str, int], ...]) -> None:
        raise NotImplementedError

    def _on_disconnected(self, reason: str) -> None:
        raise NotImplementedError

    def _on_puback(self, mid: int, code: int, reason: str) -> None:
        raise NotImplementedError

    def _on_message(self, msg: InboundMessage) -> None:
        raise NotImplementedError


    def _attach(self, c: PahoClient) -> None:
        c.on_log = self._cb_log
        c.on_pre_connect = self._cb_pre_connect
        c.on_connect = self._cb_connect
        c.on_connect_fail = self._cb_connect_fail
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_message = self._cb_message

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
        # The CONNECT about to be built carries the will: the newest one set_will() gave
        # (MQTT cannot change the will of a live connection, so this is its only moment).
        will = self._will
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
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
        name_thread("mqtt-client")  # paho's thread: for top -H and py-spy (agent/osnames.py)
        if reason_code.is_failure:
            self._post(self._on_connect_failed, f"refused by broker: {reason_code}")
            return
        self._client.last_attempt_failed = False
        self._client.backoff_attempt = 0
        self._client.last_up_s = time.monotonic()
        self._client.up = True
        receive_max = getattr(properties, "ReceiveMaximum", None) or MQTT_DEFAULT_RECEIVE_MAXIMUM
        max_packet = getattr(properties, "MaximumPacketSize", None)
        window = max(1, min(self._cfg.inflight_window, int(receive_max)))
        dropped = self._drop_oversize_held(client, max_packet) if max_packet else []
        subs = self._subs_snapshot
        if subs:
            client.subscribe([(t, q) for t, q in subs])
        # ``subs``: what this connect subscribed; one added on the loop before it hears of the
        # connect is sent by _on_connected (it was neither in the snapshot nor sent then).
        self._post(self._on_connected, bool(flags.session_present), int(receive_max),
                   int(max_packet) if max_packet else None, window, dropped, subs)

    def _drop_oversize_held(self, client: paho.Client, limit: int) -> list[tuple[int, int]]:
        """Remove held messages that no longer fit a (lowered) Maximum Packet Size.

        Otherwise paho re-sends them, the broker disconnects us (0x95) and that repeats
        forever. Needs paho internals (:func:`compat.drop_held_larger_than`); without them we
        drop nothing."""
        return drop_held_larger_than(client, limit) or []

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
        if self._client.up:
            self._client.up = False
            self._client.last_up_s = time.monotonic()  # it was up until now
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
