"""The running readers: one supervised task per enabled reader, started and stopped by name.

Owned by the app (which gives it its TaskGroup) and used by the remote ``start_reader`` /
``stop_reader`` / ``set_reader_power`` commands. A reader's :class:`ReaderControl` (its desired
output power) lives for the agent's lifetime, across stop/start and reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from agent.config import AnyReaderConfig
from agent.model import Read
from agent.readers.control import ReaderControl
from agent.readers.status import ReaderStatus
from agent.readers.supervisor import supervise_reader


@dataclass(slots=True)
class ReaderTasks:
    configs: Sequence[AnyReaderConfig]
    put: Callable[[Read], Awaitable[None]]
    put_nowait: Callable[[Read], bool] | None = None  # see supervise_reader
    statuses: dict[str, ReaderStatus] = field(default_factory=dict)
    controls: dict[str, ReaderControl] = field(default_factory=dict)
    _tg: asyncio.TaskGroup | None = None
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def config(self, name: str) -> AnyReaderConfig | None:
        return next((r for r in self.configs if r.name == name), None)

    def bind(self, tg: asyncio.TaskGroup | None) -> None:
        """The TaskGroup new reader tasks go into; None once the agent is shutting down."""
        self._tg = tg

    @property
    def accepting(self) -> bool:
        return self._tg is not None

    def start_enabled(self) -> None:
        for rc in self.configs:
            if rc.enabled:
                self.start(rc.name)

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def start(self, name: str) -> None:
        rc = self.config(name)
        assert rc is not None, name
        assert self._tg is not None, "start() outside the agent's TaskGroup"
        status = ReaderStatus(rc.name, rc.driver, rc.link_spec)
        self.statuses[rc.name] = status
        self._tasks[name] = self._tg.create_task(
            supervise_reader(rc, self.put, status, control=self.control(name),
                             put_nowait=self.put_nowait),
            name=f"reader-{rc.name}",
        )

    async def stop(self, name: str) -> bool:
        """Cancel the reader's task and wait for it; False if it was not running."""
        task = self._tasks.pop(name, None)
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.wait([task])
        if name in self.statuses:
            self.statuses[name].state = "stopped"
        return True

    def control(self, name: str) -> ReaderControl:
        control = self.controls.get(name)
        if control is None:
            rc = self.config(name)
            assert rc is not None, name
            control = self.controls[name] = ReaderControl(rc)
        return control
