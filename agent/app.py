"""Wires the layers into one TaskGroup: readers -> ingest -> buffer -> pipeline -> forwarder."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from agent import __version__
from agent.buffer.sqlite import SqliteBuffer
from agent.config import AgentConfig
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.server import serve as serve_field_tools
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
            buffer, timezone=cfg.gateway.timezone, wake=ingest.accepted, clock=time.time
        )
        forwarder = Forwarder(
            buffer, uplink, cfg.uplink.mqtt, topic_map, wake=pipeline.produced
        )
        field_tools = Runtime(cfg, self.readers, buffer, uplink, forwarder, ingest, pipeline)
        ingest.on_read = field_tools.tap.on_read
        pipeline.on_events = field_tools.tap.on_events
        log.info(
            "edge-agent %s starting: gateway %s at %s, %d reader(s), buffer %s, broker %s:%d",
            __version__, cfg.gateway.id, cfg.gateway.site, len(cfg.readers), cfg.buffer.path,
            cfg.uplink.mqtt.host, cfg.uplink.mqtt.port,
        )
        await uplink.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ingest.run(), name="ingest")
                tg.create_task(pipeline.run(), name="pipeline")
                tg.create_task(forwarder.run(), name="forwarder")
                tg.create_task(serve_field_tools(field_tools), name="field-tools")
                for rc in cfg.readers:
                    if not rc.enabled:
                        continue
                    status = ReaderStatus(rc.name, rc.driver, rc.port)
                    self.readers[rc.name] = status
                    tg.create_task(
                        supervise_reader(rc, ingest.put, status), name=f"reader-{rc.name}"
                    )
                tg.create_task(_wait_for_stop(stop), name="stop-signal")
        except* _Shutdown:
            log.info("shutting down")
        finally:
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


async def _wait_for_stop(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _Shutdown
