"""Wires the layers into one TaskGroup: readers -> ingest -> buffer -> pipeline -> forwarder."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__, systemd
from agent.buffer.ingest import Ingest
from agent.buffer.retry import RetryWhenFull
from agent.buffer.sqlite import SqliteBuffer
from agent.clock import kernel_clock_synchronised, utcnow
from agent.config import AgentConfig, ConfigError, load_config
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.server import serve as serve_field_tools
from agent.pipeline.worker import Pipeline
from agent.readers.control import ReaderControl, power_from_wire
from agent.readers.drivers.base import SettingNotSupported
from agent.readers.session import ReaderCommandError
from agent.readers.status import ReaderStatus
from agent.readers.supervisor import supervise_reader
from agent.uplink.cmdserver import CommandServer
from agent.uplink.commands import CommandError, CommandVerifier
from agent.uplink.forwarder import Forwarder, topics
from agent.uplink.health import UplinkFacts, health_payload, reader_rates, status_payload
from agent.uplink.mqtt import MqttUplink, UplinkError, Will
from agent.uplink.security import cert_expiry, check_security, read_secret

log = logging.getLogger(__name__)


class _Shutdown(Exception):
    """Raised inside the TaskGroup to stop every task when SIGTERM/SIGINT arrives."""


@dataclass(slots=True)
class Agent:
    cfg: AgentConfig
    readers: dict[str, ReaderStatus] = field(default_factory=dict)
    config_path: Path | None = None  # for the remote "reload" command
    # Per reader, for the agent's lifetime (across stop/start and reconnects): desired power.
    controls: dict[str, ReaderControl] = field(default_factory=dict)
    # How long a `set power` command waits for the reader to confirm (it applies the change
    # between two inventory rounds); later, it answers "queued" and the change still happens.
    power_confirm_s: float = 8.0
    _tg: asyncio.TaskGroup | None = None
    _reader_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _ingest: Ingest | None = None
    _forwarder: Forwarder | None = None
    _uplink: MqttUplink | None = None
    _buffer: SqliteBuffer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        buffer = await SqliteBuffer.open(cfg.buffer)
        self._buffer = buffer
        topic_map = topics(cfg.uplink.mqtt, cfg.gateway.site, cfg.gateway.id)
        offline = self._status_bytes("offline")
        depth = (await buffer.stats()).events_pending
        uplink = MqttUplink(
            cfg.uplink.mqtt,
            client_id=cfg.mqtt_client_id,
            will=Will(topic_map["status"], offline, qos=1, retain=True),
            birth=Will(topic_map["status"], self._status_bytes("online", depth), retain=True),
        )
        self._uplink = uplink
        ingest = Ingest(buffer)
        self._ingest = ingest
        # A full disk is expected, not fatal: the stages that drain the buffer keep going (the
        # pipeline retries smaller batches itself; the forwarder's writes wait and retry).
        pipeline = Pipeline(
            buffer, timezone=cfg.gateway.timezone, wake=ingest.accepted, clock=time.time,
            readers=cfg.readers,
        )
        forwarder = Forwarder(
            RetryWhenFull(buffer, who="forwarder"), uplink, cfg.uplink.mqtt, topic_map,
            wake=pipeline.produced,
        )
        self._forwarder = forwarder
        commands = self._command_server(uplink, topic_map["base"])
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
                self._tg = tg
                critical = [
                    tg.create_task(ingest.run(), name="ingest"),
                    tg.create_task(pipeline.run(), name="pipeline"),
                    tg.create_task(forwarder.run(), name="forwarder"),
                ]
                tg.create_task(self._health(topic_map["health"], topic_map["status"]),
                               name="uplink-health")
                tg.create_task(uplink.failback_probe(), name="uplink-failback")
                if commands is not None:
                    tg.create_task(commands.run(), name="uplink-commands")
                tg.create_task(serve_field_tools(field_tools), name="field-tools")
                for rc in cfg.readers:
                    if not rc.enabled:
                        continue
                    self._start_reader_task(rc.name)
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
            self._tg = None
            # Readers are stopped: commit what they handed over, then turn it into events.
            # Whatever is not yet delivered stays in the buffer for the next start.
            try:
                await ingest.drain()
                while await pipeline.step():
                    pass
            finally:
                await self._say_offline(uplink, topic_map["status"])
                await uplink.aclose()
                await buffer.aclose()
            log.info(
                "stopped: %d reads accepted, %d events delivered in %d messages this run%s",
                ingest.accepted_total, forwarder.delivered_events, forwarder.delivered_messages,
                f"; {ingest.lost_at_shutdown} reads NOT stored (buffer full at shutdown)"
                if ingest.lost_at_shutdown else "",
            )

    # ------------------------------------------------------------------ uplink state

    def _status_bytes(self, state: str, depth: int | None = None) -> bytes:
        cfg = self.cfg
        return json.dumps(status_payload(
            state=state, gateway=cfg.gateway.id, site=cfg.gateway.site, version=__version__,
            now=utcnow(), readers=[r.name for r in cfg.readers if r.enabled],
            buffer_depth=depth,
        )).encode()

    async def _say_offline(self, uplink: MqttUplink, topic: str) -> None:
        """Clean shutdown: an explicit retained offline (the will is not sent on DISCONNECT 0)."""
        if not uplink.connected:
            return
        try:
            await uplink.publish(topic, self._status_bytes("offline"), retain=True,
                                 content_type="application/json", timeout_s=3.0)
        except UplinkError as exc:
            log.warning("offline status not delivered: %s", exc)

    async def _health(self, topic: str, status_topic: str) -> None:
        cfg = self.cfg
        m = cfg.uplink.mqtt
        assert self._uplink is not None
        assert self._forwarder is not None
        assert self._buffer is not None
        uplink, forwarder, buffer = self._uplink, self._forwarder, self._buffer
        previous: dict[str, int] = {}
        last = time.monotonic()
        warned_day: dict[str, int] = {}
        while True:
            now = utcnow()
            certs = cert_expiry(m, now)
            for c in certs:
                day = int(time.time() // 86400)
                if (c.days_left is None or c.days_left <= m.cert_expiry_warn_days) and \
                        warned_day.get(c.name) != day:
                    warned_day[c.name] = day
                    log.warning("uplink: %s certificate %s %s", c.name, c.path,
                                "cannot be read" if c.days_left is None else
                                f"expired {-c.days_left:g} days ago" if c.expired else
                                f"expires in {c.days_left:g} days")
            stats = await buffer.stats()
            uplink.set_birth(Will(status_topic, self._status_bytes("online", stats.events_pending),
                                  retain=True))
            mono = time.monotonic()
            rates = reader_rates(self.readers, previous, mono - last)
            previous = {n: r.reads_total for n, r in self.readers.items()}
            last = mono
            fs = forwarder.stats()
            us = uplink.stats()
            host, port = uplink.broker
            facts = UplinkFacts(
                connected=us.connected, broker=f"{host}:{port}", on_primary=uplink.on_primary,
                protocol=m.protocol, tls=m.tls_enabled, reconnects=us.reconnects,
                delivered_events=fs.delivered_events, delivered_messages=fs.delivered_messages,
                refused_messages=fs.refused_messages, dead_lettered=fs.dead_lettered,
                last_refusal=fs.last_refusal, drain_rate_events_s=fs.drain_rate_events_s,
                publish_latency_ms_p50=fs.publish_latency_ms_p50,
                publish_latency_ms_p99=fs.publish_latency_ms_p99,
                event_latency_ms_p50=fs.event_latency_ms_p50,
                event_latency_ms_p99=fs.event_latency_ms_p99,
            )
            payload = health_payload(
                gateway=cfg.gateway.id, site=cfg.gateway.site, version=__version__, now=now,
                readers=self.readers, read_rates=rates, buffer=stats, uplink=facts,
                clock_synchronised=kernel_clock_synchronised(), certs=certs,
                cert_warn_days=m.cert_expiry_warn_days,
            )
            if uplink.connected:
                try:
                    await uplink.publish(topic, json.dumps(payload).encode(),
                                         content_type="application/json", timeout_s=10.0)
                except UplinkError as exc:
                    log.debug("health message not delivered: %s", exc)
            await asyncio.sleep(m.health_interval_s)

    def _command_server(self, uplink: MqttUplink, base: str) -> CommandServer | None:
        c = self.cfg.uplink.commands
        if not c.enabled:
            return None
        secret = read_secret(c.secret_file, c.secret_env, "uplink.commands secret")
        assert secret is not None  # the config requires one of the two
        verifier = CommandVerifier(secret.encode(), max_skew_s=c.max_skew_s, clock=time.time)
        return CommandServer(uplink, self, verifier, base)

    # ------------------------------------------------------------------ CommandTarget

    def _start_reader_task(self, name: str) -> None:
        assert self._tg is not None
        assert self._ingest is not None
        rc = next(r for r in self.cfg.readers if r.name == name)
        status = ReaderStatus(rc.name, rc.driver, rc.port)
        self.readers[rc.name] = status
        self._reader_tasks[name] = self._tg.create_task(
            supervise_reader(rc, self._ingest.put, status, control=self._control(name)),
            name=f"reader-{rc.name}",
        )

    def _control(self, name: str) -> ReaderControl:
        control = self.controls.get(name)
        if control is None:
            rc = next(r for r in self.cfg.readers if r.name == name)
            control = self.controls[name] = ReaderControl(rc)
        return control

    def _reader(self, name: str) -> None:
        if not any(r.name == name for r in self.cfg.readers):
            raise CommandError("bad_argument", f"no reader named {name!r}")

    def status(self) -> Mapping[str, Any]:
        f = self._forwarder
        return {
            "version": __version__,
            "readers": {n: r.as_dict() for n, r in self.readers.items()},
            "uplink": None if self._uplink is None else {
                "connected": self._uplink.connected,
                "broker": "{}:{}".format(*self._uplink.broker),
                "deliveredEvents": f.delivered_events if f else 0,
                "drainRateEventsS": f.bucket.rate if f else None,
                "deadLettered": f.dead_lettered if f else 0,
                "lastRefusal": f.last_refusal if f else None,
            },
        }

    async def reload(self) -> Mapping[str, Any]:
        if self.config_path is None:
            raise CommandError("unsupported", "the agent was not started from a config file")
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            raise CommandError("invalid_config", "; ".join(str(i) for i in exc.issues)) \
                from None
        report = check_security(new)
        if report.errors:
            raise CommandError("insecure_config", "; ".join(report.errors))
        old = self.cfg
        changed = [k for k in ("gateway", "readers", "buffer", "uplink")
                   if getattr(old, k) != getattr(new, k)]
        applied: list[str] = []
        om, nm = old.uplink.mqtt, new.uplink.mqtt
        if om.drain_rate_events_s != nm.drain_rate_events_s and self._forwarder is not None:
            b = self._forwarder.bucket
            b.configured = b.rate = nm.drain_rate_events_s
            applied.append("uplink.mqtt.drain_rate_events_s")
        live = om.model_copy(update={"drain_rate_events_s": nm.drain_rate_events_s})
        restart = (changed != [] and
                   (changed != ["uplink"] or live != nm or old.uplink.commands
                    != new.uplink.commands))
        if applied:
            # What runs now is the new rate: a later reload compares with it (reverting the
            # file to the old rate must revert the bucket too). Everything else keeps waiting
            # for a restart, so it stays as started.
            self.cfg = old.model_copy(update={"uplink": old.uplink.model_copy(
                update={"mqtt": live})})
        return {"valid": True, "changed": changed, "applied": applied,
                "restartRequired": restart}

    async def set_reader_power(self, reader: str, dbm: Any) -> Mapping[str, Any]:
        self._reader(reader)
        try:
            outcome = await self._control(reader).set_power(power_from_wire(dbm),
                                                            timeout_s=self.power_confirm_s)
        except ValueError as exc:
            raise CommandError("bad_argument", str(exc)) from None
        except SettingNotSupported as exc:
            raise CommandError("unsupported", str(exc)) from None
        except ReaderCommandError as exc:
            raise CommandError("refused", str(exc)) from None
        return outcome.as_dict(reader)

    async def start_reader(self, reader: str) -> Mapping[str, Any]:
        self._reader(reader)
        task = self._reader_tasks.get(reader)
        if task is not None and not task.done():
            return {"reader": reader, "state": "already running"}
        if self._tg is None:
            raise CommandError("unavailable", "the agent is shutting down")
        self._start_reader_task(reader)
        return {"reader": reader, "state": "started"}

    async def stop_reader(self, reader: str) -> Mapping[str, Any]:
        self._reader(reader)
        task = self._reader_tasks.pop(reader, None)
        if task is None or task.done():
            return {"reader": reader, "state": "not running"}
        task.cancel()
        await asyncio.wait([task])
        if reader in self.readers:
            self.readers[reader].state = "stopped"
        return {"reader": reader, "state": "stopped"}


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
