"""The buffer's contract: a durable queue between the readers and the uplink.

Two stages live in one SQLite file so that one transaction can move data between them:

    readers --put_reads--> [reads] --take_reads / commit_events--> [outbox] --claim/ack--> uplink
                                          (pipeline: presence, EPCIS)

* ``put_reads`` returns only once the reads are durable (committed with synchronous=FULL):
  a read counts as *accepted* from that moment.
* ``commit_events`` atomically deletes the processed reads, inserts the resulting events and
  updates the pipeline's persistent state, so a crash can never lose a read nor emit twice.
* ``claim`` leases outbox rows; ``ack`` deletes them after the broker's PUBACK; ``release``
  returns them; leases that expire (crash between publish and ack) are released at start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.buffer.chain import Build, ChainHead, FrozenDocument, Sign
from agent.model import Read, slot_setter

# Outbox priorities: status and alarm messages are never evicted by bulk reads.
PRIORITY_EVENT = 0
PRIORITY_STATUS = 10
PRIORITY_ALARM = 20


@dataclass(frozen=True, slots=True)
class StoredRead:
    id: int
    read: Read


@dataclass(frozen=True, slots=True, kw_only=True)
class OutEvent:
    """One message-to-be for the uplink (an EPCIS event object as JSON text, a status...)."""

    kind: str  # "event" | "status" | "alarm"
    payload: str  # JSON text; for kind "event" an EPCIS event object carrying its eventID
    priority: int = PRIORITY_EVENT
    created_at_s: float  # epoch seconds when the event was created


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    id: int
    kind: str
    payload: str
    priority: int
    created_at_s: float
    attempts: int  # publish attempts before this claim


# A busy line's constructors (issue 12; why and how: agent/model.py, barcode_read)
_new = object.__new__
_o_kind = slot_setter(OutEvent, "kind")
_o_payload = slot_setter(OutEvent, "payload")
_o_priority = slot_setter(OutEvent, "priority")
_o_created_at_s = slot_setter(OutEvent, "created_at_s")
_c_id = slot_setter(Claimed, "id")
_c_kind = slot_setter(Claimed, "kind")
_c_payload = slot_setter(Claimed, "payload")
_c_priority = slot_setter(Claimed, "priority")
_c_created_at_s = slot_setter(Claimed, "created_at_s")
_c_attempts = slot_setter(Claimed, "attempts")


def event_out(payload: str, created_at_s: float) -> OutEvent:
    """``OutEvent(kind="event", payload=payload, created_at_s=created_at_s)``, cheaper."""
    e: OutEvent = _new(OutEvent)
    _o_kind(e, "event")
    _o_payload(e, payload)
    _o_priority(e, PRIORITY_EVENT)
    _o_created_at_s(e, created_at_s)
    return e


def claimed_row(row: Sequence[object]) -> Claimed:
    """A ``Claimed`` from a row (id, kind, payload, priority, created_at_s, attempts)."""
    c: Claimed = _new(Claimed)
    _c_id(c, row[0])
    _c_kind(c, row[1])
    _c_payload(c, row[2])
    _c_priority(c, row[3])
    _c_created_at_s(c, row[4])
    _c_attempts(c, row[5])
    return c


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferStats:
    generation: str
    reads_pending: int
    events_pending: int
    events_leased: int
    oldest_event_age_s: float | None
    size_bytes: int
    dropped_total: int
    dead_letters: int
    quarantined_files: int
    disk_full: bool
    # Additions to the contract (defaults keep older constructors valid):
    transactions: int = 0  # write transactions committed since open (group commit: one per batch)
    used_bytes: int = 0  # bytes of live pages (page_count - freelist_count) * page_size
    max_size: int = 0  # the configured limit on used_bytes
    dropped_reads: int = 0  # reads evicted from the `reads` stage because the buffer was full
    dropped_events: int = 0  # outbox rows evicted because the buffer was full
    expired: int = 0  # reads and events dropped because they were older than max_age_s
    salvaged_rows: int = 0  # rows carried over from quarantined (corrupt) files
    dead_letters_max: int = 0  # the cap (buffer.dead_letters_max); at it an alarm was raised
    dead_letters_held: int = 0  # refusals kept in the outbox because dead letters were full


class BufferStoreError(Exception):
    """Base of the buffer's errors."""


class BufferOpenError(BufferStoreError):
    """The buffer file cannot be opened; the message says where, what is wrong and how to fix it."""


class BufferClosedError(BufferStoreError):
    """The buffer was closed (or its writer thread stopped); nothing more is accepted."""


class BufferCorruptError(BufferStoreError):
    """The database file turned out corrupt during operation (it is quarantined and salvaged)."""


class ReadIdsOutOfStepError(BufferStoreError):
    """Raised by put_batch when the batch's first read id is not the buffer's next one (the
    file was recovered under the agent and renumbered). Nothing was stored; ``next_read_id``
    is the id the buffer expects now: number the batch again and put it again."""

    def __init__(self, message: str, next_read_id: int) -> None:
        super().__init__(message)
        self.next_read_id = next_read_id


class BufferFullError(BufferStoreError):
    """Raised by put_reads under the backpressure policy while the buffer is full.

    Nothing of the refused call was stored: hold the reads (or pause the readers) and retry.
    """


class BufferDiskFullError(BufferFullError):
    """Raised by put_reads while the disk (or the file's page limit) is full (SQLITE_FULL).

    A subclass of :class:`BufferFullError`, so a caller that pauses on backpressure pauses here
    too. Nothing of the refused call was stored; everything committed before stays.
    """


class Buffer(Protocol):
    @property
    def generation(self) -> str: ...

    @property
    def disk_full(self) -> bool: ...

    async def put_reads(self, reads: Sequence[Read]) -> None: ...

    @property
    def next_read_id(self) -> int: ...

    async def put_batch(self, first_id: int, count: int, reads: Sequence[tuple[int, Read]],
                        events: Sequence[OutEvent]) -> None: ...

    async def take_reads(self, limit: int) -> list[StoredRead]: ...

    async def commit_events(
        self,
        read_ids: Sequence[int],
        events: Sequence[OutEvent],
        state: Mapping[str, str | None] | None = None,
    ) -> None: ...

    async def load_state(self, prefix: str = "") -> dict[str, str]: ...

    async def claim(self, limit: int, *, lease_s: float) -> list[Claimed]: ...

    async def ack(self, ids: Sequence[int], *, document: int | None = None) -> None: ...

    async def release(self, ids: Sequence[int], *, error: str | None = None) -> None: ...

    async def dead_letter(self, ids: Sequence[int], reason: str) -> int: ...

    async def stats(self) -> BufferStats: ...

    # Frozen documents (docs/provenance.md)
    async def claim_frozen(
        self, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[FrozenDocument, list[Claimed]] | None: ...

    async def claim_next(
        self, limit: int, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[FrozenDocument | None, list[Claimed]]: ...

    async def freeze(self, ids: Sequence[int], build: Build,
                     sign: Sign | None = None) -> FrozenDocument: ...

    async def unfreeze(self, ids: Sequence[int], why: str) -> None: ...

    async def chain_head(self) -> ChainHead | None: ...

    async def aclose(self) -> None: ...
