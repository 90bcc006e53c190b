"""What remote commands act on (the :class:`~agent.uplink.commands.CommandTarget`).

Signed commands arrive through :class:`~agent.uplink.cmdserver.CommandServer`; this class
answers them from the objects the app wired: the running readers, the forwarder, the uplink,
the config file (for ``reload``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import AgentConfig, ConfigError, load_config
from agent.readers.control import power_from_wire
from agent.readers.drivers.base import SettingNotSupported
from agent.readers.session import ReaderCommandError
from agent.readers.tasks import ReaderTasks
from agent.uplink.commands import CommandError
from agent.uplink.forwarder import Forwarder
from agent.uplink.mqtt import MqttUplink
from agent.uplink.security import check_security


@dataclass(slots=True)
class RemoteCommands:
    cfg: AgentConfig  # what runs now (a reload that applies live updates it)
    readers: ReaderTasks
    forwarder: Forwarder
    uplink: MqttUplink
    config_path: Path | None = None  # for the "reload" command
    # How long a `set power` command waits for the reader to confirm (it applies the change
    # between two inventory rounds); later, it answers "queued" and the change still happens.
    power_confirm_s: float = 8.0
    # How long `set_reader_settings` waits for the reader to be connected again with the new
    # settings (a reconnect: identify + configure); later, it answers "queued".
    settings_confirm_s: float = 15.0

    def _reader(self, name: str) -> None:
        if self.readers.config(name) is None:
            raise CommandError("bad_argument", f"no reader named {name!r}")

    def status(self) -> Mapping[str, Any]:
        f = self.forwarder
        return {
            "version": __version__,
            "readers": {n: r.as_dict() for n, r in self.readers.statuses.items()},
            "uplink": {
                "connected": self.uplink.connected,
                "broker": "{}:{}".format(*self.uplink.broker),
                "deliveredEvents": f.delivered_events,
                "drainRateEventsS": f.bucket.rate,
                "deadLettered": f.dead_lettered,
                "lastRefusal": f.last_refusal,
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
        if om.drain_rate_events_s != nm.drain_rate_events_s:
            b = self.forwarder.bucket
            b.configured = b.rate = nm.drain_rate_events_s
            applied.append("uplink.mqtt.drain_rate_events_s")
        live = om.model_copy(update={"drain_rate_events_s": nm.drain_rate_events_s})
        restart = (changed != [] and
                   (changed != ["uplink"] or live != nm or old.uplink.commands
                    != new.uplink.commands
                    or old.uplink.signing != new.uplink.signing))  # signer made at start
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
            outcome = await self.readers.control(reader).set_power(
                power_from_wire(dbm), timeout_s=self.power_confirm_s)
        except ValueError as exc:
            raise CommandError("bad_argument", str(exc)) from None
        except SettingNotSupported as exc:
            raise CommandError("unsupported", str(exc)) from None
        except ReaderCommandError as exc:
            raise CommandError("refused", str(exc)) from None
        return outcome.as_dict(reader)

    async def set_reader_settings(self, reader: str, settings: Mapping[str, Any]
                                  ) -> Mapping[str, Any]:
        self._reader(reader)
        try:
            outcome = await self.readers.control(reader).set_settings(
                settings, timeout_s=self.settings_confirm_s)
        except ValueError as exc:
            raise CommandError("bad_argument", str(exc)) from None
        except SettingNotSupported as exc:
            raise CommandError("unsupported", str(exc)) from None
        except ReaderCommandError as exc:
            raise CommandError("refused", str(exc)) from None
        return outcome.as_dict(reader)

    async def start_reader(self, reader: str) -> Mapping[str, Any]:
        self._reader(reader)
        if self.readers.running(reader):
            return {"reader": reader, "state": "already running"}
        if not self.readers.accepting:
            raise CommandError("unavailable", "the agent is shutting down")
        self.readers.start(reader)
        return {"reader": reader, "state": "started"}

    async def stop_reader(self, reader: str) -> Mapping[str, Any]:
        self._reader(reader)
        if not await self.readers.stop(reader):
            return {"reader": reader, "state": "not running"}
        return {"reader": reader, "state": "stopped"}
