"""The simulator's only real I/O: a pseudo-terminal or a TCP listener around a device.

* ``serve_pty``: ``os.openpty()`` in raw mode. We keep a slave fd open ourselves, so the port
  survives the agent closing and reopening it (the device keeps its state, like a powered
  reader on a USB adapter). A *vanish* closes master and slave, so the agent sees EIO/hangup
  and the path disappears; after the pause a fresh pty (new path, fresh device) appears.
* ``serve_tcp``: one device per connection. A vanish closes every connection and stops
  listening; after the pause it listens again on the same port.

Writes are paced at ``10 * len(frame) / baud`` seconds per frame (8N1), because neither a pty
nor a socket has a baud rate. Line faults (garbage, split writes, dropped bytes, bad checksums)
are applied on the way out.

Stdout line protocol (``announce``): the first line is the port (``/dev/pts/7`` or
``tcp://127.0.0.1:4001``); when the port vanishes ``GONE <port>``; when it is back
``PORT <port>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import ssl
import tty
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from readersim.device import Clock, Device, HangsUp
from readersim.faults import Chunk, LineFaultInjector, LineFaults, Window

log = logging.getLogger(__name__)

Announce = Callable[[str], None]
DeviceFactory = Callable[[Clock, random.Random, float], Device]  # (clock, rng, epoch_s)
Reader = Callable[[], Awaitable[bytes]]  # b"" = port closed
Writer = Callable[[bytes], Awaitable[None]]

READ_CHUNK_BYTES = 4096
BITS_PER_BYTE_8N1 = 10


class PortClosedError(Exception):
    """The other end went away (EOF, reset, hangup)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeSpec:
    transport: Literal["pty", "tcp"] = "pty"
    host: str = "127.0.0.1"
    port: int = 0
    link: Path | None = None  # pty: keep this symlink pointing at the current slave
    line_faults: LineFaults = field(default_factory=LineFaults)
    vanish: tuple[Window, ...] = ()  # scenario times at which the port disappears
    seed: int = 1
    tls_cert: Path | None = None  # tcp: serve TLS (LLRP over TLS) with this cert and key
    tls_key: Path | None = None


class PacedLine:
    """Writes frames no faster than a serial line of ``baud`` (8N1) would carry them."""

    def __init__(self, write: Writer, injector: LineFaultInjector | None, clock: Clock) -> None:
        self._write = write
        self._injector = injector
        self._clock = clock
        self._free_at_s = float("-inf")
        self.bytes_sent = 0

    async def send(self, frame: bytes, baud: int) -> None:
        chunks = self._injector.transform(frame) if self._injector else [Chunk(frame)]
        for chunk in chunks:
            await self.send_raw(chunk.data, baud)
            if chunk.gap_after_s > 0:
                self._free_at_s += chunk.gap_after_s
                await asyncio.sleep(chunk.gap_after_s)

    async def send_raw(self, data: bytes, baud: int) -> None:
        if not data:
            return
        now = self._clock()
        start = max(now, self._free_at_s)  # absolute schedule: timer slack does not add up
        if start > now:
            await asyncio.sleep(start - now)
        await self._write(data)
        self.bytes_sent += len(data)
        self._free_at_s = start + BITS_PER_BYTE_8N1 * len(data) / baud


