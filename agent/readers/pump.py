"""The port pump: a child process of the agent that only moves bytes from serial ports into pipes.

Run as a script (``python -I -S pump.py FD``, stdlib only, no agent import) by
:class:`agent.readers.link.PortPump`. Why a process (issue 12, item 3): the agent's port thread
shares the GIL with the event loop, the buffer's writer and the MQTT thread, and at 15,000
lines/s a 4 KB tty buffer lasts 4 ms, less than the agent's threads sometimes keep the GIL
and the CPU from it; what does not fit is lost as a UART overrun. This process holds no GIL
but its own, sleeps in ``epoll`` and empties each port into a pipe of up to 1 MiB (a second
of a busy line), from which the agent reads at its own pace.

Control socket (SOCK_SEQPACKET, one message each way per request, answered in order):
``add`` + id (4 bytes, big-endian) with two descriptors (the port, the pipe's write end):
start pumping; ``del`` + id: stop and close both; every request is answered ``ok!`` + id.
A port that fails (EIO, EOF) is closed here and its pipe with it: the agent reads EOF and its
supervisor reconnects. The agent gone (the socket at EOF): exit.
"""

from __future__ import annotations

# The C modules, not socket.py, signal.py, selectors.py or dataclasses: those import enum,
# inspect and more, and this process is to stay small (9 MB instead of 12 MB of RSS).
import _signal  # type: ignore[import-not-found]  # no stub: signal.py's C half
import _socket
import os
import select
import sys
import time

READ_BYTES = 65536
BACKLOG_MAX_BYTES = 8 * 1024 * 1024  # past this the port is not read: the tty buffer fills
_MSG_BYTES = 7
_FD_BYTES = 4  # a descriptor in SCM_RIGHTS data (a C int)
# Pacing (issue 12): after a pass that moved bytes, sleep PACE_S before the next epoll, so
# that one wake-up takes what several ports gave, instead of one wake-up per frame per port
# here and in the agent's port thread. Sixteen R2000 readers: 72-78 % of a core unpaced,
# 45-50 % with this rule (docs/benchmarks.md). Only while every port is slow: a port that gave
# more than PACE_RATE_MAX bytes/s in the last window, or more than PACE_BURST_BYTES in one
# read (a fast line, or this process was late), switches pacing off until a window is judged
# slow again. At PACE_RATE_MAX a pause lets 256 bytes into a 4 KB tty buffer: 16 times less
# than it holds, so a pause that the scheduler stretches tenfold still loses nothing. Any
# real UART up to 921,600 baud (92 KB/s) is paced; barcode lines at 15,000/s into a pty
# (960 KB/s, bench e2e) never are. ``EDGE_AGENT_PUMP_PACE_S=0`` switches pacing off.
PACE_S = float(os.environ.get("EDGE_AGENT_PUMP_PACE_S", "0.002"))
PACE_RATE_MAX = 128_000  # bytes/s of the fastest port, above which no pause
PACE_BURST_BYTES = 512  # one read bigger than this: no pause, at once
PACE_WINDOW_S = 0.1  # the rate is judged over this long


class _Pacer:
    """Whether to pause after a pass. Pure (the clock is passed in), so its rule is tested
    without ports (tests/readers/test_pump_pacing.py)."""

    __slots__ = ("fast", "pause_s", "window", "window_start_s")

    def __init__(self, pause_s: float, now_s: float) -> None:
        self.pause_s = pause_s
        self.window_start_s = now_s
        self.window: dict[int, int] = {}  # port id -> its bytes in this window
        self.fast = True  # until a window has been judged slow

    def took(self, port_id: int, nbytes: int) -> None:
        """One read from a port gave ``nbytes``."""
        self.window[port_id] = self.window.get(port_id, 0) + nbytes
        if nbytes > PACE_BURST_BYTES:
            self.fast = True

    def pause_s_after_pass(self, now_s: float, moved: bool) -> float:
        """The pause before the next epoll, 0 for none; ``moved``: this pass read bytes."""
        took_s = now_s - self.window_start_s
        if took_s >= PACE_WINDOW_S:
            busiest = max(self.window.values(), default=0)
            self.fast = busiest > PACE_RATE_MAX * took_s
            self.window.clear()
            self.window_start_s = now_s
        return self.pause_s if moved and not self.fast else 0.0


_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLERR | select.EPOLLHUP


class _Port:
    __slots__ = ("backlog", "id", "pipe_fd", "port_fd", "reading")

    def __init__(self, port_id: int, port_fd: int, pipe_fd: int) -> None:
        self.id = port_id
        self.port_fd = port_fd
        self.pipe_fd = pipe_fd
        self.backlog = bytearray()
        self.reading = True


def _recv(ctl: _socket.socket) -> tuple[bytes, list[int]]:
    msg, anc, _flags, _addr = ctl.recvmsg(64, _socket.CMSG_SPACE(2 * _FD_BYTES))
    fds: list[int] = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i : i + _FD_BYTES], sys.byteorder, signed=True)
                    for i in range(0, len(data) - _FD_BYTES + 1, _FD_BYTES)]
    return msg, fds


