"""The only place that does reader I/O: a serial port, a pyserial URL (socket://) or a pty."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Protocol

import serial
import serial_asyncio_fast

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The port cannot be opened, or vanished (USB unplug, EIO, EOF, TCP reset)."""


class Link(Protocol):
    async def read(self) -> bytes: ...  # b"" = port gone

    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class SerialLink:
    """pyserial behind asyncio streams; ``socket://host:port`` URLs go over TCP."""

    def __init__(
        self, port: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.port = port
        self._reader = reader
        self._writer = writer
        self._closed = False

    @classmethod
    async def open(cls, port: str, baudrate: int) -> SerialLink:
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {port}: {exc}") from exc
        return cls(port, reader, writer)

    async def read(self) -> bytes:
        try:
            return await self._reader.read(4096)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.port}: {exc}") from exc

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise LinkError(f"{self.port}: port is closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.port}: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (serial.SerialException, OSError) as exc:
            log.debug("closing %s: %s", self.port, exc)

    async def __aenter__(self) -> SerialLink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