async def run_session(
    device: Device,
    read: Reader,
    write: Writer,
    *,
    clock: Clock,
    epoch_s: float,
    injector: LineFaultInjector | None = None,
) -> None:
    """Shuttle bytes between a port and a device until the port closes (PortClosedError)."""
    outbox: deque[tuple[bytes, int]] = deque()
    wake = asyncio.Event()
    line = PacedLine(write, injector, clock)
    hangs_up = device if isinstance(device, HangsUp) else None

    async def receive() -> None:
        while True:
            data = await read()
            if not data:
                raise PortClosedError
            log.debug("host -> device: %s", data.hex(" "))
            baud = device.baud
            outbox.extend((frame, baud) for frame in device.feed(data))
            wake.set()

    async def transmit() -> None:
        while True:
            wake.clear()
            if injector is not None and (noise := injector.due_bursts(clock() - epoch_s)):
                await line.send_raw(noise, device.baud)
            if not outbox:
                baud = device.baud
                outbox.extend((frame, baud) for frame in device.poll())
            if outbox:
                frame, baud = outbox.popleft()
                await line.send(frame, baud)
                continue
            due = device.next_due_s()
            if hangs_up is not None and (hangup := hangs_up.hangup_due_s()) is not None:
                if hangup <= clock():
                    raise PortClosedError  # the device closes the connection
                due = hangup if due is None else min(due, hangup)
            burst = injector.next_burst_s() if injector is not None else None
            if burst is not None:
                due = burst + epoch_s if due is None else min(due, burst + epoch_s)
            timeout = None if due is None else max(0.0, due - clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(receive(), name="sim-session-rx")
        tg.create_task(transmit(), name="sim-session-tx")


# -- pseudo-terminal -------------------------------------------------------------------------


class PtyPort:
    """A raw-mode pty pair; the master is ours, the slave path is what the agent opens."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self._closed = False

    async def _ready(self, add: Callable[..., None], remove: Callable[[int], bool]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        add(self.master, wake)
        try:
            await fut
        finally:
            remove(self.master)

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            try:
                return os.read(self.master, READ_CHUNK_BYTES)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno == errno.EIO:  # no slave open at all
                    return b""
                raise
            await self._ready(loop.add_reader, loop.remove_reader)

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
                view = view[n:]
            except BlockingIOError:
                # The slave's input queue is full (nobody reading): back-pressure.
                await self._ready(loop.add_writer, loop.remove_writer)
            except OSError as exc:
                raise PortClosedError from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.master)
            os.close(self._slave)


def _point_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)


def _remove_link(link: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


def _next_vanish(windows: tuple[Window, ...], t_s: float) -> Window | None:
    upcoming = [w for w in windows if w.start_s >= t_s]
    return min(upcoming, key=lambda w: w.start_s) if upcoming else None


async def serve_pty(spec: ServeSpec, factory: DeviceFactory, announce: Announce) -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    epoch_s = clock()
    rng = random.Random(spec.seed)  # noqa: S311 - simulation, not cryptography
    fault_rng = random.Random(spec.seed + 1)  # noqa: S311
    first = True
    while True:
        port = PtyPort()
        path = port.path
        window = _next_vanish(spec.vanish, clock() - epoch_s)
        try:
            if spec.link is not None:
                _point_link(spec.link, path)
            announce(path if first else f"PORT {path}")
            first = False
            device = factory(clock, rng, epoch_s)
            injector = _injector(spec.line_faults, fault_rng, device)
            deadline = None if window is None else epoch_s + window.start_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await run_session(
                        device,
                        port.read,
                        port.write,
                        clock=clock,
                        epoch_s=epoch_s,
                        injector=injector,
                    )
        finally:
            port.close()
            if spec.link is not None:
                _remove_link(spec.link)
        if window is None:
            return
        log.warning("port %s vanished for %.3g s", path, window.duration_s)
        announce(f"GONE {path}")
        await asyncio.sleep(max(0.0, epoch_s + window.end_s - clock()))


def _injector(faults: LineFaults, rng: random.Random, device: Device) -> LineFaultInjector | None:
    if not faults.any:
        return None
    return LineFaultInjector(faults, rng, bad_vectors=device.bad_vectors)


# -- TCP ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _TcpState:
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    sessions: int = 0


async def serve_tcp(spec: ServeSpec, factory: DeviceFactory, announce: Announce) -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    epoch_s = clock()
    rng = random.Random(spec.seed)  # noqa: S311 - simulation, not cryptography
    fault_rng = random.Random(spec.seed + 1)  # noqa: S311
    state = _TcpState()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("connection from %s", peer)
        device = factory(clock, random.Random(rng.random()), epoch_s)  # noqa: S311

        async def write(data: bytes) -> None:
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                raise PortClosedError from exc

        async def read() -> bytes:
            try:
                return await reader.read(READ_CHUNK_BYTES)
            except (ConnectionError, OSError):
                return b""

        try:
            await run_session(
                device,
                read,
                write,
                clock=clock,
                epoch_s=epoch_s,
                injector=_injector(spec.line_faults, fault_rng, device),
            )
        except* PortClosedError:
            log.info("connection from %s closed", peer)
        finally:
            state.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    bound_port = spec.port
    first = True
    async with asyncio.TaskGroup() as tg:

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.sessions += 1
            state.writers.add(writer)
            tg.create_task(session(reader, writer), name=f"sim-tcp-session-{state.sessions}")

        tls: ssl.SSLContext | None = None
        if spec.tls_cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(spec.tls_cert), str(spec.tls_key or spec.tls_cert))
        while True:
            server = await asyncio.start_server(
                on_connect, spec.host, bound_port, reuse_address=True, ssl=tls
            )
            try:
                bound_port = server.sockets[0].getsockname()[1]
                url = f"{'tls' if tls else 'tcp'}://{spec.host}:{bound_port}"
                announce(url if first else f"PORT {url}")
                first = False
                window = _next_vanish(spec.vanish, clock() - epoch_s)
                if window is None:
                    await asyncio.Future()  # until cancelled
                    return
                await asyncio.sleep(max(0.0, epoch_s + window.start_s - clock()))
            finally:
                server.close()
                for writer in list(state.writers):
                    writer.close()
            log.warning("tcp port %s vanished for %.3g s", bound_port, window.duration_s)
            announce(f"GONE {url}")
            await asyncio.sleep(max(0.0, epoch_s + window.end_s - clock()))


async def serve(spec: ServeSpec, factory: DeviceFactory, announce: Announce) -> None:
    if spec.transport == "tcp":
        await serve_tcp(spec, factory, announce)
    else:
        await serve_pty(spec, factory, announce)
