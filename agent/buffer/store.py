"""The synchronous engine behind SqliteBuffer. Everything here runs on the writer thread.

A batch of requests runs in ONE transaction (group commit):

    BEGIN IMMEDIATE; request 1; request 2; ...; evict / expire; COMMIT

* A request that fails on its own data (a bad value, a constraint) rolls the transaction back;
  the batch runs again without it, so only its own future fails.
* A request refused before it wrote anything (backpressure) just fails; the batch goes on.
* An error of the file or the machine (disk full, I/O error) rolls back and the requests are
  retried one transaction each, so that what still fits (acks, small commits) goes through.
* SQLITE_CORRUPT / SQLITE_NOTADB: the file is quarantined, salvaged into a fresh one, an alarm
  is queued, and the batch runs again on the fresh file.

Steps of the wall clock (NTP syncing a Pi without RTC) are detected at the start of each
transaction (:class:`agent.clock.ClockSteps`). Rows stored before a step keep their times; the
step is logged in ``meta`` (``clock_steps``: step, last outbox id, last reads id at that moment)
and added to their age, so ``max_age_s`` does not expire a whole backlog after a forward step.
Leases in flight are moved by the step, and a lease further ahead than the longest lease granted
is treated as expired (a backward step the detector did not see: a restart, no elapsed clock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.buffer import chain, faults, ledger, limits
from agent.buffer.api import (
    PRIORITY_ALARM,
    BufferCorruptError,
    BufferDiskFullError,
    BufferOpenError,
    BufferStoreError,
)
from agent.buffer.salvage import raise_sequence, salvage
from agent.buffer.schema import Conn, SchemaTooNewError, configure, migrate
from agent.buffer.writer import Request
from agent.clock import ClockSteps
from agent.config import BufferConfig

log = logging.getLogger("agent.buffer")

Connect = Callable[[str], Conn]

COUNTER_NAMES = (
    "dropped_events", "dropped_reads", "dropped_dead_letters", "expired_events", "expired_reads",
    "quarantined_files", "salvaged_rows", "undecodable_reads", "dead_letters_held",
)
_SWEEP_INTERVAL_S = 1.0


class Rejected(Exception):
    """Raised by an operation that refuses a request before writing anything."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _RequestFailed(Exception):
    def __init__(self, request: Request[Store], error: BaseException) -> None:
        super().__init__(str(error))
        self.request = request
        self.error = error


class _CorruptFileError(Exception):
    pass


