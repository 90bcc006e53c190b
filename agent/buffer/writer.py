"""The writer thread: one thread owns the SQLite connection; every operation is a request.

Requests arrive on a queue. The thread takes the first one, keeps collecting for up to
``commit_interval_s`` (group commit; not for a request that already waited its window, the
ingest's put, which ends the wait), hands the batch to the executor (which runs it in ONE
transaction and fills in each request's result or error), then resolves each request's asyncio
future on its own loop with ``loop.call_soon_threadsafe`` (one call per loop per batch).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from agent.buffer.api import BufferClosedError
from agent.osnames import name_thread

log = logging.getLogger(__name__)

S = TypeVar("S")

MAX_BATCH_REQUESTS = 1000
MAX_BATCH_ROWS = 20_000


@dataclass(slots=True, eq=False)
class Request(Generic[S]):
    fn: Callable[[S], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    name: str
    rows: int = 1  # weight for batch limits
    in_transaction: bool = True  # False: run alone, outside any transaction (open, close)
    # False: the caller already gathered it over a group-commit window (the ingest, from its
    # oldest read's arrival): commit it with what is queued now, do not wait again.
    group_wait: bool = True
    result: Any = None
    error: BaseException | None = None


_STOP: Final = object()


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, error in items:
        if fut.done():  # cancelled by the caller meanwhile
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


class WriterThread(Generic[S]):
    """Runs ``executor(state, batch)`` on a dedicated thread for batches of requests."""

    def __init__(
        self,
        state: S,
        executor: Callable[[S, list[Request[S]]], None],
        *,
        commit_interval_s: float,
        name: str = "buffer-writer",
    ) -> None:
        self._state = state
        self._executor = executor
        self._interval = commit_interval_s
        self._queue: queue.SimpleQueue[Request[S] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False  # no new requests (set by the owner's loop)
        self._dead: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def submit(
        self, fn: Callable[[S], Any], name: str, *, rows: int = 1, in_transaction: bool = True,
        group_wait: bool = True,
    ) -> Any:
        if self._closed or self._dead is not None:
            raise BufferClosedError("the buffer is closed") from self._dead
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(Request(fn, fut, loop, name, rows, in_transaction, group_wait))
        return await fut

    async def stop(self, final: Callable[[S], Any]) -> None:
        """Refuse new requests, let the thread finish what is queued, run ``final``, end."""
        if self._closed:
            return
        if self._dead is not None or not self._thread.is_alive():
            self._closed = True
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(Request(final, fut, loop, "close", 1, in_transaction=False))
        self._closed = True
        self._queue.put(_STOP)
        try:
            await fut
        finally:
            await asyncio.to_thread(self._thread.join)

    # ------------------------------------------------------------------ thread side

    def _main(self) -> None:
        name_thread(self._thread.name)  # for top -H and py-spy (agent/osnames.py)
        batch: list[Request[S]] = []
        try:
            while True:
                batch, stop = self._collect()
                if batch:
                    self._run(batch)
                    batch = []
                if stop:
                    return
        except BaseException as exc:
            log.exception("buffer writer thread crashed; the buffer refuses all requests now")
            self._dead = exc
            self._fail_all(batch, exc)

    def _collect(self) -> tuple[list[Request[S]], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, Request)
        batch: list[Request[S]] = [first]
        if not first.in_transaction:
            return batch, False
        rows = first.rows
        deadline = time.monotonic() + (self._interval if first.group_wait else 0.0)
        while len(batch) < MAX_BATCH_REQUESTS and rows < MAX_BATCH_ROWS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                self._queue.put(_STOP)  # handled on the next round, after this batch
                break
            assert isinstance(item, Request)
            if not item.in_transaction:
                # Runs alone: finish this batch first, then that one.
                self._run(batch)
                return [item], False
            batch.append(item)
            rows += item.rows
            if not item.group_wait:
                deadline = 0.0  # it waited its window: commit now, with what is queued
        return batch, False

    def _run(self, batch: list[Request[S]]) -> None:
        if len(batch) == 1 and not batch[0].in_transaction:
            req = batch[0]
            try:
                req.result = req.fn(self._state)
            except Exception as exc:
                req.error = exc
        else:
            self._executor(self._state, batch)
        self._resolve(batch)

    def _resolve(self, batch: list[Request[S]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for req in batch:
            by_loop.setdefault(req.loop, []).append((req.future, req.result, req.error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop is closed: nobody waits any more
                log.debug("buffer: a caller's event loop closed before its result arrived")

    def _fail_all(self, batch: list[Request[S]], exc: BaseException) -> None:
        pending = list(batch)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Request):
                pending.append(item)
        for req in pending:
            err = BufferClosedError(f"the buffer's writer thread stopped: {exc!r}")
            err.__cause__ = exc
            req.error = err
        self._resolve(pending)
