"""Pure MQTT packet maths: PUBLISH sizes against the broker's Maximum Packet Size, and the
CONNECT packet the fail-back probe sends (MQTT 5 §3.1 / 3.1.1 §3.1). Bytes in, bytes out; the
only paho used is its public packet-properties and reason-code types."""

from __future__ import annotations

import socket
import ssl
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MQTT_DEFAULT_RECEIVE_MAXIMUM: Final = 65535  # MQTT 5 §3.2.2.3.3: absent = 65,535
MQTT_MAX_PACKET_SIZE: Final = 268_435_455 + 5  # largest remaining length + fixed header
RC_NO_MATCHING_SUBSCRIBERS: Final = 0x10
RC_PACKET_TOO_LARGE: Final = 0x95


def new_properties(packet_type: int) -> Properties:
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


def connack_text(code: int, v5: bool) -> str:
    if v5:
        try:
            name = str(ReasonCode(PacketTypes.CONNACK, identifier=code))
        except Exception:  # an unknown code: paho refuses to name it
            name = "unknown reason"
        return f"0x{code:02X} {name}"
    return f"{code} {paho.connack_string(code)}"


def describe_connect_error(exc: OSError) -> str:
    """One line naming the layer that failed: DNS, TLS or TCP."""
    if isinstance(exc, socket.gaierror):
        return f"DNS: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: server certificate verify failed: {exc.verify_message or exc.reason or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return f"TCP: {exc.strerror or exc or type(exc).__name__}"