class Store:
    def __init__(self, cfg: BufferConfig, *, clock: Callable[[], float], rng: random.Random,
                 connect: Connect, check_at_open: bool = True,
                 dead_letters_max: int | None = None, steps: ClockSteps | None = None) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.clock = clock
        self.steps = steps
        self._step_seq = steps.seq if steps is not None else 0
        # (step_s, last outbox id, last reads id) per step while rows stored before it remain
        self.step_log: list[tuple[float, int, int]] = []
        self._tx_step_log: list[tuple[float, int, int]] = []
        self._tx_step_seq = 0
        self.lease_max_s: float | None = None  # the longest lease granted by this process
        self.rng = rng
        self._connect = connect
        self.check_at_open = check_at_open
        self.dead_letters_max = (cfg.dead_letters_max if dead_letters_max is None
                                 else dead_letters_max)
        self.dead_letters_full_alarmed = False  # one alarm per crossing of the cap
        self._conn: Conn | None = None
        self.generation = ""
        self.page_size = 4096
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.transactions = 0
        self.disk_full = False
        self._last_sweep = float("-inf")
        self._full_warned = False
        # per-transaction scratch, discarded on rollback
        self._tx_counters: dict[str, int] = {}
        self._tx_notes: list[tuple[str, tuple[Any, ...]]] = []
        self._tx_inserted = False
        self._ledger_saved_s = float("-inf")
        self._ledger_last: ledger.Ledger | None = None
        self._ledger_warned = False

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            raise BufferStoreError("the buffer file is not open")
        return self._conn

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        faults.preflight(self.path)
        self._ensure_reserve()
        damage = faults.wal_damage(self.path)
        if damage is not None:
            # SQLite would replay the WAL up to the damaged frame and drop every later commit
            # without an error: salvage reads those frames page by page instead.
            log.error("buffer file %s: %s; quarantining and salvaging it", self.path, damage)
            self._conn = self._replace_corrupt(damage)
        else:
            try:
                self._conn = self._open_checked()
            except _CorruptFileError as exc:
                log.error("buffer file %s is corrupt (%s); quarantining and salvaging it",  # noqa: TRY400
                          self.path, exc)
                self._conn = self._replace_corrupt(str(exc))
        self._load()
        self._check_ledger()
        released = self._release_stale_leases()
        log.info("buffer %s open: generation %s, %d stale leases released",
                 self.path, self.generation, released)

    def _open_checked(self) -> Conn:
        try:
            conn = self._connect(str(self.path))
        except Exception as exc:
            raise faults.open_error(self.path, exc) from exc
        try:
            configure(conn, self.cfg.synchronous, reserve_bytes=self.cfg.reserve_bytes)
            if self.check_at_open:
                _quick_check(conn)
            migrate(conn)
            self._ensure_meta(conn)
        except _CorruptFileError:
            conn.close()
            raise
        except SchemaTooNewError as exc:
            conn.close()
            raise BufferOpenError(f"buffer file {self.path}: {exc}; upgrade the agent, or move "
                                  f"the file away to start an empty buffer") from exc
        except Exception as exc:
            _close_quietly(conn)
            if faults.is_corrupt(exc):
                raise _CorruptFileError(f"{type(exc).__name__}: {exc}") from exc
            raise faults.open_error(self.path, exc) from exc
        return conn

    def _ensure_meta(self, conn: Conn) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None:
            gen = _new_generation(self.rng)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [
                ("generation", gen), ("created_at", _iso(self.clock()))])
            conn.executemany("INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)",
                             [(n,) for n in COUNTER_NAMES])
            conn.execute("COMMIT")

    def _load(self) -> None:
        conn = self.conn
        self.generation = str(
            conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        self.page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        for name, value in conn.execute("SELECT name, value FROM counters").fetchall():
            self.counters[str(name)] = int(value)
        self.step_log = []
        row = conn.execute("SELECT value FROM meta WHERE key = 'clock_steps'").fetchone()
        if row is not None:
            try:
                self.step_log = [(float(d), int(o), int(r)) for d, o, r in json.loads(row[0])]
            except (TypeError, ValueError) as exc:
                log.error("buffer: unreadable clock step log %.200r ignored: %s",  # noqa: TRY400
                          row[0], exc)

    # ------------------------------------------------------------------ ledger (ledger.py)

    def _ledger_now(self) -> ledger.Ledger:
        seqs = dict(self.conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        return ledger.Ledger(self.generation, int(seqs.get("reads", 0)),
                             int(seqs.get("outbox", 0)))

    def _check_ledger(self) -> None:
        """Compare the file with what the agent remembers having committed; alarm on a loss."""
        path = ledger.ledger_path(self.path)
        remembered, problem = ledger.load(path)
        if problem is not None:
            log.warning("buffer: %s; it is written again now", problem)
        if remembered is not None and remembered.generation != self.generation:
            # The file is not the one last written: a chain begun in it says so.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                chain.note_chain_start(self.conn, {
                    "reason": "new-buffer", "previousGeneration": remembered.generation})
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback_quietly()
                raise
        if remembered is not None:
            conn = self.conn
            row = conn.execute(
                "SELECT value FROM meta WHERE key = 'previous_generation'").fetchone()
            alarm = ledger.compare(remembered, self._ledger_now(),
                                   None if row is None else str(row[0]))
            if alarm is not None:
                now = self.clock()
                alarm |= {"path": str(self.path), "ledger": str(path),
                          "detected_at": _iso(now)}
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # New ids continue above every id handed out before: a readId or an
                    # outbox id never means two different rows.
                    raise_sequence(conn, "reads", remembered.reads_id)
                    raise_sequence(conn, "outbox", remembered.outbox_id)
                    insert_alarm(conn, alarm, now)
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback_quietly()
                    raise
                log.error("buffer: %s: %s (ledger %s: generation %s, read id %d, outbox id "
                          "%d); alarm queued", alarm["type"], alarm["detail"], path,
                          remembered.generation, remembered.reads_id, remembered.outbox_id)
        self._save_ledger(force=True)

    def _save_ledger(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._ledger_saved_s < ledger.SAVE_EVERY_S:
            return
        self._ledger_saved_s = now
        try:
            current = self._ledger_now()
            if current != self._ledger_last:
                ledger.save(ledger.ledger_path(self.path), current)
                self._ledger_last = current
        except (OSError, sqlite3.Error) as exc:
            if not self._ledger_warned:
                self._ledger_warned = True
                log.warning("buffer: cannot write the ledger next to %s (%s); a replaced or "
                            "truncated buffer file would not be detected", self.path, exc)
            return
        self._ledger_warned = False

    def _release_stale_leases(self) -> int:
        # Only this process writes the file, so every lease found at start is a dead process's.
        # The publish may have happened (at least once): count it as an attempt.
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            n = len(self.conn.execute(
                "UPDATE outbox SET lease_until_s = NULL, attempts = attempts + 1, "
                "last_error = 'lease held by a previous run, released at start' "
                "WHERE lease_until_s IS NOT NULL RETURNING id").fetchall())
            self.conn.execute("COMMIT")
        except Exception as exc:
            self._rollback_quietly()
            if not faults.is_full(exc):
                raise
            self._set_disk_full(True, exc)
            return 0  # they expire by themselves (claim takes expired leases)
        return n

    def close(self) -> None:
        if self._conn is None:
            return
        self._save_ledger(force=True)  # a clean stop leaves the exact ledger
        conn, self._conn = self._conn, None
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:
            log.warning("buffer: final checkpoint failed (%s); the WAL is replayed at next start",
                        exc)
        conn.close()

    # ------------------------------------------------------------------ corruption

    def _replace_corrupt(self, reason: str) -> Conn:
        now = self.clock()
        moved = faults.quarantine(self.path, now)
        try:
            conn = self._connect(str(self.path))
            configure(conn, self.cfg.synchronous, reserve_bytes=self.cfg.reserve_bytes)
            migrate(conn)
            self._ensure_meta(conn)
            report = salvage(moved, conn)
            conn.execute("BEGIN IMMEDIATE")
            gen = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
            counters = dict.fromkeys(COUNTER_NAMES, 0)
            for k, v in report.counters.items():
                if k in counters:
                    counters[k] = v
            counters["quarantined_files"] += 1
            counters["salvaged_rows"] += report.total
            conn.executemany("UPDATE counters SET value = ? WHERE name = ?",
                             [(v, k) for k, v in counters.items()])
            if report.previous_generation:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                             "('previous_generation', ?)", (report.previous_generation,))
            alarm = {
                "type": "buffer_corrupt",
                "detail": "the buffer file was corrupt; it was moved aside and its readable "
                          "rows were copied into a new file",
                "path": str(self.path),
                "quarantined_as": str(moved),
                "reason": reason,
                "detected_at": _iso(now),
                "salvaged_rows": report.rows,
                "salvaged_total": report.total,
                "invalid_rows": report.invalid_rows,
                "unreadable_id_ranges": {t: r[:20] for t, r in report.skipped.items()},
                "salvage_error": report.error,
                "generation": gen,
                "previous_generation": report.previous_generation,
                "page_rows": report.page_rows,
                "invalid_row_samples": report.invalid[:10],
            }
            alarm["report"] = _write_report(moved, alarm, report.invalid)
            insert_alarm(conn, alarm, now)
            # What could not be read back is declared in the new chain's first document, like
            # any other loss (issue 14 item 3): by id range (an upper bound: a range may hold
            # ids that never existed) and the count of rows that did not decode.
            for table, ranges in report.skipped.items():
                what = {"reads": "reads", "outbox": "events"}.get(table)
                for lo, hi in ranges[:20] if what else ():
                    chain.add_gap(conn, {"reason": "corrupt-buffer", "what": what,
                                         "count": hi - lo + 1, "ids": [lo, hi],
                                         "detail": "ids in this range could not be read back "
                                                   "from the corrupt file (at most this many)"})
            if report.invalid_rows:
                chain.add_gap(conn, {"reason": "corrupt-buffer", "what": "rows",
                                     "count": report.invalid_rows,
                                     "detail": "salvaged rows that did not decode (see the "
                                               "salvage report)"})
            conn.execute("COMMIT")
        except Exception as exc:
            raise BufferOpenError(
                f"buffer file {self.path} was corrupt and moved to {moved}, but a new file "
                f"could not be made: {exc}") from exc
        log.error("buffer: quarantined corrupt file as %s; salvaged %d rows %s (unreadable id "
                  "ranges: %s); new generation %s", moved, report.total, report.rows,
                  report.skipped or "none", gen)
        return conn

    def _recover(self, exc: BaseException) -> None:
        log.error("buffer: the file turned out corrupt during operation (%s)", exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)
        self._conn = self._replace_corrupt(f"{type(exc).__name__} during operation: {exc}")
        self._load()

    # ------------------------------------------------------------------ batches

    def run_batch(self, batch: list[Request[Store]]) -> None:
        pending = list(batch)
        recovered = False
        while pending:
            try:
                self._transaction(pending)
            except _RequestFailed as failed:
                self._rollback_quietly()
                pending.remove(failed.request)
                failed.request.error = self._translate(failed.error)
            except Exception as exc:
                self._rollback_quietly()
                if faults.is_corrupt(exc) and not recovered:
                    recovered = True
                    self._recover(exc)  # then run the batch again on the fresh file
                    continue
                if len(pending) > 1:
                    for req in pending:
                        self._alone(req)
                    return
                pending[0].error = self._translate(exc)
                return
            else:
                self._save_ledger()
                return

    def _alone(self, req: Request[Store]) -> None:
        try:
            self._transaction([req])
        except _RequestFailed as failed:
            self._rollback_quietly()
            req.error = self._translate(failed.error)
        except Exception as exc:
            self._rollback_quietly()
            req.error = self._translate(exc)

    def _transaction(self, reqs: list[Request[Store]]) -> None:
        self._tx_counters = {}
        self._tx_notes = []
        self._tx_inserted = False
        self._tx_step_log = list(self.step_log)
        self._tx_step_seq = self._step_seq
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        self._clock_steps()
        self._expire()
        for req in reqs:
            req.error = None
            req.result = None
            try:
                req.result = req.fn(self)
            except Rejected as rej:
                req.error = rej.error
            except Exception as exc:
                if faults.is_environmental(exc):
                    raise
                raise _RequestFailed(req, exc) from exc
        self._maintain()
        conn.execute("COMMIT")
        self.transactions += 1
        self.step_log, self._step_seq = self._tx_step_log, self._tx_step_seq
        for k, v in self._tx_counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        for msg, args in self._tx_notes:
            log.warning(msg, *args)
        if self._tx_inserted and self.disk_full:
            self._set_disk_full(False, None)
        if self.disk_full:
            # Give the WAL's space back to the filesystem after every drained batch: on a full
            # disk it is what the next deletes and checkpoints need.
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception as exc:
                log.debug("buffer: checkpoint on a full disk failed: %s", exc)
        try:
            limits.reclaim(conn)
        except Exception as exc:  # giving space back is an optimisation; retried next time
            log.debug("buffer: incremental_vacuum failed: %s", exc)

    def _rollback_quietly(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except Exception as exc:
                log.debug("buffer: rollback failed: %s", exc)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, BufferStoreError | ValueError | TypeError):
            return exc
        if faults.is_full(exc):
            self._set_disk_full(True, exc)
            err: BaseException = BufferDiskFullError(
                f"buffer file {self.path}: the disk is full (SQLITE_FULL); nothing of this call "
                f"was stored, everything stored before is kept; hold the data and retry")
        elif faults.is_corrupt(exc):
            err = BufferCorruptError(f"buffer file {self.path}: {exc}")
        else:
            err = BufferStoreError(f"buffer file {self.path}: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    def _set_disk_full(self, full: bool, exc: BaseException | None) -> None:
        if full == self.disk_full:
            return
        self.disk_full = full
        if full:
            log.error("buffer: DISK FULL writing %s (%s); new reads are refused until space "
                      "returns; everything already stored is kept", self.path, exc)
            self._release_reserve()
        else:
            log.warning("buffer: disk space is back; %s accepts reads again", self.path)
            self._ensure_reserve()

    # ------------------------------------------------------------------ space reserve

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _ensure_reserve(self) -> bool:
        """Hold ``reserve_bytes`` in a file beside the buffer while there is room for it; True
        if it is held now (or none is configured).

        Without it a full disk deadlocks: deleting delivered rows, checkpointing the WAL and
        turning reads into events all need a little space themselves. Created only when twice
        the reserve is free, so it never causes the disk-full it protects against.
        """
        want = self.cfg.reserve_bytes
        target = self.reserve_path
        if want <= 0:
            return True
        try:
            if target.exists() and target.stat().st_size >= want:
                return True
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 2 * want:
                return False
            block = b"\0" * 65536
            with target.open("wb") as f:
                left = want
                while left > 0:  # real blocks, not a sparse file: the space must be taken
                    left -= f.write(block[: min(left, len(block))])
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.unlink()
            log.debug("buffer: no space reserve (%s)", exc)
            return False
        return True

    def _release_reserve(self) -> None:
        try:
            size = self.reserve_path.stat().st_size
            self.reserve_path.unlink()
        except OSError:
            return
        log.warning("buffer: released the %d KiB space reserve so delivered rows can be "
                    "deleted and the backlog can drain", size // 1024)

    def count(self, name: str, n: int) -> None:
        self._tx_counters[name] = self._tx_counters.get(name, 0) + n
        self.conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))

    def note(self, msg: str, *args: Any) -> None:
        """A warning logged once the transaction has committed."""
        self._tx_notes.append((msg, args))

    def inserted(self, *, reads: bool = False) -> None:
        # Only reads accepted again prove the disk has room for the agent's input: events
        # inserted by the pipeline while the disk is full live on the released reserve.
        if reads:
            self._tx_inserted = True

    def admit_reads(self) -> None:
        """While the disk is full, refuse new reads until there is room to spare again.

        The space the delivered backlog frees (and the released reserve) is for draining:
        turning reads into events, leases, acks, checkpoints. New reads come back only when
        twice the reserve is free (and the reserve can be taken again), so the buffer does not
        flap between full and not full at the edge of the disk.
        """
        if not self.disk_full:
            return
        # The reserve first, then the reads: taken after them (at the commit that ends the
        # disk-full), it found less room than it needs once they were stored, was silently not
        # taken, and the next full disk had nothing to release: claims, freezes, acks and
        # checkpoints all waited for space for ever (the e2e disk-full test, once).
        if self._room_to_spare() and self._ensure_reserve():
            return
        raise Rejected(BufferDiskFullError(
            f"buffer file {self.path}: the disk is full; new reads wait until the delivered "
            f"backlog frees space (nothing of this call was stored; hold the data and retry)"))

    def _room_to_spare(self) -> bool:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return True  # cannot tell: let SQLite decide
        return st.f_bavail * st.f_frsize >= max(2 * self.cfg.reserve_bytes, 1024**2)

    def used_bytes(self) -> int:
        return limits.used_bytes(self.conn, self.page_size)

    # ------------------------------------------------------------------ clock steps

    def _clock_steps(self) -> None:
        """In the transaction: take new steps of the wall clock into the step log (meta) and
        move the leases in flight with them."""
        if self.steps is None:
            return
        self.steps.poll()
        new = self.steps.steps_since(self._tx_step_seq)
        if not new:
            return
        conn = self.conn
        seqs = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        last_event, last_read = int(seqs.get("outbox", 0)), int(seqs.get("reads", 0))
        for step in new:
            self._tx_step_log.append((step.delta_s, last_event, last_read))
            self._tx_step_seq = step.seq
            conn.execute("UPDATE outbox SET lease_until_s = lease_until_s + ? "
                         "WHERE lease_until_s IS NOT NULL", (step.delta_s,))
        self._save_step_log(force=True)
        self._last_sweep = float("-inf")  # the sweep interval restarts on the new clock

    def _save_step_log(self, *, force: bool = False) -> None:
        """Forget steps no remaining row predates, then store the log (if it changed)."""
        conn = self.conn
        first_event = conn.execute("SELECT min(id) FROM outbox").fetchone()[0]
        first_read = conn.execute("SELECT min(id) FROM reads").fetchone()[0]
        kept = [(d, o, r) for d, o, r in self._tx_step_log
                if (first_event is not None and first_event <= o)
                or (first_read is not None and first_read <= r)]
        if kept == self._tx_step_log and not force:
            return
        self._tx_step_log = kept
        if kept:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock_steps', ?)",
                         (json.dumps(self._tx_step_log),))
        else:
            conn.execute("DELETE FROM meta WHERE key = 'clock_steps'")

    def step_s(self, table: str, row_id: int) -> float:
        """What to add to a row's stored time to put it on the current wall clock."""
        col = 1 if table == "outbox" else 2
        return sum(e[0] for e in self._tx_step_log if row_id <= e[col])

    def lease_cap(self, now: float) -> float:
        """Leases ending after this were granted before a backward step: expired."""
        return limits.NO_CAP if self.lease_max_s is None else now + self.lease_max_s

    def _expire(self) -> None:
        now = self.clock()
        if self.cfg.max_age_s is not None and now - self._last_sweep >= _SWEEP_INTERVAL_S:
            self._last_sweep = now
            if self._tx_step_log:
                self._save_step_log()
            self._record(limits.expire(
                self.conn, now=now, max_age_s=self.cfg.max_age_s, lease_cap=self.lease_cap(now),
                step_s=self.step_s if self._tx_step_log else None))

    def _maintain(self) -> None:
        if self.cfg.when_full != "drop_oldest":
            return
        now = self.clock()
        self._record(limits.evict(self.conn, max_size=self.cfg.max_size,
                                  page_size=self.page_size, now=now,
                                  lease_cap=self.lease_cap(now)))
        over = self.used_bytes() > self.cfg.max_size
        if over and not self._full_warned:
            self.note("buffer: still over max_size (%d bytes) with nothing left to drop: only "
                      "status/alarm rows are left; they are never dropped", self.cfg.max_size)
        self._full_warned = over

    def _record(self, dropped: list[limits.Dropped]) -> None:
        for d in dropped:
            name = ("expired_" if d.reason == "max_age" else "dropped_") + d.what
            self.count(name, d.count)
            if d.what in ("events", "reads"):
                # In the same transaction as the drop: the next document says what is missing.
                gap: dict[str, Any] = {
                    "reason": "expired" if d.reason == "max_age" else "evicted",
                    "what": d.what, "count": d.count, "ids": [d.first_id, d.last_id],
                    "detail": "older than max_age_s" if d.reason == "max_age"
                    else "buffer full (max_size)"}
                if d.first_time is not None:
                    gap["firstTime"], gap["lastTime"] = d.first_time, d.last_time
                chain.add_gap(self.conn, gap)
            self.note("buffer: %s: dropped %d %s, ids %d..%d (oldest first); %d dropped in all",
                      "older than max_age_s" if d.reason == "max_age" else "full (max_size "
                      f"{self.cfg.max_size} bytes)", d.count, d.what.replace("_", " "),
                      d.first_id, d.last_id, self.dropped_total())

    def counter(self, name: str) -> int:
        """A counter including what the current transaction added."""
        return self.counters.get(name, 0) + self._tx_counters.get(name, 0)

    def dropped_total(self) -> int:
        names = ("dropped_events", "dropped_reads", "dropped_dead_letters", "expired_events",
                 "expired_reads", "undecodable_reads")
        return sum(self.counter(n) for n in names)

    def file_size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total


