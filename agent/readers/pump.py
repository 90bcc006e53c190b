"""The port pump: a child process of the agent that only moves bytes from serial ports into pipes.

Run as a script (``python -I -S pump.py FD``, stdlib only, no agent import) by
:class:`agent.readers.link.PortPump`. Why a process (issue 12, item 3): the agent's port thread
shares the GIL with the event loop, the buffer's writer and the MQTT thread, and at 15,000
lines/s a 4 KB tty buffer lasts 4 ms, less than the agent's threads sometimes keep the GIL
and the CPU from it; what does not fit is lost as a UART overrun. This process holds no GIL
but its own, sleeps in ``select`` and empties each port into a pipe of up to 1 MiB (a second
of a busy line), from which the agent reads at its own pace.

Control socket (SOCK_SEQPACKET, one message each way per request, answered in order):
``add`` + id (4 bytes, big-endian) with two descriptors (the port, the pipe's write end):
start pumping; ``del`` + id: stop and close both; every request is answered ``ok!`` + id.
A port that fails (EIO, EOF) is closed here and its pipe with it: the agent reads EOF and its
supervisor reconnects. The agent gone (the socket at EOF): exit.
"""

from __future__ import annotations

import array
import contextlib
import os
import selectors
import signal
import socket
import sys
from dataclasses import dataclass, field

READ_BYTES = 65536
BACKLOG_MAX_BYTES = 8 * 1024 * 1024  # past this the port is not read: the tty buffer fills
_MSG_BYTES = 7


@dataclass(slots=True)
class _Port:
    port_fd: int
    pipe_fd: int
    backlog: bytearray = field(default_factory=bytearray)
    reading: bool = True


def _recv(ctl: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = ctl.recvmsg(64, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


class _Pump:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.sel = selectors.DefaultSelector()
        self.sel.register(ctl, selectors.EVENT_READ, None)
        self.ports: dict[int, _Port] = {}

    def run(self) -> int:
        while True:
            for key, events in self.sel.select():
                if key.data is None:
                    if not self._request():
                        return 0
                    continue
                kind, port_id = key.data
                port = self.ports.get(port_id)
                if port is None:
                    continue
                if kind == "read" and events & selectors.EVENT_READ:
                    self._read(port_id, port)
                elif kind == "write" and events & selectors.EVENT_WRITE:
                    self._flush(port_id, port)

    def _request(self) -> bool:
        try:
            msg, fds = _recv(self.ctl)
        except OSError:
            return False
        if not msg:
            for fd in fds:
                os.close(fd)
            return False  # the agent is gone
        op, port_id = msg[:3], int.from_bytes(msg[3:_MSG_BYTES], "big")
        if op == b"add" and len(fds) == 2:
            self._close(port_id)
            port = self.ports[port_id] = _Port(fds[0], fds[1])
            os.set_blocking(port.port_fd, False)
            os.set_blocking(port.pipe_fd, False)
            self.sel.register(port.port_fd, selectors.EVENT_READ, ("read", port_id))
        else:
            for fd in fds:
                os.close(fd)
            self._close(port_id)
        try:
            self.ctl.send(b"ok!" + port_id.to_bytes(4, "big"))
        except OSError:
            return False  # the agent is gone
        return True

    def _read(self, port_id: int, port: _Port) -> None:
        try:
            data = os.read(port.port_fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            print(f"edge-agent port pump: port {port_id}: {exc}", file=sys.stderr, flush=True)
            self._close(port_id)
            return
        if not data:
            self._close(port_id)  # the other side closed (a pty) or the port vanished
            return
        if port.backlog:
            port.backlog += data
        else:
            try:
                sent = os.write(port.pipe_fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the agent closed its end: nobody reads this port any more
                self._close(port_id)
                return
            if sent < len(data):
                port.backlog += data[sent:]
                self.sel.register(port.pipe_fd, selectors.EVENT_WRITE, ("write", port_id))
        if len(port.backlog) >= BACKLOG_MAX_BYTES and port.reading:
            port.reading = False
            self.sel.unregister(port.port_fd)

    def _flush(self, port_id: int, port: _Port) -> None:
        try:
            sent = os.write(port.pipe_fd, port.backlog)
        except BlockingIOError:
            return
        except OSError:
            self._close(port_id)
            return
        del port.backlog[:sent]
        if not port.backlog:
            self.sel.unregister(port.pipe_fd)
        if not port.reading and len(port.backlog) < BACKLOG_MAX_BYTES // 2:
            port.reading = True
            self.sel.register(port.port_fd, selectors.EVENT_READ, ("read", port_id))

    def _close(self, port_id: int) -> None:
        port = self.ports.pop(port_id, None)
        if port is None:
            return
        for fd in (port.port_fd, port.pipe_fd):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            os.close(fd)


def _prefer_the_cpu() -> None:
    """Ask to run ahead of the agent's own work when a byte comes: the bytes of a 4 KB tty
    buffer last 3 ms at 20,000 lines/s, and on a busy machine the scheduler may give a waking
    process its CPU later than that. Real-time priority 1 where allowed (root, CAP_SYS_NICE,
    or ``LimitRTPRIO=`` in the systemd unit), else a lower nice value where allowed, else as
    is. The pump sleeps in select between bytes and does almost nothing with them, so it
    cannot take a core from anyone (and the kernel caps real-time tasks at 95 % anyway)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the agent decides when to stop,
    # and this process ends when the agent's end of the socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prefer_the_cpu()
    ctl = socket.socket(fileno=int(argv[1]))
    return _Pump(ctl).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
