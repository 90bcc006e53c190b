"""Run one reader's supervisor in-process against reader-sim on a real pty or TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from agent.config import AnyReaderConfig, ReaderConfig
from agent.model import Read, TagRead
from agent.readers.control import ReaderControl
from agent.readers.status import ReaderStatus
from agent.readers.supervisor import supervise_reader
from tests.support.harness import SimProcess

_READER = TypeAdapter(ReaderConfig)


def reader_config(**fields: Any) -> AnyReaderConfig:
    """A validated reader config (the same models the YAML goes through)."""
    fields.setdefault("name", "r1")
    fields.setdefault("reconnect_min_s", 0.05)
    fields.setdefault("reconnect_max_s", 0.5)
    cfg: AnyReaderConfig = _READER.validate_python(fields)
    return cfg


class Run:
    """A supervisor task and what it delivered."""

    def __init__(self, cfg: AnyReaderConfig, control: ReaderControl | None = None,
                 **options: Any) -> None:
        self.cfg = cfg
        self.control = control
        self.options = options  # more supervise_reader() arguments (resolve_input=, ...)
        self.status = ReaderStatus(cfg.name, cfg.driver, cfg.link_spec)
        self.reads: list[Read] = []
        self.read_times: list[float] = []  # time.monotonic() of each put
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _put(self, read: Read) -> None:
        self.reads.append(read)
        self.read_times.append(time.monotonic())
        self._changed.set()

    async def __aenter__(self) -> Run:
        self._task = asyncio.create_task(
            supervise_reader(self.cfg, self._put, self.status, rng=random.Random(1),
                             control=self.control, **self.options),
            name=f"reader-{self.cfg.name}",
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # a bug inside the supervisor: surface it
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait_for(
        self, predicate: Callable[[Run], bool], timeout_s: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            assert self._task is not None
            if self._task.done():
                self._task.result()
                raise AssertionError(f"supervisor ended while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; status "
                    f"{self.status.as_dict()}; {len(self.reads)} reads"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.1)):
                    await self._changed.wait()

    async def wait_reads(self, n: int, timeout_s: float = 15.0) -> None:
        await self.wait_for(lambda r: len(r.reads) >= n, timeout_s, f"{n} reads")

    @property
    def tags(self) -> list[TagRead]:
        return [r for r in self.reads if isinstance(r, TagRead)]


class SimLines:
    """Everything reader-sim prints after its first line (``GONE ...`` / ``PORT ...``), with the
    time.monotonic() each line arrived."""

    def __init__(self, sim: SimProcess) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._pump, args=(sim,), daemon=True)
        self._thread.start()

    def _pump(self, sim: SimProcess) -> None:
        _ = sim.port  # the first line is the port, not an event
        for raw in sim.take_pending().splitlines():
            self.lines.append((time.monotonic(), raw.decode().strip()))
        out = sim.proc.stdout
        assert out is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in out:
                self.lines.append((time.monotonic(), raw.decode().strip()))

    def when(self, prefix: str) -> float | None:
        for t, line in self.lines:
            if line.startswith(prefix):
                return t
        return None


@contextlib.contextmanager
def sim(tmp_path: Path, *args: str) -> Iterator[SimProcess]:
    proc = SimProcess(*args, log_path=tmp_path / f"sim-{args[0]}.log")
    try:
        _ = proc.port  # wait until it listens
        yield proc
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def llrpkit_emulator(*, tags: int = 5, seed: int = 4) -> AsyncIterator[int]:
    """llrpkit's LLRP reader emulator (a reader we did not write) on a free port; yields the
    port. Skips the test where llrpkit is not installed."""
    import re
    import shutil
    import sys

    import pytest

    exe = shutil.which("llrpkit", path=str(Path(sys.executable).parent)) or shutil.which(
        "llrpkit")
    if exe is None:
        pytest.skip("llrpkit is not installed (make venv installs it)")
    proc = await asyncio.create_subprocess_exec(
        exe, "emulate", "--port", "0", "--tags", str(tags), "--seed", str(seed),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        m = re.search(r"port (\d+)", first)
        assert m, first
        yield int(m.group(1))
    finally:
        proc.terminate()
        await proc.wait()
