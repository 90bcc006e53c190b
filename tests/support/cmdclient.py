"""A remote-command client for tests: signs with agent/uplink/commands.py (the same canonical
form and HMAC the agent verifies), publishes over MQTT 5 with a Response Topic and
Correlation Data, and waits for the reply that carries the same correlation data.

    with CommandClient(broker, base="trace/lab/gw-test", secret=b"...") as cc:
        reply = cc.call("status")                      # signed, fresh ts and nonce
        reply = cc.call_raw("ping", payload_bytes)     # anything at all (unsigned, replayed...)
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.uplink.commands import sign
from tests.support.mosquitto import Collector, Mosquitto, collect


def signed_payload(secret: bytes, name: str, body: Mapping[str, Any] | None = None, *,
                   ts: int | float | None = None, nonce: str | None = None) -> bytes:
    """The JSON payload of a signed command (docs/uplink.md "Remote commands")."""
    b = dict(body or {})
    t = int(time.time()) if ts is None else ts
    n = nonce or secrets.token_hex(8)
    return json.dumps({"ts": t, "nonce": n, "body": b, "sig": sign(secret, name, b, t, n)},
                      separators=(",", ":")).encode()


class CommandClient:
    def __init__(self, broker: Mosquitto, replies: Collector, *, base: str, secret: bytes,
                 reply_topic: str, fallback: Collector | None = None) -> None:
        self.broker = broker
        self.replies = replies
        # Refused commands are answered only on the agent's own {base}/cmd-reply/<name>.
        self.fallback = fallback
        self.last_topic: str | None = None
        self.base = base
        self.secret = secret
        self.reply_topic = reply_topic
        self._seq = itertools.count(1)
        self._client = paho.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"test-cmd-{os.getpid()}-{id(self):x}",
                                   protocol=paho.MQTTv5)
        self._client.connect(broker.host, broker.port, keepalive=30)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send(self, name: str, payload: bytes) -> bytes:
        """Publish (QoS 1, waits for the PUBACK); returns the correlation data used."""
        corr = f"corr-{next(self._seq)}".encode()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = corr
        info = self._client.publish(f"{self.base}/cmd/{name}", payload, qos=1, properties=props)
        info.wait_for_publish(5)
        return corr

    def wait_reply(self, corr: bytes, timeout_s: float = 10.0) -> dict[str, Any]:
        """The reply carrying ``corr``: on the Response Topic (a verified command) or on the
        agent's fallback topic (a refused one); ``last_topic`` says which."""
        def mine(m: Any) -> bool:
            return getattr(m.properties, "CorrelationData", None) == corr

        deadline = time.monotonic() + timeout_s
        while True:
            for collector in (self.replies, self.fallback):
                if collector is None:
                    continue
                found = [m for m in collector.messages if mine(m)]
                if found:
                    msg = found[0]
                    assert msg.topic == self.reply_topic or msg.topic.startswith(
                        f"{self.base}/cmd-reply/"), msg.topic
                    self.last_topic = msg.topic
                    reply: dict[str, Any] = json.loads(msg.payload)
                    return reply
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply with correlation data {corr!r}")
            time.sleep(0.02)

    def call_raw(self, name: str, payload: bytes, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.wait_reply(self.send(name, payload), timeout_s)

    def call(self, name: str, body: Mapping[str, Any] | None = None, *,
             timeout_s: float = 10.0) -> dict[str, Any]:
        return self.call_raw(name, signed_payload(self.secret, name, body), timeout_s)


@contextmanager
def command_client(broker: Mosquitto, *, base: str, secret: bytes,
                   reply_topic: str = "ops/replies/test") -> Iterator[CommandClient]:
    with collect(broker, reply_topic) as replies, \
            collect(broker, f"{base}/cmd-reply/#") as fallback:
        cc = CommandClient(broker, replies, base=base, secret=secret, reply_topic=reply_topic,
                           fallback=fallback)
        try:
            yield cc
        finally:
            cc.close()


def wait_subscribed(cc: CommandClient, timeout_s: float = 30.0) -> dict[str, Any]:
    """Ping until the agent answers (it subscribes to its command topic after connecting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        corr = cc.send("ping", signed_payload(cc.secret, "ping"))
        try:
            return cc.wait_reply(corr, 1.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["CommandClient", "command_client", "signed_payload", "wait_subscribed"]