class _Pump:
    def __init__(self, ctl: _socket.socket) -> None:
        self.ctl = ctl
        self.poll = select.epoll()
        self.poll.register(ctl.fileno(), _IN)
        self.ports: dict[int, _Port] = {}
        self.by_fd: dict[int, _Port] = {}  # a port's descriptor and its pipe's -> the port
        self.pacer = _Pacer(PACE_S, time.monotonic())
        self.moved = False  # this pass read bytes from a port

    def run(self) -> int:
        ctl_fd = self.ctl.fileno()
        while True:
            try:
                ready = self.poll.poll()
            except InterruptedError:
                continue
            # The control socket first: an agent that died (SIGKILL) is noticed before this
            # round reads its ports, and what they hold stays in the tty for the next agent.
            ready.sort(key=lambda item: item[0] != ctl_fd)
            self.moved = False
            for fd, events in ready:
                if fd == ctl_fd:
                    if not self._request():
                        return 0
                    continue
                port = self.by_fd.get(fd)
                if port is None:
                    continue
                if fd == port.port_fd:
                    self._read(port, events)
                else:
                    self._flush(port)
            if PACE_S > 0:
                pause_s = self.pacer.pause_s_after_pass(time.monotonic(), self.moved)
                if pause_s:
                    time.sleep(pause_s)

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
        self._close(port_id)
        if op == b"add" and len(fds) == 2:
            port = self.ports[port_id] = _Port(port_id, fds[0], fds[1])
            os.set_blocking(port.port_fd, False)
            os.set_blocking(port.pipe_fd, False)
            self.by_fd[port.port_fd] = self.by_fd[port.pipe_fd] = port
            self.poll.register(port.port_fd, _IN)
        else:
            for fd in fds:
                os.close(fd)
        try:
            self.ctl.send(b"ok!" + port_id.to_bytes(4, "big"))
        except OSError:
            return False  # the agent is gone
        return True

    def _read(self, port: _Port, events: int) -> None:
        try:
            data = os.read(port.port_fd, READ_BYTES)
        except BlockingIOError:
            if events & _GONE:
                self._close(port.id)  # nothing to read and never will be: do not spin
            return
        except OSError as exc:
            print(f"edge-agent port pump: port {port.id}: {exc}", file=sys.stderr, flush=True)
            self._close(port.id)
            return
        if not data:
            self._close(port.id)  # the other side closed (a pty) or the port vanished
            return
        self.moved = True
        self.pacer.took(port.id, len(data))
        if port.backlog:
            port.backlog += data
        else:
            try:
                sent = os.write(port.pipe_fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the agent closed its end: nobody reads this port any more
                self._close(port.id)
                return
            if sent < len(data):
                port.backlog += data[sent:]
                self.poll.register(port.pipe_fd, _OUT)
        if len(port.backlog) >= BACKLOG_MAX_BYTES and port.reading:
            port.reading = False
            self.poll.unregister(port.port_fd)

    def _flush(self, port: _Port) -> None:
        try:
            sent = os.write(port.pipe_fd, port.backlog)
        except BlockingIOError:
            return
        except OSError:
            self._close(port.id)
            return
        del port.backlog[:sent]
        if not port.backlog:
            self.poll.unregister(port.pipe_fd)
        if not port.reading and len(port.backlog) < BACKLOG_MAX_BYTES // 2:
            port.reading = True
            self.poll.register(port.port_fd, _IN)

    def _close(self, port_id: int) -> None:
        port = self.ports.pop(port_id, None)
        if port is None:
            return
        for fd in (port.port_fd, port.pipe_fd):
            self.by_fd.pop(fd, None)
            try:  # noqa: SIM105 - contextlib is not imported here (RSS)
                self.poll.unregister(fd)
            except (OSError, ValueError):
                pass  # not registered right now
            os.close(fd)


def _prefer_the_cpu() -> None:
    """Ask to run ahead of the agent's own work when a byte comes: the bytes of a 4 KB tty
    buffer last 3 ms at 20,000 lines/s, and on a busy machine the scheduler may give a waking
    process its CPU later than that. Real-time priority 1 where allowed (root, CAP_SYS_NICE,
    or ``LimitRTPRIO=`` in the systemd unit), else nice -10 where allowed (the shipped unit's
    ``LimitNICE=-10``), else as is. The pump sleeps in epoll between bytes and does almost
    nothing with them, so it cannot take a core from anyone (and the kernel caps real-time
    tasks at 95 % anyway)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        try:  # noqa: SIM105 - contextlib is not imported here (RSS)
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        except OSError:
            pass  # an ordinary process, then


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the agent decides when to stop,
    # and this process ends when the agent's end of the socket closes.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _prefer_the_cpu()
    try:  # "port-pump", not "python", in ps and top (as agent/osnames.py; stdlib only here)
        with open("/proc/self/comm", "w", encoding="ascii") as f:
            f.write("port-pump")
    except OSError:
        pass
    ctl = _socket.socket(fileno=int(argv[1]))
    return _Pump(ctl).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
