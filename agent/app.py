"""Wires the layers into one TaskGroup: readers -> ingest -> buffer -> pipeline -> forwarder.

Only wiring: each collaborator lives in its layer (reader tasks in agent/readers/tasks.py,
health in agent/uplink/health.py, remote commands in agent/remote.py, field tools in
agent/fieldtools/). What is left here is the start order, the shutdown order and systemd.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__, systemd
from agent.buffer.api import PRIORITY_ALARM, BufferFullError, OutEvent
from agent.buffer.ingest import Ingest
from agent.buffer.retry import RetryWhenFull
from agent.buffer.sqlite import SqliteBuffer
from agent.config import AgentConfig
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.server import serve as serve_field_tools
from agent.osnames import name_thread
from agent.pipeline import barcode_data
from agent.pipeline.former import EventFormer
from agent.pipeline.worker import Pipeline
from agent.readers.status import ReaderStatus
from agent.readers.tasks import ReaderTasks
from agent.remote import RemoteCommands
from agent.uplink.cmdserver import CommandServer
from agent.uplink.commands import CommandVerifier
from agent.uplink.forwarder import Forwarder, topics
from agent.uplink.health import HealthReporter, status_message
from agent.uplink.mqtt import MqttUplink, Will
from agent.uplink.netwatch import NetworkWatch
from agent.uplink.provenance import load_signer
from agent.uplink.security import read_secret

if TYPE_CHECKING:
    from agent.uplink.renewal import IdentityRenewal

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0  # systemd's one-line STATUS= (systemctl status)


class _Shutdown(Exception):
    """Raised inside the TaskGroup to stop every task when SIGTERM/SIGINT arrives."""


@dataclass(slots=True)
class Agent:
    cfg: AgentConfig
    config_path: Path | None = None  # for the remote "reload" command
    # Set when the technician's page applied a config (or rolled one back): the caller runs
    # the agent again, in a fresh process image, once this run has stopped cleanly.
    restart_requested: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        if any(r.driver in ("barcode", "hid") and r.enabled for r in cfg.readers):
            barcode_data.preload()  # not at the first scan, on a busy event loop
        if cfg.uplink.est is not None:
            _recover_identity(cfg)
        buffer = await SqliteBuffer.open(cfg.buffer)
        topic_map = topics(cfg.uplink.mqtt, cfg.gateway.site, cfg.gateway.id)
        depth = (await buffer.stats()).events_pending
        head = await buffer.chain_head()
        uplink = MqttUplink(
            cfg.uplink.mqtt,
            client_id=cfg.mqtt_client_id,
            will=Will(topic_map["status"], status_message(cfg, "offline", version=__version__,
                                                          chain_at_connect=head),
                      qos=1, retain=True),
            birth=Will(topic_map["status"],
                       status_message(cfg, "online", depth, version=__version__, chain=head),
                       retain=True),
        )
        ingest = Ingest(buffer, window_s=cfg.buffer.commit_interval_ms / 1000)
        # A full disk is expected, not fatal: the stages that drain the buffer keep going (the
        # pipeline retries smaller batches itself; the forwarder's writes wait and retry).
        pipeline = Pipeline(
            buffer, timezone=cfg.gateway.timezone, wake=ingest.accepted, clock=time.time,
            readers=cfg.readers,
        )
        # Every-read and barcode reads are committed as their events, in one transaction.
        ingest.direct = pipeline
        # A busy scanner's events are formed in a process of their own (issue 12); off with
        # EDGE_AGENT_FORMER=0 (the benchmark's comparison).
        former = None if os.environ.get("EDGE_AGENT_FORMER") == "0" else EventFormer()
        pipeline.former = former
        signing = cfg.uplink.signing_files
        signer = None if signing is None else load_signer(signing[0], signing[1],
                                                          password_file=signing[2])
        if signer is None:
            log.warning("documents are chained but NOT signed: no uplink.signing key and no "
                        "mTLS client key (docs/provenance.md)")
        forwarder = Forwarder(
            RetryWhenFull(buffer, who="forwarder"), uplink, cfg.uplink.mqtt, topic_map,
            wake=pipeline.produced, gateway=f"{cfg.gateway.site}/{cfg.gateway.id}",
            signer=signer,
        )
        readers = ReaderTasks(cfg.readers, ingest.put, put_nowait=ingest.put_nowait)
        health = HealthReporter(cfg, __version__, readers.statuses, uplink, forwarder, buffer,
                                topic_map)
        remote = RemoteCommands(cfg, readers, forwarder, uplink, config_path=self.config_path)
        commands = self._command_server(uplink, topic_map["base"], remote)

        def restart() -> None:
            self.restart_requested = True
            stop.set()

        field_tools = Runtime(cfg, readers.statuses, buffer, uplink, forwarder, ingest,
                              commands=commands, config_path=self.config_path,
                              reader_commands=remote, restart=restart, former=former)
        ingest.on_read = field_tools.tap.on_read
        pipeline.on_events = field_tools.tap.on_events
        name_thread("edge-agent")  # the process too, also when run as `python -m agent`
        log.info(
            "edge-agent %s starting: gateway %s at %s, %d reader(s), buffer %s, broker %s:%d",
            __version__, cfg.gateway.id, cfg.gateway.site, len(cfg.readers), cfg.buffer.path,
            cfg.uplink.mqtt.host, cfg.uplink.mqtt.port,
        )
        # Everything made so far lives as long as the agent: out of the cyclic collector's
        # sight it is not walked again by each full collection, which took 22 ms (the GIL
        # held, no port read) with it and 4-6 ms without; at 10,000 lines/s a 4 KB tty
        # buffer lasts 6.4 ms (issue 12: these pauses were most of the overruns left).
        gc.collect()
        gc.freeze()
        await uplink.start()
        try:
            async with asyncio.TaskGroup() as tg:
                readers.bind(tg)
                critical = [
                    tg.create_task(ingest.run(), name="ingest"),
                    tg.create_task(pipeline.run(), name="pipeline"),
                    tg.create_task(forwarder.run(), name="forwarder"),
                ]
                if former is not None:
                    tg.create_task(former.run(), name="event-former")
                tg.create_task(health.run(), name="uplink-health")
                tg.create_task(health.run_status(), name="uplink-status")
                tg.create_task(uplink.failback_probe(), name="uplink-failback")
                tg.create_task(NetworkWatch(uplink.on_network).run(),
                               name="uplink-network-watch")
                if commands is not None:
                    tg.create_task(commands.run(), name="uplink-commands")
                tg.create_task(serve_field_tools(field_tools), name="field-tools")
                readers.start_enabled()
                tg.create_task(_wait_for_stop(stop), name="stop-signal")
                # A reader unplugged or a broker outage is not unhealthy (a restart fixes
                # neither); a core task that ended, or a blocked event loop, is.
                tg.create_task(
                    systemd.watchdog_loop(lambda: not any(t.done() for t in critical)),
                    name="watchdog",
                )
                tg.create_task(_report_status(field_tools), name="sd-status")
                tg.create_task(_reader_alarms(readers.statuses, buffer), name="reader-alarms")
                if cfg.uplink.est is not None:
                    renewal = self._renewal(uplink, buffer, forwarder)
                    field_tools.identity = renewal.status
                    tg.create_task(renewal.run(), name="identity-renewal")
                systemd.ready(field_tools.status_line())
        except* _Shutdown:
            log.info("shutting down")
        finally:
            if self.restart_requested:
                systemd.reloading("restarting with the configuration applied from the page")
            else:
                systemd.stopping("stopping: committing accepted reads, closing the buffer")
            readers.bind(None)
            # Readers are stopped: commit what they handed over, then turn it into events.
            # Whatever is not yet delivered stays in the buffer for the next start.
            try:
                await ingest.drain()
                while await pipeline.step():
                    pass
            finally:
                await health.say_offline()
                await uplink.aclose()
                await buffer.aclose()
            log.info(
                "stopped: %d reads accepted, %d events delivered in %d messages this run%s",
                ingest.accepted_total, forwarder.delivered_events, forwarder.delivered_messages,
                f"; {ingest.lost_at_shutdown} reads NOT stored (buffer full at shutdown)"
                if ingest.lost_at_shutdown else "",
            )

    def _renewal(self, uplink: MqttUplink, buffer: SqliteBuffer,
                 forwarder: Forwarder) -> IdentityRenewal:
        from agent.uplink.renewal import IdentityRenewal  # cryptography: only with EST

        cfg = self.cfg
        tls = cfg.uplink.mqtt.tls
        password = read_secret(tls.key_password_file, None, "uplink.mqtt.tls.key_password_file")
        # Signing with the mTLS identity (no uplink.signing key of its own): the signer follows
        # each renewal, so documents frozen from then on are signed with the new key.
        signs_with_identity = cfg.uplink.signing.enabled and cfg.uplink.signing.key is None

        async def switch() -> None:
            assert tls.cert is not None
            assert tls.key is not None
            if signs_with_identity:
                forwarder.set_signer(load_signer(tls.key, tls.cert,
                                                 password_file=tls.key_password_file))
            await uplink.switch_identity(str(tls.cert), str(tls.key), password)

        async def alarm(payload: dict[str, Any]) -> None:
            await buffer.put_events([OutEvent(kind="alarm", payload=json.dumps(
                payload, sort_keys=True), priority=PRIORITY_ALARM, created_at_s=time.time())])

        return IdentityRenewal(cfg, switch, alarm, config_file=str(self.config_path or
                                                                   "<config>"))

    def _command_server(self, uplink: MqttUplink, base: str,
                        target: RemoteCommands) -> CommandServer | None:
        c = self.cfg.uplink.commands
        if not c.enabled:
            return None
        secret = read_secret(c.secret_file, c.secret_env, "uplink.commands secret")
        assert secret is not None  # the config requires one of the two
        verifier = CommandVerifier(secret.encode(), max_skew_s=c.max_skew_s, clock=time.time)
        return CommandServer(uplink, target, verifier, base, reply_prefix=c.reply_prefix)


def _recover_identity(cfg: AgentConfig) -> None:
    """A power cut during a certificate renewal: make certificate and key a pair again."""
    tls = cfg.uplink.mqtt.tls
    if tls.cert is None or tls.key is None:
        return
    from agent.uplink import identity  # cryptography: only with a client certificate

    done = identity.recover(tls.cert, tls.key)
    if done is not None:
        log.warning("identity: %s", done)


async def _report_status(field_tools: Runtime) -> None:
    last = ""
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        line = field_tools.status_line()
        if line != last:
            systemd.status(line)
            last = line


async def _reader_alarms(statuses: Mapping[str, ReaderStatus], buffer: SqliteBuffer,
                         every_s: float = 1.0) -> None:
    """Alarms the readers raised (LLRP antenna events, reader exceptions) -> the buffer, as
    ``alarm`` rows: the forwarder publishes them on ``.../alarms`` like the buffer's own."""
    while True:
        await asyncio.sleep(every_s)
        for status in list(statuses.values()):
            alarms = status.take_alarms()
            if not alarms:
                continue
            now = time.time()
            try:
                await buffer.put_events([
                    OutEvent(kind="alarm", payload=json.dumps(a, sort_keys=True),
                             priority=PRIORITY_ALARM, created_at_s=now) for a in alarms])
            except BufferFullError as exc:
                status.pending_alarms[:0] = alarms  # kept for the next round
                log.warning("reader alarms wait: %s", exc)


async def _wait_for_stop(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _Shutdown
