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
import time
from collections.abc import Callable
from typing import Any

from agent.uplink.commands import (
    Command,
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


# Refusals answered per interval; beyond it they are only counted (one summary line per
# interval), so a flood of unsigned or garbled commands costs no uplink bandwidth.
REFUSAL_BUDGET: int = 20
REFUSAL_INTERVAL_S: float = 10.0


class CommandServer:
    """Two queues: *verified* commands (the signature is checked as each message arrives, in
    the event loop, before anything is queued) and refusals. The executor serves the verified
    queue first, so a flood of refusals cannot starve a signed command; refusal replies are
    limited to ``REFUSAL_BUDGET`` per ``REFUSAL_INTERVAL_S``."""

    def __init__(self, uplink: MqttUplink, target: CommandTarget, verifier: CommandVerifier,
                 base_topic: str, *, queue_size: int = 64,
                 reply_prefix: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._uplink = uplink
        self._base = base_topic
        self._reply_prefix = reply_prefix or f"{base_topic}/cmd-reply"
        self._target = target
        self._verifier = verifier
        self._cmd = f"{base_topic}/cmd"
        self._reply = f"{base_topic}/cmd-reply"
        self._signed: asyncio.Queue[tuple[InboundMessage, Command]] = asyncio.Queue(queue_size)
        self._refusals: asyncio.Queue[tuple[InboundMessage, str, bytes]] = asyncio.Queue(
            queue_size)
        self._wake = asyncio.Event()
        self._clock = clock
        self._budget_start = clock()
        self._budget_used = 0
        self._unanswered_in_interval = 0
        self.executed = 0
        self.refused = 0
        self.refused_unanswered = 0  # over the refusal budget or its queue: counted only
        self.bad_reply_topics = 0
        self.handler_errors = 0

    def stats(self) -> dict[str, int]:
        """For ``edge-agent status`` and /metrics."""
        return {"executed": self.executed, "refused": self.refused,
                "refusedUnanswered": self.refused_unanswered,
                "badReplyTopics": self.bad_reply_topics, "handlerErrors": self.handler_errors}

    async def start(self) -> None:
        await self._uplink.subscribe(f"{self._cmd}/#", self._enqueue, qos=1)

    def _enqueue(self, msg: InboundMessage) -> None:
        """On arrival: parse and verify (pure and fast), then queue as verified or refused.
        This runs in the event loop's callback: any bug is counted and logged, not raised."""
        try:
            self._classify(msg)
        except Exception:
            self.handler_errors += 1
            log.exception("commands: error classifying a message on %r (ignored)", msg.topic)

    def _classify(self, msg: InboundMessage) -> None:
        name = (msg.topic.rsplit("/", 1)[-1] or "unknown")[:64]
        nonce: str | None = None
        try:
            name = command_name(self._cmd, msg.topic)
            cmd, sig = parse_command(name, msg.payload)
            nonce = cmd.nonce
            self._verifier.verify(cmd, sig)
        except CommandError as exc:
            self._refuse(msg, name, exc, nonce)
            return
        try:
            self._signed.put_nowait((msg, cmd))
        except asyncio.QueueFull:
            self._refuse(msg, name, CommandError("refused", "too many commands queued"), nonce)
            return
        self._wake.set()

    def _refuse(self, msg: InboundMessage, name: str, exc: CommandError,
                nonce: str | None) -> None:
        self.refused += 1
        now = self._clock()
        if now - self._budget_start >= REFUSAL_INTERVAL_S:
            if self._unanswered_in_interval:
                log.warning("commands: %d more refused commands in the last %.0f s were not "
                            "answered (over the budget of %d)", self._unanswered_in_interval,
                            REFUSAL_INTERVAL_S, REFUSAL_BUDGET)
            self._budget_start, self._budget_used, self._unanswered_in_interval = now, 0, 0
        if self._budget_used >= REFUSAL_BUDGET:
            self.refused_unanswered += 1
            self._unanswered_in_interval += 1
            return
        self._budget_used += 1
        log.warning("commands: refused %r: %s (%s)", name, exc.message, exc.code)
        payload = reply_payload(name, ok=False, error=exc, nonce=nonce)
        try:
            self._refusals.put_nowait((msg, name, payload))
        except asyncio.QueueFull:
            self.refused_unanswered += 1
            return
        self._wake.set()

    async def run(self) -> None:
        await self.start()
        while True:
            if self._signed.empty() and self._refusals.empty():
                self._wake.clear()
                await self._wake.wait()
            try:
                if not self._signed.empty():  # verified commands first, always
                    msg, cmd = self._signed.get_nowait()
                    await self.execute(msg, cmd)
                else:
                    msg, name, payload = self._refusals.get_nowait()
                    await self._send(msg, name, payload, sender_topic=False)
            except Exception:  # the error boundary: one message never ends the server
                self.handler_errors += 1
                log.exception("commands: error handling a message (ignored)")

    async def handle(self, msg: InboundMessage) -> None:
        """Classify and serve one message now (tests and callers without :meth:`run`)."""
        self._classify(msg)
        while not self._signed.empty():
            await self.execute(*self._signed.get_nowait())
        while not self._refusals.empty():
            m, name, payload = self._refusals.get_nowait()
            await self._send(m, name, payload, sender_topic=False)

    async def execute(self, msg: InboundMessage, cmd: Command) -> None:
        """Run a verified command and reply (on its Response Topic if allowed)."""
        name = cmd.name
        try:
            result = await self._execute(name, cmd.body)
        except CommandError as exc:
            self.refused += 1
            log.warning("commands: refused %r: %s (%s)", name, exc.message, exc.code)
            await self._send(msg, name, reply_payload(name, ok=False, error=exc,
                                                      nonce=cmd.nonce), sender_topic=True)
            return
        except Exception as exc:  # a failing command must not end the server
            self.refused += 1
            log.exception("commands: %r failed", name)
            err = CommandError("failed", f"{type(exc).__name__}: {exc}")
            await self._send(msg, name, reply_payload(name, ok=False, error=err,
                                                      nonce=cmd.nonce), sender_topic=True)
            return
        self.executed += 1
        log.info("commands: executed %r", name)
        await self._send(msg, name, reply_payload(name, ok=True, result=result,
                                                  nonce=cmd.nonce), sender_topic=True)

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
        if name == "set_reader_settings":
            return await t.set_reader_settings(
                reader, {k: v for k, v in body.items() if k != "reader"})
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
