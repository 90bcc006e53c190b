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

The package, one seam per job: :mod:`.packets` (pure packet maths and the probe's CONNECT),
:mod:`.compat` (the only module touching paho internals), :mod:`.probe` (the CONNACK fail-back
probe), :mod:`.callbacks` (paho's thread), :mod:`.client` (the event loop: ``MqttUplink``),
:mod:`.types` (values and errors).
"""

from __future__ import annotations

from agent.uplink.mqtt.client import MqttUplink
from agent.uplink.mqtt.packets import (
    MQTT_DEFAULT_RECEIVE_MAXIMUM,
    MQTT_MAX_PACKET_SIZE,
    RC_NO_MATCHING_SUBSCRIBERS,
    RC_PACKET_TOO_LARGE,
    connect_packet,
    describe_connect_error,
    publish_packet_size,
)
from agent.uplink.mqtt.probe import connect_once
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

__all__ = [
    "MQTT_DEFAULT_RECEIVE_MAXIMUM",
    "MQTT_MAX_PACKET_SIZE",
    "RC_NO_MATCHING_SUBSCRIBERS",
    "RC_PACKET_TOO_LARGE",
    "Handler",
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
    "connect_once",
    "connect_packet",
    "describe_connect_error",
    "publish_packet_size",
]
