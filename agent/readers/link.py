"""The only place that does reader I/O: a serial port, a pyserial URL (socket://) or a pty."""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import serial
import serial_asyncio_fast

from agent.config import ConfigError, TlsConfig, read_secret_file

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The port cannot be opened, or vanished (USB unplug, EIO, EOF, TCP reset)."""


class Link(Protocol):
    async def read(self) -> bytes: ...  # b"" = port gone

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


class _StreamLink:
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
    async def open(cls, port: str, baudrate: int) -> SerialLink:
        _report_vanished_ports_quietly(asyncio.get_running_loop())
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {port}: {exc}") from exc
        return cls(port, reader, writer)

    async def __aenter__(self) -> SerialLink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


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
