"""An adversarial link: a TCP relay between reader-sim and the agent that splits, drops, delays
and hangs up.

It is a real socket pair in the middle of a real byte stream (not a mock of either end): the
agent connects to ``url`` (``socket://127.0.0.1:PORT``, the pyserial URL form a reader's
``port`` accepts), the relay connects on to the simulator's TCP port. Faults apply per chunk of
the reader -> agent direction (what a bad RS-485 run or a serial-to-Ethernet converter on a
flaky switch does); the agent -> reader direction is split and delayed but never loses bytes,
so commands arrive late or in pieces, as they do on such links.

Every fault is counted in :attr:`BadLink.stats`, so a test can assert the link really was bad.
Randomness comes from one seeded :class:`random.Random` per direction, so a failing run can be
replayed with the same seed (timing still varies).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class LinkFaults:
    split_p: float = 0.0  # a chunk goes out in 2-4 pieces with a short gap between them
    drop_p: float = 0.0  # one byte of a chunk is lost
    delay_max_s: float = 0.0  # each chunk waits up to this long before it is forwarded
    hangup_every_s: float | None = None  # the relay closes the connection this often


@dataclass(slots=True)
class LinkStats:
    connections: int = 0
    hangups: int = 0
    bytes_up: int = 0  # reader -> agent, after drops
    dropped_bytes: int = 0
    splits: int = 0
    delays: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class BadLink:
    def __init__(self, upstream: tuple[str, int], faults: LinkFaults, *, seed: int = 1) -> None:
        self.upstream = upstream
        self.faults = faults
        self.stats = LinkStats()
        self._seed = seed
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name="badlink-accept",
                                        daemon=True)
        self._accept.start()

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self._listener.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> BadLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                down, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                down.close()
                continue
            n += 1
            self.stats.add(connections=1)
            t = threading.Thread(target=self._relay, args=(down, up, n),
                                 name=f"badlink-conn-{n}", daemon=True)
            self._threads.append(t)
            t.start()

    def _relay(self, down: socket.socket, up: socket.socket, n: int) -> None:
        """One connection: two pumps until either side closes, the hang-up timer fires or the
        link is closed."""
        done = threading.Event()
        pumps = [
            threading.Thread(target=self._pump, args=(up, down, True, random.Random(
                self._seed * 1000 + n), done), name=f"badlink-up-{n}", daemon=True),
            threading.Thread(target=self._pump, args=(down, up, False, random.Random(
                self._seed * 1000 + n + 500), done), name=f"badlink-down-{n}", daemon=True),
        ]
        for p in pumps:
            p.start()
        hangup_s = self.faults.hangup_every_s
        deadline = time.monotonic() + hangup_s if hangup_s else None
        while not done.is_set() and not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                self.stats.add(hangups=1)
                break
            done.wait(0.05)
        done.set()
        for s in (down, up):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for p in pumps:
            p.join(5)
        for s in (down, up):
            s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, lossy: bool, rng: random.Random,
              done: threading.Event) -> None:
        f = self.faults
        src.settimeout(0.1)
        try:
            while not done.is_set():
                try:
                    chunk = src.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                if f.delay_max_s and rng.random() < 0.5:
                    self.stats.add(delays=1)
                    time.sleep(rng.uniform(0, f.delay_max_s))
                if lossy and f.drop_p and rng.random() < f.drop_p:
                    i = rng.randrange(len(chunk))
                    chunk = chunk[:i] + chunk[i + 1 :]
                    self.stats.add(dropped_bytes=1)
                if lossy:
                    self.stats.add(bytes_up=len(chunk))
                pieces = [chunk]
                if f.split_p and len(chunk) > 1 and rng.random() < f.split_p:
                    cuts = sorted(rng.sample(range(1, len(chunk)), min(len(chunk) - 1,
                                                                       rng.randint(1, 3))))
                    pieces = [chunk[a:b] for a, b in zip([0, *cuts], [*cuts, len(chunk)],
                                                         strict=True)]
                    self.stats.add(splits=1)
                for k, piece in enumerate(pieces):
                    if k:
                        time.sleep(rng.uniform(0.0005, 0.005))
                    dst.sendall(piece)
        except OSError:
            return
        finally:
            done.set()
