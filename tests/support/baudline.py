"""A pty that behaves like a serial line with a baud rate (a pty has none).

The program under test opens ``relay.port``; bytes are relayed to and from the simulator's pty.
While the rate the program configured on the port differs from ``line_baud``, every byte is
garbled both ways, as a UART at the wrong rate garbles them, so "wrong baud rate" can be tested
with the real simulator.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty

import serial

_SPEEDS = {getattr(termios, f"B{b}"): b for b in (9600, 19200, 38400, 57600, 115200, 230400)
           if hasattr(termios, f"B{b}")}


class BaudLine:
    def __init__(self, target_port: str, line_baud: int) -> None:
        self.line_baud = line_baud
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._target = serial.Serial(target_port, line_baud, timeout=0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="baudline")
        self._thread.start()

    def client_baud(self) -> int | None:
        return _SPEEDS.get(termios.tcgetattr(self._slave)[5])

    def _mangle(self, data: bytes) -> bytes:
        if self.client_baud() == self.line_baud:
            return data
        return bytes((b ^ 0x5A) | 0x80 for b in data)  # framing garbage, never a valid frame

    def _run(self) -> None:
        tfd = self._target.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, tfd], [], [], 0.1)
            try:
                if self.master in ready:
                    self._target.write(self._mangle(os.read(self.master, 4096)))
                if tfd in ready:
                    data = self._target.read(4096)
                    if data:
                        os.write(self.master, self._mangle(data))
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._target.close()
        os.close(self.master)
        os.close(self._slave)