def insert_alarm(conn: Conn, alarm: dict[str, Any], now: float) -> None:
    """Queue an alarm for ``.../alarms`` in the current transaction (priority: never evicted)."""
    conn.execute("INSERT INTO outbox (kind, payload, priority, created_at_s) "
                 "VALUES ('alarm', ?, ?, ?)", (json.dumps(alarm, sort_keys=True),
                                                PRIORITY_ALARM, now))


def _write_report(moved: Path, alarm: dict[str, Any], invalid: list[dict[str, Any]]) -> str | None:
    """``<quarantined file>.report.json``: the alarm and every invalid row described (the
    first 100), kept with the file for whoever examines it."""
    target = Path(f"{moved}.report.json")
    try:
        target.write_text(json.dumps(alarm | {"invalid_rows_described": invalid}, indent=2,
                                     sort_keys=True, default=str) + "\n")
    except OSError as exc:
        log.warning("buffer: cannot write the salvage report %s: %s", target, exc)
        return None
    return str(target)


def _quick_check(conn: Conn) -> None:
    """Raise _CorruptFileError if quick_check finds a problem (it may also raise by itself)."""
    rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        detail = "; ".join(rows[:5]).replace("\n", "; ")
        raise _CorruptFileError(f"quick_check: {detail[:300]}")


def _close_quietly(conn: Conn) -> None:
    try:
        conn.close()
    except Exception as exc:
        log.debug("buffer: close failed: %s", exc)


def _new_generation(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
