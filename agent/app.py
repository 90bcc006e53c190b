"""Wires the layers into one TaskGroup: readers -> ingest -> buffer -> pipeline -> forwarder."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from agent import __version__, systemd
from agent.buffer.sqlite import SqliteBuffer
from agent.config import AgentConfig
from agent.pipeline.ingest import Ingest
from agent.pipeline.worker import Pipeline
from agent.readers.status import ReaderStatus
from agent.readers.supervisor import supervise_reader
from agent.uplink.forwarder import Forwarder, topics
from agent.uplink.mqtt import MqttUplink, Will

log = logging.getLogger(__name__)


class _Shutdown(Exception):
    """Raised inside the TaskGroup to stop every task when SIGTERM/SIGINT arrives."""


def client_id_for(cfg: AgentConfig) -> str:
    return cfg.uplink.mqtt.client_id or f"edge-agent-{cfg.gateway.site}-{cfg.gateway.id}"


@dataclass(slots=True)
class Agent:
    cfg: AgentConfig
    readers: dict[str, ReaderStatus] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        buffer = await SqliteBuffer.open(cfg.buffer)
        topic_map = topics(cfg.uplink.mqtt, cfg.gateway.site, cfg.gateway.id)
        offline = json.dumps({"state": "offline", "gateway": cfg.gateway.id}).encode()
        uplink = MqttUplink(
            cfg.uplink.mqtt,
            client_id=client_id_for(cfg),
            will=Will(topic_map["status"], offline, qos=1, retain=True),
        )
        ingest = Ingest(buffer)
        pipeline = Pipeline(
            buffer, timezone=cfg.gateway.timezone, wake=ingest.accepted, clock=time.time,
            readers=cfg.readers,
        )
        forwarder = Forwarder(
            buffer, uplink, cfg.uplink.mqtt, topic_map, wake=pipeline.produced
        )
        log.info(
            "edge-agent %s starting: gateway %s at %s, %d reader(s), buffer %s, broker %s:%d",
            __version__, cfg.gateway.id, cfg.gateway.site, len(cfg.readers), cfg.buffer.path,
            cfg.uplink.mqtt.host, cfg.uplink.mqtt.port,
        )
        await uplink.start()
        try:
            async with asyncio.TaskGroup() as tg:
                critical = [
                    tg.create_task(ingest.run(), name="ingest"),
                    tg.create_task(pipeline.run(), name="pipeline"),
                    tg.create_task(forwarder.run(), name="forwarder"),
                ]
                for rc in cfg.readers:
                    if not rc.enabled:
                        continue
                    status = ReaderStatus(rc.name, rc.driver, rc.port)
                    self.readers[rc.name] = status
                    tg.create_task(
                        supervise_reader(rc, ingest.put, status), name=f"reader-{rc.name}"
                    )
                tg.create_task(_wait_for_stop(stop), name="stop-signal")
                # A reader unplugged or a broker outage is not unhealthy (a restart fixes
                # neither); a core task that ended, or a blocked event loop, is.
                tg.create_task(
                    systemd.watchdog_loop(lambda: not any(t.done() for t in critical)),
                    name="watchdog",
                )
                tg.create_task(self._report_status(ingest, forwarder, uplink), name="sd-status")
                systemd.ready(self._status_line(ingest, forwarder, uplink))
        except* _Shutdown:
            log.info("shutting down")
        finally:
            systemd.stopping("stopping: committing accepted reads, closing the buffer")
            # Readers are stopped: commit what they handed over, then turn it into events.
            # Whatever is not yet delivered stays in the buffer for the next start.
            try:
                await ingest.drain()
                while await pipeline.step():
                    pass
            finally:
                await uplink.aclose()
                await buffer.aclose()
            log.info(
                "stopped: %d reads accepted, %d events delivered in %d messages this run",
                ingest.accepted_total, forwarder.delivered_events, forwarder.delivered_messages,
            )


    def _status_line(self, ingest: Ingest, forwarder: Forwarder, uplink: MqttUplink) -> str:
        up = sum(1 for r in self.readers.values() if r.state == "connected")
        broker = "connected" if uplink.connected else "disconnected"
        return (f"readers {up}/{len(self.readers)} connected, broker {broker}, "
                f"{ingest.accepted_total} reads accepted, "
                f"{forwarder.delivered_events} events delivered")

    async def _report_status(
        self, ingest: Ingest, forwarder: Forwarder, uplink: MqttUplink
    ) -> None:
        last = ""
        while True:
            await asyncio.sleep(5)
            line = self._status_line(ingest, forwarder, uplink)
            if line != last:
                systemd.status(line)
                last = line


async def _wait_for_stop(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _Shutdown
