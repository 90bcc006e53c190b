"""The uplink's values and errors: what callers of :class:`~agent.uplink.mqtt.MqttUplink`
see. No paho internals here (``Properties`` is paho's public packet-properties type)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.properties import Properties

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
