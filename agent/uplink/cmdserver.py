"""Remote commands over MQTT: subscribe to ``{base}/cmd/#``, verify, execute, reply.

Replies of *verified* commands go to the MQTT 5 Response Topic (with its Correlation Data) when
it passes :func:`reply_topic_problem` (under ``uplink.commands.reply_prefix``, never the agent's
own or another gateway's topics), else to ``{base}/cmd-reply/<name>``. A malformed, unsigned or
unauthorised command is counted, logged in one line and answered only on that fixed topic,
never on one the sender chose (issue 13). Each message is handled in its own error boundary:
nothing a sender can put in a command ends this task.
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
    reply_topic_problem,
    require,
)
from agent.uplink.mqtt import InboundMessage, MqttUplink, UplinkError

log = logging.getLogger(__name__)


class CommandServer:
    def __init__(self, uplink: MqttUplink, target: CommandTarget, verifier: CommandVerifier,
                 base_topic: str, *, queue_size: int = 64,
                 reply_prefix: str | None = None) -> None:
        self._uplink = uplink
        self._base = base_topic
        self._reply_prefix = reply_prefix or f"{base_topic}/cmd-reply"
        self._target = target
        self._verifier = verifier
        self._cmd = f"{base_topic}/cmd"
        self._reply = f"{base_topic}/cmd-reply"
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue(queue_size)
        self.executed = 0
        self.refused = 0
        self.bad_reply_topics = 0
        self.handler_errors = 0

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
            try:
                await self.handle(msg)
            except Exception:  # the error boundary: one message never ends the server
                self.handler_errors += 1
                log.exception("commands: error handling a message on %r (ignored)", msg.topic)

    async def handle(self, msg: InboundMessage) -> None:
        name = (msg.topic.rsplit("/", 1)[-1] or "unknown")[:64]
        nonce: str | None = None
        verified = False
        try:
            name = command_name(self._cmd, msg.topic)
            cmd, sig = parse_command(name, msg.payload)
            nonce = cmd.nonce
            self._verifier.verify(cmd, sig)
            verified = True
            result = await self._execute(cmd.name, cmd.body)
        except CommandError as exc:
            self.refused += 1
            log.warning("commands: refused %r: %s (%s)", name, exc.message, exc.code)
            await self._send(msg, name, reply_payload(name, ok=False, error=exc, nonce=nonce),
                             sender_topic=verified)
            return
        except Exception as exc:  # a failing command must not end the server
            self.refused += 1
            log.exception("commands: %r failed", name)
            err = CommandError("failed", f"{type(exc).__name__}: {exc}")
            await self._send(msg, name, reply_payload(name, ok=False, error=err, nonce=nonce),
                             sender_topic=verified)
            return
        self.executed += 1
        log.info("commands: executed %r", name)
        await self._send(msg, name, reply_payload(name, ok=True, result=result, nonce=nonce),
                         sender_topic=True)

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

    async def _send(self, msg: InboundMessage, name: str, payload: bytes, *,
                    sender_topic: bool) -> None:
        """Reply: on the sender's Response Topic only for a verified command whose topic
        passes the rules, else on the agent's own ``{base}/cmd-reply/<name>``."""
        props = msg.properties
        topic = f"{self._reply}/{name}"
        asked = getattr(props, "ResponseTopic", None)
        if asked and sender_topic:
            problem = reply_topic_problem(str(asked), reply_prefix=self._reply_prefix,
                                          own_base=self._base)
            if problem is None:
                topic = str(asked)
            else:
                self.bad_reply_topics += 1
                log.warning("commands: %r: %s (%r); replying on %s instead", name, problem,
                            str(asked)[:80], topic)
        corr = getattr(props, "CorrelationData", None)
        try:
            await self._uplink.publish(topic, payload, qos=1, content_type="application/json",
                                       correlation_data=bytes(corr)[:256] if corr else None,
                                       timeout_s=10.0)
        except (UplinkError, ValueError) as exc:  # ValueError: paho refused the topic
            log.warning("commands: reply to %r not delivered: %s", topic, exc)
