"""The only place that does reader I/O: a serial port, a pyserial URL (socket://), a pty, or a
Linux input device (keyboard-wedge scanners; InputLink)."""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import errno
import fcntl
import logging
import os
import selectors
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import serial
import serial_asyncio_fast

from agent.config import ConfigError, TlsConfig, read_secret_file
from agent.osnames import name_thread

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The port cannot be opened, or vanished (USB unplug, EIO, EOF, TCP reset)."""


class Link(Protocol):
    async def read(self) -> bytes: ...  # b"" = port gone

    # read() with a deadline: None if nothing came within ``timeout_s`` (None: no deadline).
    # The one way a session waits for bytes (LinkBase: asyncio.timeout around read();
    # ThreadedSerialLink: one future and one lazily moved timer, issue 12).
    async def read_within(self, timeout_s: float | None) -> bytes | None: ...

    # What read() would return at once, or None when it would wait (no coroutine, no wait).
    def read_nowait(self) -> bytes | None: ...

    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


def _report_vanished_ports_quietly(loop: asyncio.AbstractEventLoop) -> None:
    """serial_asyncio_fast reports a failed write (EIO: the port vanished) to the loop's
    exception handler, which logs an ERROR with a traceback, although nothing is wrong with the
    agent: the transport is aborted, the link's next call raises LinkError and the supervisor
    reconnects. So such reports become one INFO line; every other one goes where it went."""
    if getattr(loop, "_tea_serial_reports", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, serial.SerialException) and "serial transport" in str(
                context.get("message", "")):
            port = getattr(getattr(context.get("transport"), "serial", None), "port", "?")
            log.info("serial port %s: %s (the link closes and reconnects)", port, exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    setattr(loop, "_tea_serial_reports", True)  # noqa: B010 - a mark on a foreign object


@runtime_checkable
class RateLink(Protocol):
    """A link whose line rate can change while it is open (a serial port)."""

    async def set_baudrate(self, baudrate: int) -> None: ...


class LinkBase:
    """:class:`Link`'s deadline and no-wait reads for a link whose one wait is ``read()``:
    ``read_within`` puts asyncio.timeout around it (a cancelled stream read keeps its bytes
    in the stream), ``read_nowait`` has nothing at once. Links and test links subclass it."""

    async def read(self) -> bytes:
        raise NotImplementedError

    async def read_within(self, timeout_s: float | None) -> bytes | None:
        if timeout_s is None:
            return await self.read()
        try:
            async with asyncio.timeout(timeout_s):
                return await self.read()
        except TimeoutError:
            return None

    def read_nowait(self) -> bytes | None:
        return None


class _ClosingContext(LinkBase):
    """``async with link:`` closes it (every link has ``aclose``)."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _StreamLink(_ClosingContext):
    """A link over asyncio streams; subclasses open it. ``_ERRORS`` are the failures that mean
    the port or connection is gone (LinkError), whatever the transport."""

    _ERRORS: tuple[type[BaseException], ...] = (OSError,)
    _READ_BYTES = 4096

    def __init__(
        self, port: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.port = port
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def read(self) -> bytes:
        try:
            return await self._reader.read(self._READ_BYTES)
        except self._ERRORS as exc:
            raise LinkError(f"{self.port}: {exc}") from exc

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise LinkError(f"{self.port}: port is closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except self._ERRORS as exc:
            raise LinkError(f"{self.port}: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except self._ERRORS as exc:
            log.debug("closing %s: %s", self.port, exc)


class SerialLink(_StreamLink):
    """pyserial behind asyncio streams; ``socket://host:port`` URLs go over TCP."""

    _ERRORS = (serial.SerialException, OSError)

    async def set_baudrate(self, baudrate: int) -> None:
        """Change the line rate of the open port: pyserial reconfigures it in place (a Mercury
        module switched with 0x06 talks at the new rate right after its reply)."""
        port = self._writer.get_extra_info("serial")
        if port is None:
            raise LinkError(f"{self.port}: the line rate cannot be changed on this link")
        try:
            port.baudrate = baudrate
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{self.port}: cannot set {baudrate} baud: {exc}") from exc

    @classmethod
    async def open(cls, port: str, baudrate: int) -> SerialLink | ThreadedSerialLink:
        if not port.startswith(_URL_SCHEMES) and baudrate:
            return await ThreadedSerialLink.open(port, baudrate)
        _report_vanished_ports_quietly(asyncio.get_running_loop())
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {port}: {exc}") from exc
        return cls(port, reader, writer)


_URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://", "alt://", "hwgrep://", "tls://")


class _PortReader:
    """One thread that reads every local serial port of one event loop (issue 12, item 3).

    On the event loop a port is read only when the loop comes round to it; a busy step of the
    pipeline or the forwarder (a few ms) is longer than a 4 KB tty buffer lasts at
    10,000 lines/s (6.4 ms), and what does not fit is lost as a UART overrun. This thread sits
    in ``select`` on all the ports, takes whatever the kernel holds (up to 64 KiB a port) as
    soon as it comes, and hands what every ready port gave to the loop in one call; the
    drivers frame it there as before. One thread for all ports, not one each: sixteen R2000
    readers at line rate wake it about 9,000 times a second, and each wake-up of a thread
    costs two hand-overs of the GIL.
    """

    _READ_BYTES = 65536
    _lock = threading.Lock()  # the registry below
    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, _PortReader]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: collections.deque[tuple[str, ThreadedSerialLink]] = collections.deque()
        self._links = 0  # registered or about to be (guarded by _lock)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="serial-ports", daemon=True)
        self._thread.start()

    @classmethod
    def attach(cls, link: ThreadedSerialLink) -> _PortReader:
        with cls._lock:
            reader = cls._by_loop.get(link.loop)
            if reader is None or reader._stopping:
                reader = cls._by_loop[link.loop] = cls(link.loop)
            reader._links += 1
            reader._enqueue("add", link)
            return reader

    def detach(self, link: ThreadedSerialLink) -> None:
        """Stop reading the link's port; ``link.detached`` is set once the thread let go of
        its descriptor (only then may it be closed: its number could be reused)."""
        with self._lock:
            if self._stopping:
                link.detached.set()
                return
            self._links -= 1
            self._enqueue("remove", link)

    def pause(self, link: ThreadedSerialLink) -> None:
        with self._lock:
            self._enqueue("pause", link)

    def resume(self, link: ThreadedSerialLink) -> None:
        with self._lock:
            self._enqueue("resume", link)

    def _enqueue(self, op: str, link: ThreadedSerialLink) -> None:
        # Under _lock. A stopped thread has closed its wake-up pipe: never write to that
        # descriptor number again (it may belong to something else by now).
        if self._stopping:
            return
        self._commands.append((op, link))
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    # -- thread side -------------------------------------------------------------------------

    def _apply(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        while self._commands:
            op, link = self._commands.popleft()
            fd = link.read_fd
            if op in ("add", "resume") and not link.failed:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.register(fd, selectors.EVENT_READ, link)
            elif op in ("remove", "pause"):
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(fd)
                if op == "remove":
                    link.detached.set()

    def _run(self) -> None:
        name_thread("serial-ports")  # for top -H and py-spy (agent/osnames.py)
        try:
            while True:
                got: list[tuple[ThreadedSerialLink, bytes]] = []
                failed: list[tuple[ThreadedSerialLink, OSError]] = []
                woken = False
                for key, _ in self._selector.select():
                    link = key.data
                    if link is None:
                        woken = True  # a command: applied below
                        continue
                    try:
                        data = os.read(key.fd, self._READ_BYTES)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        data, error = b"", exc
                    else:
                        error = OSError(errno.EIO, "the port returned no data (disconnected?)")
                    if data:
                        got.append((link, data))
                        continue
                    # A pty whose other side closed, a vanished USB port: stop reading it.
                    link.failed = True
                    self._selector.unregister(key.fd)
                    failed.append((link, error))
                if got or failed:
                    self._loop.call_soon_threadsafe(_deliver, got, failed)
                # Drain the wake-up pipe whenever it is readable, even with no command queued:
                # _enqueue may write its byte after _apply emptied the pipe but before it took
                # the command, and a byte left in a level-triggered pipe would make select
                # return at once forever (a core spent on an idle gateway).
                if woken or self._commands or self._links <= 0:
                    self._apply()
                    with self._lock:
                        if self._links <= 0 and not self._commands:
                            self._stopping = True  # with the decision: attach() sees it
                            if self._by_loop.get(self._loop) is self:
                                del self._by_loop[self._loop]
                            return
        except RuntimeError:
            pass  # the loop closed: nobody reads any more
        except Exception as exc:
            # A bug. Do not leave the ports unread behind working-looking links: each fails,
            # its supervisor reconnects, and the new link gets a new thread.
            log.exception("serial port thread failed; its ports reconnect")
            links = [k.data for k in self._selector.get_map().values() if k.data is not None]
            with self._lock:  # and links it was to add: their reads would wait forever
                links += [link for op, link in self._commands
                          if op in ("add", "resume") and link not in links]
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(
                    _deliver, [], [(link, OSError(errno.EIO, f"port thread failed: {exc!r}"))
                                   for link in links])
        finally:
            with self._lock:
                self._stopping = True
                if self._by_loop.get(self._loop) is self:
                    del self._by_loop[self._loop]
            for key in list(self._selector.get_map().values()):
                if key.data is not None:
                    key.data.detached.set()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


def _deliver(got: list[tuple[ThreadedSerialLink, bytes]],
             failed: list[tuple[ThreadedSerialLink, OSError]]) -> None:
    for link, data in got:
        link.deliver(data)
    for link, exc in failed:
        link.fail(exc)


class PortPump:
    """The agent's side of the port pump (agent/readers/pump.py): a child process that empties
    the local serial ports into pipes, out of reach of this process's GIL (issue 12, item 3).

    One per process, started with the first port and again after it died. ``add`` gives the
    pipe a port's bytes come out of; ``remove`` returns once the pump no longer holds the port
    (only then may it be closed and opened again: no stray reader takes its bytes). A pump
    that cannot be started or stops answering is a LinkError for that port; if it cannot be
    started at all, the port thread reads the port itself, as before the pump (logged once).
    """

    _lock = threading.Lock()  # one request at a time: answers come in order
    _current: ClassVar[PortPump | None] = None
    _unavailable: ClassVar[str | None] = None  # why no pump could be started
    PIPE_BYTES = 1024 * 1024  # a second of a busy scanner line (F_SETPIPE_SZ; capped by the OS)
    ANSWER_S = 5.0
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pump.py")

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - our interpreter, our script
                [sys.executable, "-I", "-S", self.script, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(self.ANSWER_S)
        self._sock = ours
        self._next_id = 0
        log.info("serial port pump started (pid %d)", self.proc.pid)

    @classmethod
    def add(cls, port_fd: int) -> tuple[int, int] | None:
        """(id, the read end of the port's pipe), or None: no pump here, read the port."""
        with cls._lock:
            for attempt in range(2):
                pump = cls._current
                if pump is None:
                    if cls._unavailable is not None:
                        return None
                    try:
                        pump = cls._current = cls()
                    except OSError as exc:
                        cls._unavailable = str(exc)
                        log.warning("serial port pump cannot start (%s): the agent reads its "
                                    "ports itself", exc)
                        return None
                try:
                    return pump._add(port_fd)
                except OSError as exc:
                    pump._discard()  # dead or not answering: a new one for this port
                    cls._current = None
                    if attempt:
                        raise LinkError(f"serial port pump: {exc}") from exc
            raise AssertionError("unreachable")

    @classmethod
    def remove(cls, pump_id: int) -> None:
        with cls._lock:
            pump = cls._current
            if pump is None:
                return  # it died: it holds nothing
            try:
                pump._request(b"del", pump_id)
            except OSError as exc:
                log.info("serial port pump: %s; stopping it", exc)
                pump._discard()
                cls._current = None

    @classmethod
    def stop(cls) -> None:
        """End the pump (tests; the agent's exit ends it too: its socket closes)."""
        with cls._lock:
            if cls._current is not None:
                cls._current._discard()
                cls._current = None
            cls._unavailable = None

    def _add(self, port_fd: int) -> tuple[int, int]:
        read_fd, write_fd = os.pipe()
        try:
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, self.PIPE_BYTES)
            self._next_id += 1
            self._request(b"add", self._next_id, [port_fd, write_fd])
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the pump holds its own copy now
        os.set_blocking(read_fd, False)
        return self._next_id, read_fd

    def _request(self, op: bytes, pump_id: int, fds: list[int] | None = None) -> None:
        msg = op + pump_id.to_bytes(4, "big")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self._sock.sendmsg([msg], anc)
        answer = self._sock.recv(64)  # socket.timeout is an OSError
        if answer != b"ok!" + msg[3:]:
            raise OSError(errno.EPROTO, f"unexpected answer {answer!r} to {op.decode()}")

    def _discard(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2.0)


# The loop runs a timer up to its clock's resolution early; a deadline that near counts as due.
_EARLY_S = 1e-6


class ThreadedSerialLink(_ClosingContext):
    """A local serial port (or pty) read by the agent's port-reading thread (_PortReader).

    What waits in RAM for the driver is bounded (``_BACKLOG_MAX_BYTES``): past it the port is
    not read until the driver caught up, and the kernel's buffer is what fills, as it would
    without the thread.
    """

    _BACKLOG_MAX_BYTES = 8 * 1024 * 1024
    pump: ClassVar[bool] = True  # read through the PortPump (False: the thread reads the port)

    def __init__(self, port: str, ser: serial.Serial, loop: asyncio.AbstractEventLoop,
                 pumped: tuple[int, int] | None = None) -> None:
        self.port = port
        self._ser = ser
        self.loop = loop
        fd = ser.fd
        if fd is None:
            raise LinkError(f"cannot open {port}: no descriptor")
        self.fd: int = fd  # written to here; read here only without the pump
        # PortPump.add's (id, pipe): the port's bytes come out of the pipe
        self.pump_id = pumped[0] if pumped is not None else None
        self.read_fd: int = pumped[1] if pumped is not None else fd
        self._chunks: collections.deque[bytes] = collections.deque()
        self._backlog = 0
        self._paused = False
        self._error: BaseException | None = None
        # The one wait of the driver (read, read_within): a future, woken by deliver/fail/
        # close, and at most one timer, moved lazily (see read_within).
        self._waiter: asyncio.Future[None] | None = None
        self._deadline_s: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.failed = False  # the thread stopped reading it (set there)
        self.detached = threading.Event()  # the thread let go of the descriptor
        self._reader = _PortReader.attach(self)

    @classmethod
    async def open(cls, port: str, baudrate: int) -> ThreadedSerialLink:
        def make() -> tuple[serial.Serial, tuple[int, int] | None]:
            ser = serial.Serial(port=port, baudrate=baudrate, bytesize=8, parity="N",
                                stopbits=1, timeout=None)
            fd = ser.fd
            if fd is None:
                ser.close()
                raise LinkError(f"cannot open {port}: no descriptor")
            try:
                return ser, PortPump.add(fd) if cls.pump else None
            except BaseException:
                ser.close()
                raise
        try:
            ser, pumped = await asyncio.to_thread(make)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {port}: {exc}") from exc
        return cls(port, ser, asyncio.get_running_loop(), pumped)

    # -- from the thread, on the loop --------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        if self._closed:
            return
        self._chunks.append(data)
        self._backlog += len(data)
        if self._backlog >= self._BACKLOG_MAX_BYTES and not self._paused:
            self._paused = True
            self._reader.pause(self)
        self._wake()

    def fail(self, exc: BaseException) -> None:
        # Expected (a USB unplug, a pty whose other side closed): one INFO line, the next read
        # raises LinkError and the supervisor reconnects.
        log.info("serial port %s: %s (the link closes and reconnects)", self.port, exc)
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the Link --------------------------------------------------------------------------

    async def read(self) -> bytes:
        data = await self.read_within(None)
        assert data is not None  # no deadline: never None
        return data

    async def read_within(self, timeout_s: float | None) -> bytes | None:
        """:meth:`read` that gives up after ``timeout_s``: None if nothing came by then.

        What ``asyncio.timeout`` around :meth:`read` would do, for a fraction of its cost
        (issue 12: sixteen R2000 readers wait about 7,500 times a second, and a timeout scope
        per wait, with its timer, was 5-6 % of the GIL's samples). The wait is one
        future; the link keeps at most one timer, which a later deadline does not move: when
        it fires early it is set again for the deadline then current, so a busy line, whose
        every wait ends with a delivery, costs a timer about once per timeout."""
        loop = self.loop
        deadline_s = None if timeout_s is None else loop.time() + timeout_s
        while not self._chunks:
            if self._error is not None:
                raise LinkError(f"{self.port}: {self._error}") from self._error
            if self._closed:
                return b""
            if deadline_s is not None:
                if loop.time() + _EARLY_S >= deadline_s:
                    return None
                timer = self._timer
                if timer is None or timer.when() > deadline_s:
                    if timer is not None:
                        timer.cancel()
                    self._timer = loop.call_at(deadline_s, self._on_timer)
            self._deadline_s = deadline_s
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take()

    def _on_timer(self) -> None:
        self._timer = None
        deadline_s = self._deadline_s
        if self._waiter is None or deadline_s is None:
            return  # nobody waits with a deadline: the next wait sets a timer if it needs one
        if self.loop.time() + _EARLY_S >= deadline_s:
            self._wake()  # read_within sees the deadline passed
        else:
            self._timer = self.loop.call_at(deadline_s, self._on_timer)

    def read_nowait(self) -> bytes | None:
        """What :meth:`read` would return at once; None when it would wait, fail or end."""
        return self._take() if self._chunks else None

    def _take(self) -> bytes:
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._backlog = 0
        if self._paused and not self._closed:
            self._paused = False
            self._reader.resume(self)
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkError(f"{self.port}: port is closed")
        if self._error is not None:
            raise LinkError(f"{self.port}: {self._error}") from self._error
        try:
            # The descriptor is non-blocking (pyserial opens it so): a command fits the
            # kernel's output buffer at once; only the rest, if any, waits off the loop.
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                await asyncio.to_thread(self._ser.write, data[sent:])
        except (serial.SerialException, OSError) as exc:
            log.info("serial port %s: %s (the link closes and reconnects)", self.port, exc)
            raise LinkError(f"{self.port}: {exc}") from exc

    async def set_baudrate(self, baudrate: int) -> None:
        """Change the line rate of the open port in place (see SerialLink.set_baudrate)."""
        try:
            self._ser.baudrate = baudrate
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{self.port}: cannot set {baudrate} baud: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()  # a read waiting returns b"" (closed)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._reader.detach(self)
        await asyncio.to_thread(self.detached.wait, 2.0)
        if self.pump_id is not None:
            await asyncio.to_thread(PortPump.remove, self.pump_id)  # it let go of the port
            with contextlib.suppress(OSError):
                os.close(self.read_fd)
        with contextlib.suppress(serial.SerialException, OSError):
            self._ser.close()


def client_ssl_context(tls: TlsConfig, key_password: str | None = None) -> ssl.SSLContext:
    """The one client TLS context of the agent (broker and network readers): the CA file or the
    system store, hostname checked, TLS 1.2 at least, a client certificate when given.
    Raises OSError / ssl.SSLError for unusable files."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=str(tls.ca) if tls.ca is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:  # the broker: only with allow_insecure; readers: refused by the config
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert is not None and tls.key is not None:
        ctx.load_cert_chain(str(tls.cert), str(tls.key), password=key_password)
    return ctx


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """:func:`client_ssl_context` for a reader: a file that cannot be used is a LinkError (the
    supervisor names it and retries), not a crash."""
    try:
        password = (read_secret_file(tls.key_password_file, "tls.key_password_file")
                    if tls.key_password_file is not None else None)
        return client_ssl_context(tls, password)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        raise LinkError(f"the reader's TLS files cannot be used: {exc}") from exc


class TlsLink(_StreamLink):
    """A TLS stream to a network reader: ``tls://host:port`` (LLRP over TLS, 5085)."""

    _ERRORS = (OSError, ssl.SSLError)
    _READ_BYTES = 65536

    @classmethod
    async def open(cls, spec: str, ctx: ssl.SSLContext, *, timeout_s: float = 10.0) -> TlsLink:
        hostport = spec.removeprefix("tls://")
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx,
                                                               server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise LinkError(f"cannot open {spec}: TLS: certificate verify failed: "
                            f"{exc.verify_message} (check tls.ca)") from exc
        except ssl.SSLError as exc:
            raise LinkError(f"cannot open {spec}: TLS: {exc.reason or exc}") from exc
        except (OSError, ValueError, TimeoutError) as exc:
            raise LinkError(f"cannot open {spec}: {exc or type(exc).__name__}") from exc
        return cls(spec, reader, writer)


# ioctls of include/uapi/linux/input.h
EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int): 1 = only this fd gets the events, 0 = release
EVIOCGNAME_256 = 0x81004506  # _IOC(_IOC_READ, 'E', 0x06, 256): the device's name
EVIOCSCLOCKID = 0x400445A0  # _IOW('E', 0xa0, int): the clock that stamps the events
CLOCK_MONOTONIC = 1


def input_permission_hint(port: str) -> str:
    """The fix for EACCES on an input device (named by the link, doctor and the docs)."""
    return (f"permission denied opening {port}: the agent's user must be in group 'input' "
            "(sudo usermod -aG input edge-agent, then restart the service; deploy/install.sh "
            "does this), or give the scanner that group with a udev rule "
            "(deploy/99-edge-agent-readers.rules)")


class InputLink(_ClosingContext):
    """A keyboard-wedge scanner: a Linux input device (evdev), read only, non-blocking, on the
    event loop (``add_reader``). The same records may come from a FIFO or a regular file
    (reader-sim hid, recordings): a file is followed like ``tail -f``; a FIFO is opened
    read-write, because a FIFO without a writer reads as EOF at once, which would look like an
    unplug on every connect (and a writer opening later would never be seen).

    An unplugged device fails reads with ENODEV (EIO on some kernels): LinkError, and the
    supervisor reconnects. With ``grab`` the device is EVIOCGRAB-bed: its keys reach only this
    agent, not a console login or a desktop that would "type" the scans.
    """

    _READ_BYTES = 24 * 128  # whole records of either size (the kernel returns whole ones)
    _FILE_POLL_S = 0.05

    def __init__(self, port: str, fd: int, kind: Literal["char", "fifo", "file"], *,
                 grabbed: bool = False, name: str | None = None) -> None:
        self.port = port
        self.kind = kind
        self.grabbed = grabbed
        self.device_name = name  # EVIOCGNAME, for a char device
        self._fd = fd

    @classmethod
    async def open(cls, port: str, *, grab: bool = True) -> InputLink:
        try:
            st = os.stat(port)
        except FileNotFoundError as exc:
            raise LinkError(f"cannot open {port}: no such device (is the scanner plugged in? "
                            "`edge-agent ports` lists input devices)") from exc
        except OSError as exc:
            raise LinkError(f"cannot open {port}: {exc.strerror or exc}") from exc
        kind: Literal["char", "fifo", "file"]
        if stat.S_ISCHR(st.st_mode):
            kind = "char"
        elif stat.S_ISFIFO(st.st_mode):
            kind = "fifo"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            raise LinkError(f"cannot open {port}: not an input device, FIFO or file")
        mode = os.O_RDWR if kind == "fifo" else os.O_RDONLY
        try:
            fd = os.open(port, mode | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except PermissionError as exc:
            raise LinkError(input_permission_hint(port)) from exc
        except OSError as exc:
            raise LinkError(f"cannot open {port}: {exc.strerror or exc}") from exc
        name: str | None = None
        grabbed = False
        if kind == "char":
            try:
                raw = fcntl.ioctl(fd, EVIOCGNAME_256, bytes(256))
                name = raw.split(b"\0", 1)[0].decode(errors="replace") or None
                # Key timestamps measure the gaps between keys (inter_key_timeout_ms): on the
                # monotonic clock, an NTP step of the wall clock cannot split a scan.
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd, EVIOCSCLOCKID, struct.pack("i", CLOCK_MONOTONIC))
                if grab:
                    fcntl.ioctl(fd, EVIOCGRAB, 1)
                    grabbed = True
            except OSError as exc:
                os.close(fd)
                why = {errno.EBUSY: "another program has grabbed it (a second agent?)",
                       errno.ENOTTY: "not an input (evdev) device",
                       errno.EINVAL: "not an input (evdev) device"}.get(
                           exc.errno or 0, exc.strerror or str(exc))
                raise LinkError(f"cannot open {port}: {why}") from exc
        return cls(port, fd, kind, grabbed=grabbed, name=name)

    async def read(self) -> bytes:
        if self._fd < 0:
            raise LinkError(f"{self.port}: closed")
        while True:
            try:
                data = os.read(self._fd, self._READ_BYTES)
            except BlockingIOError:
                await self._readable()
                continue
            except OSError as exc:  # ENODEV / EIO: unplugged
                raise LinkError(f"{self.port}: {exc.strerror or exc} (scanner unplugged?)"
                                ) from exc
            if data or self.kind != "file":
                return data
            await asyncio.sleep(self._FILE_POLL_S)  # the end of a file: wait for more

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            await fut
        finally:
            loop.remove_reader(self._fd)

    async def write(self, data: bytes) -> None:
        raise LinkError(f"{self.port}: a keyboard-wedge scanner takes no commands")

    async def aclose(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self.grabbed:
            try:
                fcntl.ioctl(fd, EVIOCGRAB, 0)
            except OSError as exc:  # unplugged: closing releases it anyway
                log.debug("releasing %s: %s", self.port, exc)
        os.close(fd)
