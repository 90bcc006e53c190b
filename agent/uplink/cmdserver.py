"""Remote commands over MQTT: subscribe to ``{base}/cmd/#``, verify, execute, reply.

Replies go to the MQTT 5 Response Topic with its Correlation Data when the command carries
them, else to ``{base}/cmd-reply/<name>``. A malformed or unauthorised command gets an error
reply and one log line; nothing a sender can put in a command ends this task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.uplink.commands import (
    CommandError,
    CommandTarget,
    CommandVerifier,
    command_name,
    parse_command,
    reply_payload,
    require,
)
from agent.uplink.mqtt import InboundMessage, MqttUplink, UplinkError

log = logging.getLogger(__name__)


class CommandServer:
    def __init__(self, uplink: MqttUplink, target: CommandTarget, verifier: CommandVerifier,
                 base_topic: str, *, queue_size: int = 64) -> None:
        self._uplink = uplink
        self._target = target
        self._verifier = verifier
        self._cmd = f"{base_topic}/cmd"
        self._reply = f"{base_topic}/cmd-reply"
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue(queue_size)
        self.executed = 0
        self.refused = 0

    async def start(self) -> None:
        await self._uplink.subscribe(f"{self._cmd}/#", self._enqueue, qos=1)

    def _enqueue(self, msg: InboundMessage) -> None:
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.refused += 1
            log.warning("commands: queue full; command on %r not executed", msg.topic)

    async def run(self) -> None:
        await self.start()
        while True:
            msg = await self._queue.get()
            await self.handle(msg)

    async def handle(self, msg: InboundMessage) -> None:
        name = msg.topic.rsplit("/", 1)[-1] or "unknown"
        nonce: str | None = None
        try:
            name = command_name(self._cmd, msg.topic)
            cmd, sig = parse_command(name, msg.payload)
            nonce = cmd.nonce
            self._verifier.verify(cmd, sig)
            result = await self._execute(cmd.name, cmd.body)
        except CommandError as exc:
            self.refused += 1
            log.warning("commands: refused %r: %s (%s)", name, exc.message, exc.code)
            await self._send(msg, name, reply_payload(name, ok=False, error=exc, nonce=nonce))
            return
        except Exception as exc:  # a failing command must not end the server
            self.refused += 1
            log.exception("commands: %r failed", name)
            err = CommandError("failed", f"{type(exc).__name__}: {exc}")
            await self._send(msg, name, reply_payload(name, ok=False, error=err, nonce=nonce))
            return
        self.executed += 1
        log.info("commands: executed %r", name)
        await self._send(msg, name, reply_payload(name, ok=True, result=result, nonce=nonce))

    async def _execute(self, name: str, body: dict[str, Any]) -> Any:
        t = self._target
        if name == "ping":
            return {"pong": True}
        if name == "status":
            return t.status()
        if name == "reload":
            return await t.reload()
        reader = require(body, "reader", str)
        if name == "set_reader_power":
            return await t.set_reader_power(reader, require(body, "dbm", (int, float, dict)))
        if name == "start_reader":
            return await t.start_reader(reader)
        if name == "stop_reader":
            return await t.stop_reader(reader)
        raise CommandError("unknown_command", f"unknown command {name!r}")  # pragma: no cover

    async def _send(self, msg: InboundMessage, name: str, payload: bytes) -> None:
        props = msg.properties
        topic = getattr(props, "ResponseTopic", None) or f"{self._reply}/{name}"
        corr = getattr(props, "CorrelationData", None)
        try:
            await self._uplink.publish(topic, payload, qos=1, content_type="application/json",
                                       correlation_data=bytes(corr) if corr else None,
                                       timeout_s=10.0)
        except UplinkError as exc:
            log.warning("commands: reply to %r not delivered: %s", topic, exc)
