"""Simulated power cuts: the real SqliteBuffer over an apsw VFS that loses unsynced writes.

How it works
------------
``LossyVFS`` wraps the default VFS. Every write and truncate is kept in memory (and served to
reads, as the OS page cache would) until SQLite calls ``xSync`` on that file; only then does it
reach the real file and get fsync'ed. A "power cut" applies a random subset of the not-yet-synced
writes (in order: the disk may have written some of them by itself) and ends the process with
``os._exit`` while holding the lock, so nothing else reaches the disk.

The child process runs the real ``SqliteBuffer`` (writer thread, group commit, pipeline commits,
claims and acks) with ``connect=`` an apsw connection over that VFS, and prints every id it saw
acknowledged (``put_reads`` / ``commit_events`` / ``ack`` returned) to stdout, line by line.
The parent then opens the file with the stdlib sqlite3 and checks: integrity_check is ok, every
acknowledged read is still there (as a read, as an event, or sent), no acked event came back.

apsw's Python VFS has no shared-memory methods, so the child runs WAL with
``locking_mode=EXCLUSIVE`` (the WAL index lives in heap memory instead of the -shm file). The
WAL, its checksums and when SQLite syncs what are unchanged; only the -shm file is not used.

Run ``python -m tests.support.powercut_harness matrix --cuts 40`` for the table in docs/buffer.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

_LOCK = threading.RLock()


class LossyFile(apsw.VFSFile):  # type: ignore[misc,unused-ignore]
    def __init__(self, vfs: LossyVFS, name: Any, flags: list[int]) -> None:
        super().__init__("", name, flags)
        self.ops: list[tuple[str, int, bytes]] = []  # ("w", offset, data) | ("t", size, b"")
        self.size = int(super().xFileSize())
        self.vfs = vfs
        vfs.files.append(self)

    def xRead(self, amount: int, offset: int) -> bytes:  # noqa: N802
        with _LOCK:
            base = bytes(super().xRead(amount, offset))
            buf = bytearray(amount)
            buf[: len(base)] = base
            for kind, at, data in self.ops:
                if kind == "t":
                    if at < offset + amount:
                        cut = max(0, at - offset)
                        buf[cut:] = bytes(amount - cut)
                    continue
                lo, hi = max(at, offset), min(at + len(data), offset + amount)
                if lo < hi:
                    buf[lo - offset: hi - offset] = data[lo - at: hi - at]
            return bytes(buf[: max(0, min(amount, self.size - offset))])

    def xWrite(self, data: bytes, offset: int) -> None:  # noqa: N802
        with _LOCK:
            self.vfs.tick()
            self.ops.append(("w", offset, bytes(data)))
            self.size = max(self.size, offset + len(data))

    def xTruncate(self, newsize: int) -> None:  # noqa: N802
        with _LOCK:
            self.ops.append(("t", newsize, b""))
            self.size = newsize

    def xFileSize(self) -> int:  # noqa: N802
        return self.size

    def xSync(self, flags: int) -> None:  # noqa: N802
        with _LOCK:
            self.vfs.tick()
            self._apply(self.ops)
            super().xSync(flags)

    def xClose(self) -> None:  # noqa: N802
        with _LOCK:
            self._apply(self.ops)
            super().xClose()

    def _apply(self, ops: Iterable[tuple[str, int, bytes]]) -> None:
        for kind, at, data in ops:
            if kind == "w":
                super().xWrite(data, at)
            else:
                super().xTruncate(at)
        self.ops = []

    def lose(self, rng: random.Random) -> int:
        """Power cut: a random subset of the unsynced writes made it to the disk."""
        kept = [op for op in self.ops if rng.random() < 0.5]
        lost = len(self.ops) - len(kept)
        self._apply(kept)
        return lost


class LossyVFS(apsw.VFS):  # type: ignore[misc,unused-ignore]
    def __init__(self, rng: random.Random, name: str = "lossy") -> None:
        self.files: list[LossyFile] = []
        self.rng = rng
        self.countdown: int | None = None
        super().__init__(name, "")

    def arm(self) -> None:
        """Cut the power in the middle of the I/O to come: after 0..30 more writes/syncs."""
        with _LOCK:
            self.countdown = self.rng.randint(0, 30)

    def tick(self) -> None:
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown < 0:
                self.cut(self.rng)

    def xOpen(self, name: Any, flags: list[int]) -> LossyFile:  # noqa: N802
        return LossyFile(self, name, flags)

    def cut(self, rng: random.Random) -> None:
        _LOCK.acquire()  # never released: the writer thread stops at its next I/O
        lost = sum(f.lose(rng) for f in self.files)
        sys.stdout.write(f"cut {lost}\n")
        sys.stdout.flush()
        os._exit(0)


class _Cursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())


class ApswConn:
    """apsw.Connection adapted to agent.buffer.schema.Conn."""

    def __init__(self, path: str, vfs: str) -> None:
        self._c = apsw.Connection(path, vfs=vfs)
        self._c.execute("PRAGMA locking_mode = EXCLUSIVE")

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return _Cursor(self._c.execute(sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> _Cursor:
        seq = list(parameters)
        if not seq:
            return _Cursor(self._c.execute("SELECT 1 WHERE 0"))
        cur = self._c.executemany(sql, seq)
        for _ in cur:
            pass
        return _Cursor(cur)

    def executescript(self, sql_script: str, /) -> _Cursor:
        cur = self._c.execute(sql_script)
        for _ in cur:
            pass
        return _Cursor(cur)

    def close(self) -> None:
        self._c.close()

    @property
    def in_transaction(self) -> bool:
        return bool(self._c.in_transaction)


# ----------------------------------------------------------------------------- child


async def _child(path: str, synchronous: str, seed: int, cut_after_s: float) -> None:
    """cut_after_s < 0: no VFS and no cut (the parent kills the process with SIGKILL)."""
    from datetime import UTC, datetime

    from agent.buffer.api import OutEvent
    from agent.buffer.sqlite import SqliteBuffer
    from agent.config import BufferConfig
    from agent.model import TagRead

    rng = random.Random(seed)
    cfg = BufferConfig(path=Path(path), synchronous=synchronous,  # type: ignore[arg-type]
                       commit_interval_ms=2)
    if cut_after_s >= 0:
        vfs = LossyVFS(rng)
        buf = await SqliteBuffer.open(cfg, connect=lambda p: ApswConn(p, vfs="lossy"))
        threading.Timer(cut_after_s, vfs.arm).start()
    else:
        buf = await SqliteBuffer.open(cfg)
    out = sys.stdout

    def say(word: str, ids: Iterable[int]) -> None:
        out.write(f"{word} {' '.join(map(str, ids))}\n")
        out.flush()

    async def producer(k: int) -> None:
        n = 0
        while True:
            base = seed * 1_000_000_000 + k * 10_000_000 + n  # unique across runs on one file
            seqs = [base + i for i in range(rng.randint(1, 20))]
            n += len(seqs)
            await buf.put_reads([TagRead(reader="r", epc=f"{s:024X}", read_at=datetime.now(UTC),
                                         antenna=1, rssi_dbm=-50.0) for s in seqs])
            say("put", seqs)

    async def pipeline() -> None:
        while True:
            reads = await buf.take_reads(100)
            if not reads:
                await asyncio.sleep(0.001)
                continue
            events = [OutEvent(kind="event", payload=r.read.epc, created_at_s=0.0)  # type: ignore[union-attr]
                      for r in reads]
            await buf.commit_events([r.id for r in reads], events, {"last": str(reads[-1].id)})

    async def forwarder() -> None:
        while True:
            claimed = await buf.claim(50, lease_s=60)
            if not claimed:
                await asyncio.sleep(0.002)
                continue
            seqs = [int(c.payload, 16) for c in claimed]
            say("acking", seqs)  # from here these may legitimately be gone
            await buf.ack([c.id for c in claimed])
            say("sent", seqs)

    async with asyncio.TaskGroup() as tg:
        for k in range(1, 5):
            tg.create_task(producer(k))
        tg.create_task(pipeline())
        tg.create_task(forwarder())


# ----------------------------------------------------------------------------- parent


@dataclass
class CutResult:
    acked: int
    lost: list[int] = field(default_factory=list)  # acknowledged reads missing after the cut
    resurrected: list[int] = field(default_factory=list)  # acked (sent) events back again
    integrity: str = ""
    unsynced_writes_lost: int = 0


def _child_cmd(path: Path, synchronous: str, seed: int, cut_after_s: float) -> list[str]:
    return [sys.executable, "-m", "tests.support.powercut_harness", "child", str(path), synchronous,
            str(seed), str(cut_after_s)]


_ROOT = Path(__file__).resolve().parents[2]


def run_cut(path: Path, synchronous: str, seed: int, cut_after_s: float) -> CutResult:
    """One simulated power cut; returns what the reopened file shows."""
    proc = subprocess.run(_child_cmd(path, synchronous, seed, cut_after_s), cwd=_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    if "cut" not in proc.stdout:
        raise RuntimeError(f"child did not reach the cut: rc={proc.returncode}\n{proc.stderr}")
    return check_file(path, proc.stdout)


def run_kill(path: Path, seed: int, delay_s: float) -> CutResult:
    """Run the child on the stdlib sqlite3, SIGKILL it after delay_s of acknowledged work."""
    proc = subprocess.Popen(_child_cmd(path, "FULL", seed, -1.0), cwd=_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first acknowledged put: the agent is running
    if not first:
        proc.kill()
        raise RuntimeError(f"child failed: {proc.communicate()[1]}")
    threading.Event().wait(delay_s)
    proc.kill()  # SIGKILL: no cleanup, no final commit, no checkpoint
    rest, _ = proc.communicate(timeout=30)
    return check_file(path, first + rest)


def check_file(path: Path, stdout: str) -> CutResult:
    put: set[int] = set()
    sent: set[int] = set()
    acking: set[int] = set()
    lost_writes = 0
    for line in stdout.splitlines():
        if not line.endswith(tuple("0123456789")) and " " in line:
            continue  # a line cut short
        word, *nums = line.split()
        if word == "put":
            put.update(int(x) for x in nums)
        elif word == "sent":
            sent.update(int(x) for x in nums)
        elif word == "acking":
            acking.update(int(x) for x in nums)
        elif word == "cut":
            lost_writes = int(nums[0])
    conn = sqlite3.connect(path)
    try:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if {"reads", "outbox"} <= tables:
            in_reads = {int.from_bytes(r[0], "big") if isinstance(r[0], bytes) else int(r[0], 16)
                        for r in conn.execute("SELECT epc FROM reads")}
            in_outbox = {int(r[0], 16) for r in conn.execute("SELECT payload FROM outbox")}
        else:  # the cut came before the schema was ever synced (possible with NORMAL)
            in_reads, in_outbox = set(), set()
    finally:
        conn.close()
    lost = sorted(put - in_reads - in_outbox - acking)
    back = sorted(sent & in_outbox)
    return CutResult(len(put), lost, back, integrity, lost_writes)


def _matrix(cuts: int, directory: Path, settings: list[str]) -> None:
    for sync in settings:
        runs_losing = lost_total = back_total = bad = acked = 0
        for i in range(cuts):
            path = directory / f"pc-{sync}-{i}.db"
            r = run_cut(path, sync, seed=i, cut_after_s=0.3 + (i % 7) * 0.1)
            acked += r.acked
            if r.lost or r.resurrected:
                runs_losing += 1
            lost_total += len(r.lost)
            back_total += len(r.resurrected)
            bad += r.integrity != "ok"
        print(f"{sync:6} cuts={cuts} acked_reads={acked} cuts_losing={runs_losing} "
              f"acked_reads_lost={lost_total} acked_events_back={back_total} "
              f"integrity_failures={bad}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child")
    c.add_argument("path")
    c.add_argument("synchronous")
    c.add_argument("seed", type=int)
    c.add_argument("cut_after_s", type=float)
    m = sub.add_parser("matrix")
    m.add_argument("--cuts", type=int, default=40)
    m.add_argument("--dir", default="/tmp/powercut")
    m.add_argument("--settings", nargs="+", default=["FULL", "EXTRA", "NORMAL"])
    args = ap.parse_args(argv)
    if args.cmd == "child":
        asyncio.run(_child(args.path, args.synchronous, args.seed, args.cut_after_s))
    else:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        _matrix(args.cuts, Path(args.dir), args.settings)


if __name__ == "__main__":
    main()
