"""Claim -> publish (QoS 1) -> ack after PUBACK. A row leaves the buffer only when the broker
confirmed it with a success reason code (< 0x80, MQTT 5 §3.4.2.1).

Reason-code policy (docs/uplink.md): success < 0x80 -> ack; 0x95 on a batch -> split;
permanent refusals (0x87, 0x90, 0x99, 0x95 on a single event) -> dead letters at once;
0x97 Quota exceeded -> pause ``quota_pause_s`` and halve the drain rate; any other refusal
(0x80, 0x83, ...) -> retried with full-jitter backoff, dead-lettered after ``max_attempts``
refusals. Timeouts and lost connections are not refusals: the rows go again, with the same
eventIDs, for as long as it takes.

Frozen documents (docs/provenance.md): a batch of events is split to size first, then frozen
once (exact bytes, tea:seq, tea:prevHash, detached JWS) in one buffer transaction, and every
retry resends those bytes; ``claim_next`` hands out a frozen document not yet delivered before
new rows. A frozen document split after a 0x95 is superseded and one dead-lettered is a gap:
the buffer queues both for the next document's ``tea:gaps``.

Refusals are counted per row and survive restarts: the buffer's own ``attempts`` column
counts every failed attempt (timeouts and outages too), so the forwarder keeps its own count
in the buffer's key-value state (``uplink.refusals:<row id>`` -> n, written before the row is
released, deleted when the row is acked or dead-lettered). Released refusals carry the error
prefix ``refused:`` in the row's ``last_error``; timeouts and outages do not.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agent.buffer.api import Buffer, Claimed
from agent.buffer.chain import ChainLink, FrozenDocument
from agent.clock import utcnow
from agent.config import MqttConfig
from agent.pipeline.epcis import CONTENT_TYPE, CONTEXT, iso_ms
from agent.uplink.mqtt import (
    PacketTooLargeError,
    PublishResult,
    PublishTimeout,
    UplinkNotConnected,
)
from agent.uplink.provenance import (
    CHAIN_FIELDS_BYTES,
    JWS_PROPERTY,
    SIGNATURES_SUFFIX,
    Signer,
    document_bytes,
)

log = logging.getLogger(__name__)

# MQTT 5 reason codes that will never succeed on retry: dead-letter (kept, counted, visible).
PERMANENT_REFUSALS = frozenset({0x87, 0x90, 0x99})  # not authorized, bad topic, bad format
PACKET_TOO_LARGE = 0x95
DISK_FULL_BATCH = 50
QUOTA_EXCEEDED = 0x97
CONTENT_ENCODING = "content-encoding"  # MQTT 5 user property naming the payload's encoding
REFUSALS_STATE = "uplink.refusals:"  # buffer state key prefix: row id -> transient refusals
REFUSED_PREFIX = "refused: "  # last_error of a row released after a transient refusal


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def receive_maximum(self) -> int: ...

    @property
    def maximum_packet_size(self) -> int | None: ...

    async def wait_connected(self, timeout_s: float | None = None) -> bool: ...

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        content_type: str | None = None,
        timeout_s: float | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        correlation_data: bytes | None = None,
    ) -> PublishResult: ...


def topics(cfg: MqttConfig, site: str, gateway_id: str) -> dict[str, str]:
    base = f"{cfg.topic_prefix}/{site}/{gateway_id}"
    return {
        "base": base,
        "event": f"{base}/events",
        "status": f"{base}/status",
        "alarm": f"{base}/alarms",
        "health": f"{base}/health",
        "signatures": f"{base}/{SIGNATURES_SUFFIX}",  # MQTT 3.1.1 only (docs/provenance.md)
    }


def build_document(payloads: Sequence[str], created: datetime) -> bytes:
    """EPCISDocument around stored event JSON, without re-parsing the events."""
    head = json.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": iso_ms(created),
        },
        separators=(",", ":"),
    )
    return (head[:-1] + ',"epcisBody":{"eventList":[' + ",".join(payloads) + "]}}").encode()


class TokenBucket:
    """Events-per-second limit with a one-second burst; ``rate`` None = unlimited.

    ``take(n)`` may run into debt (a batch larger than the burst) and then sleeps it off, so
    the long-run rate holds whatever the batch size.
    """

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.configured = rate
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate or 0.0
        self._last = clock()
        self._recent: deque[tuple[float, int]] = deque()

    @property
    def burst(self) -> float:
        return max(1.0, self.rate or 0.0)

    async def take(self, n: int) -> None:
        now = self._clock()
        self._recent.append((now, n))
        while self._recent and self._recent[0][0] < now - 5.0:
            self._recent.popleft()
        if self.rate is None:
            return
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)

    def observed_rate(self) -> float:
        if not self._recent:
            return 0.0
        span = max(1.0, self._clock() - self._recent[0][0])
        return sum(n for _t, n in self._recent) / span

    def shrink(self, floor: float = 1.0) -> float:
        """Halve the rate (after Quota exceeded); an unlimited bucket starts from what it
        observed. Returns the new rate."""
        base = self.rate if self.rate is not None else self.observed_rate()
        self.rate = max(floor, base / 2)
        self._tokens = min(self._tokens, 0.0)
        return self.rate

    def recover(self) -> None:
        """After a success: grow back by 2% towards the configured rate (or unlimited)."""
        if self.rate is None or self.rate == self.configured:
            return
        self.rate *= 1.02
        if self.configured is not None and self.rate >= self.configured:
            self.rate = self.configured
        elif self.configured is None and self.rate > 1e6:
            self.rate = None


@dataclass(slots=True)
class ForwarderStats:
    delivered_events: int
    delivered_messages: int
    refused_messages: int
    dead_lettered: int
    last_refusal: str | None
    drain_rate_events_s: float | None
    paused_s: float
    publish_latency_ms_p50: float | None  # publish() -> PUBACK
    publish_latency_ms_p99: float | None
    event_latency_ms_p50: float | None  # event created -> PUBACK
    event_latency_ms_p99: float | None


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class Forwarder:
    def __init__(
        self,
        buffer: Buffer,
        uplink: Publisher,
        cfg: MqttConfig,
        topic_map: dict[str, str],
        *,
        wake: asyncio.Event,
        now: Callable[[], datetime] = utcnow,
        idle_poll_s: float = 2.0,  # a safety net: new events wake it at once
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        gateway: str | None = None,  # "site/id" for tea:gateway; default: from the topics
        signer: Signer | None = None,
    ) -> None:
        self._buffer = buffer
        self._gateway = gateway or "/".join(topic_map["base"].split("/")[-2:])
        self._signer = signer
        self._docs_in_flight: set[int] = set()  # frozen documents being sent by this process
        self._uplink = uplink
        self._cfg = cfg
        self._topics = topic_map
        self._wake = wake
        self._now = now
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._idle_poll_s = idle_poll_s
        self._inflight = 0
        # Rows held by a delivery of this process, from claim until ack / release / dead letter.
        # A lease can "expire" while its publish is still in flight (a wall-clock step, a long
        # rate-limit wait): such rows come back from claim() but must not be sent twice.
        self._owned: set[int] = set()
        self._slot_free = asyncio.Condition()
        self._paused_until = 0.0
        self._bucket = TokenBucket(cfg.drain_rate_events_s)
        self._refusals: dict[int, int] = {}  # row id -> transient refusals (all runs)
        self._refusals_loaded = False
        self._publish_ms: deque[float] = deque(maxlen=1000)
        self._event_ms: deque[float] = deque(maxlen=1000)
        self.delivered_events = 0
        self.delivered_messages = 0
        self.refused_messages = 0
        self.refused_by_reason: dict[str, int] = {}  # "0x87 Not authorized" -> messages
        self.dead_lettered = 0
        self.last_refusal: str | None = None
        # Set after every freeze (the chain head moved): the health reporter refreshes the
        # retained status from it.
        self.head_changed = asyncio.Event()

    def set_signer(self, signer: Signer | None) -> None:
        """A renewed signing key (the gateway's certificate was renewed): documents frozen from
        now on are signed with it; frozen ones keep the signature they were frozen with."""
        self._signer = signer

    @property
    def window(self) -> int:
        # paho ignores the broker's Receive Maximum: we apply it ourselves (MQTT 5 §3.2.2.3.3).
        return max(1, min(self._cfg.inflight_window, self._uplink.receive_maximum))

    @property
    def max_payload(self) -> int:
        limit = self._cfg.batch_max_bytes
        broker = self._uplink.maximum_packet_size
        if broker:
            # room for the topic and properties (the JWS with its certificate, when signing)
            limit = min(limit, broker - 512 - (0 if self._signer is None
                                               else max(2560, self._signer.jws_bytes)))
        return max(1024, limit)

    @property
    def bucket(self) -> TokenBucket:
        return self._bucket

    def stats(self) -> ForwarderStats:
        loop_now = asyncio.get_running_loop().time()
        return ForwarderStats(
            delivered_events=self.delivered_events,
            delivered_messages=self.delivered_messages,
            refused_messages=self.refused_messages,
            dead_lettered=self.dead_lettered,
            last_refusal=self.last_refusal,
            drain_rate_events_s=self._bucket.rate,
            paused_s=round(max(0.0, self._paused_until - loop_now), 3),
            publish_latency_ms_p50=_pct(self._publish_ms, 0.5),
            publish_latency_ms_p99=_pct(self._publish_ms, 0.99),
            event_latency_ms_p50=_pct(self._event_ms, 0.5),
            event_latency_ms_p99=_pct(self._event_ms, 0.99),
        )

    async def _acquire_slot(self) -> None:
        async with self._slot_free:
            await self._slot_free.wait_for(lambda: self._inflight < self.window)
            self._inflight += 1

    async def _release_slot(self) -> None:
        async with self._slot_free:
            self._inflight -= 1
            self._slot_free.notify_all()

    def _lease_s(self) -> float:
        return self._cfg.publish_timeout_s * 2 + 5 + self._cfg.batch_max_delay_ms / 1000

    async def _claim(self, limit: int) -> list[Claimed]:
        rows = await self._buffer.claim(limit, lease_s=self._lease_s())
        fresh = [c for c in rows if c.id not in self._owned]
        if len(fresh) < len(rows):
            log.debug("claim returned %d row(s) still in flight here (lease ran out while "
                      "waiting for a PUBACK); not sent again", len(rows) - len(fresh))
        self._owned.update(c.id for c in fresh)
        return fresh

    async def _release(self, ids: Sequence[int], *, error: str | None = None) -> None:
        await self._buffer.release(ids, error=error)

    async def _claim_next(self, limit: int) -> tuple[FrozenDocument | None, list[Claimed]]:
        """One trip to the writer: a frozen document not yet delivered (it goes first, as the
        same bytes), else up to ``limit`` rows to freeze. Documents this process is sending are
        excluded, so a release racing with the claim cannot leave one leased and unsent."""
        doc, rows = await self._buffer.claim_next(
            limit, lease_s=self._lease_s(), exclude=sorted(self._docs_in_flight))
        fresh = [c for c in rows if c.id not in self._owned]
        if len(fresh) < len(rows):
            log.debug("claim returned %d row(s) still in flight here (lease ran out while "
                      "waiting for a PUBACK); not sent again", len(rows) - len(fresh))
            if doc is not None:
                return None, []  # part of a document in flight here: not sent twice
        self._owned.update(c.id for c in fresh)
        return doc, fresh

    async def _deliver_frozen(self, doc: FrozenDocument, rows: list[Claimed]) -> None:
        try:
            await self._send_frozen(doc, rows)
        finally:
            self._owned.difference_update(c.id for c in rows)
            await self._release_slot()

    def _batch_limit(self) -> int:
        # On a full disk every lease and ack is written into the little space the buffer's
        # reserve gave back: small batches keep each transaction (and the WAL) small.
        if self._buffer.disk_full:
            return min(self._cfg.batch_max_events, DISK_FULL_BATCH)
        return self._cfg.batch_max_events

    async def _fill(self, claimed: list[Claimed]) -> list[Claimed]:
        """Fewer than batch_max_events: wait up to batch_max_delay_ms for more."""
        loop = asyncio.get_running_loop()
        limit = self._batch_limit()
        deadline = loop.time() + self._cfg.batch_max_delay_ms / 1000
        while len(claimed) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if not self._wake.is_set():
                try:
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            claimed += await self._claim(limit - len(claimed))
        return claimed

    async def load_refusals(self) -> dict[int, int]:
        """Counts of earlier runs from the buffer's state (once; ``run`` calls it)."""
        if not self._refusals_loaded:
            for key, value in (await self._buffer.load_state(REFUSALS_STATE)).items():
                try:
                    row, n = int(key[len(REFUSALS_STATE):]), int(value)
                except ValueError:
                    log.warning("ignoring malformed refusal counter %r = %r", key, value)
                    continue
                self._refusals[row] = max(n, self._refusals.get(row, 0))
            self._refusals_loaded = True
            if self._refusals:
                log.info("%d buffered row(s) carry transient refusals from earlier runs",
                         len(self._refusals))
        return dict(self._refusals)

    async def _forget_refusals(self, ids: Sequence[int]) -> None:
        gone = [i for i in ids if self._refusals.pop(i, None) is not None]
        if gone:
            await self._buffer.commit_events(
                [], [], state={f"{REFUSALS_STATE}{i}": None for i in gone})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.load_refusals()
        async with asyncio.TaskGroup() as tg:
            while True:
                if not self._uplink.connected:
                    await self._uplink.wait_connected()
                pause = self._paused_until - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                await self._acquire_slot()
                self._wake.clear()
                doc, claimed = await self._claim_next(self._batch_limit())
                if doc is not None:
                    tg.create_task(self._deliver_frozen(doc, claimed),
                                   name=f"deliver-doc-{doc.seq}")
                    continue
                if not claimed:
                    await self._release_slot()
                    try:
                        async with asyncio.timeout(self._idle_poll_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                try:
                    if len(claimed) < self._batch_limit() and self._cfg.batch_max_delay_ms:
                        claimed = await self._fill(claimed)
                    await self._bucket.take(len(claimed))
                except BaseException:
                    self._owned.difference_update(c.id for c in claimed)
                    raise
                tg.create_task(self._deliver(claimed), name=f"deliver-{claimed[0].id}")

    async def _deliver(self, claimed: list[Claimed]) -> None:
        try:
            events = [c for c in claimed if c.kind == "event"]
            others = [c for c in claimed if c.kind != "event"]
            for c in others:
                payload = c.payload.encode()
                if len(payload) > self.max_payload:
                    log.error("%s row %d of %d bytes exceeds the maximum payload of %d bytes; "
                              "moved to dead letters", c.kind, c.id, len(payload),
                              self.max_payload)
                    await self._dead_letter([c], f"a {c.kind} of {len(payload)} bytes exceeds "
                                            f"the maximum payload of {self.max_payload} bytes")
                    continue
                await self._send([c], self._topics.get(c.kind, self._topics["alarm"]),
                                 payload, "application/json")
            if events:
                await self._send_events(events)
        finally:
            self._owned.difference_update(c.id for c in claimed)
            await self._release_slot()

    def _wire(self, document: bytes) -> bytes:
        if self._cfg.compression == "gzip":  # a transfer encoding: the signed bytes are inside
            return gzip.compress(document, compresslevel=6, mtime=0)
        return document

    def _pack(self, events: list[Claimed], created: datetime,
              ) -> list[tuple[list[Claimed], int]]:
        """Consecutive runs of ``events`` whose uncompressed documents fit ``max_payload``, each
        with its size by arithmetic: the document's head, the events' UTF-8 bytes and their
        commas, and room for the chain fields. A busy line's full batch is larger than one
        document (500 barcode events of ~470 bytes: ~235 KB against 128 KiB): packing it up
        front costs no document built only to be measured, and no warning per batch, which
        halving did. An event too large for any document stays alone, for the one split path
        to name it."""
        limit = self.max_payload
        base = len(build_document([], created)) + CHAIN_FIELDS_BYTES
        groups: list[tuple[list[Claimed], int]] = []
        group: list[Claimed] = []
        size = base
        for c in events:
            p = c.payload
            n = len(p) if p.isascii() else len(p.encode())
            if group and size + 1 + n > limit:
                groups.append((group, size))
                group, size = [], base
            size += n + (1 if group else 0)
            group.append(c)
        groups.append((group, size))
        return groups

    async def _send_events(self, events: list[Claimed]) -> None:
        """Split too large batches BEFORE freezing (by our arithmetic, with room for the chain
        fields), then freeze the document once and send its frozen bytes."""
        created = self._now()
        if self._cfg.compression == "gzip":
            # The size is the compressed one: known only by compressing (halved if too large).
            estimate = len(self._wire(build_document([c.payload for c in events], created)))
            estimate += CHAIN_FIELDS_BYTES
        else:
            groups = self._pack(events, created)
            if len(groups) > 1:
                for group, _size in groups:  # in order: each is frozen (its seq) before the next
                    await self._send_events(group)
                return
            estimate = groups[0][1]
        if estimate > self.max_payload:
            what = "a single event" if len(events) == 1 else f"{len(events)} events"
            await self._split(events, f"{what} of about {estimate} bytes exceeds the maximum "
                              f"payload of {self.max_payload} bytes")
            return
        payloads = [c.payload for c in events]
        gateway = self._gateway

        def build(link: ChainLink) -> bytes:
            return document_bytes(payloads, created, gateway=gateway, link=link)

        sign = self._signer.sign if self._signer is not None else None
        doc = await self._buffer.freeze([c.id for c in events], build, sign)
        self.head_changed.set()
        await self._send_frozen(doc, events)

    async def _send_frozen(self, doc: FrozenDocument, rows: list[Claimed]) -> None:
        self._docs_in_flight.add(doc.id)
        try:
            await self._send_frozen_once(doc, rows)
        finally:
            self._docs_in_flight.discard(doc.id)

    async def _send_frozen_once(self, doc: FrozenDocument, rows: list[Claimed]) -> None:
        payload = self._wire(doc.payload)
        if len(payload) > self.max_payload:  # the gaps it carries made it too large
            await self._split(rows, f"document seq {doc.seq} of {len(payload)} bytes exceeds "
                              f"the maximum payload of {self.max_payload} bytes", frozen=doc)
            return
        props: list[tuple[str, str]] = []
        if self._cfg.compression == "gzip":
            props.append((CONTENT_ENCODING, "gzip"))
        if doc.jws is not None:
            if self._cfg.protocol == "3.1.1":
                # No user properties in MQTT 3.1.1: the signature goes first on a sibling topic.
                if not await self._send_signature(doc, rows):
                    return
            else:
                props.append((JWS_PROPERTY, doc.jws))
        await self._send(rows, self._topics["event"], payload, CONTENT_TYPE,
                         gzipped=self._cfg.compression == "gzip", props=props, frozen=doc)

    async def _send_signature(self, doc: FrozenDocument, rows: list[Claimed]) -> bool:
        body = json.dumps({"chainId": doc.chain_id, "seq": doc.seq,
                           "sha256": f"sha-256:{doc.sha256}", "jws": doc.jws},
                          separators=(",", ":")).encode()
        try:
            await self._uplink.publish(self._topics["signatures"], body, qos=1,
                                       content_type="application/json",
                                       timeout_s=self._cfg.publish_timeout_s)
        except (PublishTimeout, UplinkNotConnected) as exc:
            await self._release([c.id for c in rows], error=str(exc) or type(exc).__name__)
            return False
        return True

    async def _split(self, rows: list[Claimed], why: str,
                     frozen: FrozenDocument | None = None) -> None:
        """The one split path: a batch of events too large to go (by our arithmetic, paho's
        or the broker's 0x95) goes again as two halves, each of which may split again; a single
        message, or one that is not an event batch, can never go: dead letters, with ``why``.
        A frozen document that is split is superseded: its seq is a gap the next one explains."""
        ids = [c.id for c in rows]
        if len(rows) > 1 and all(c.kind == "event" for c in rows):
            log.warning("%s; splitting rows %d..%d", why, ids[0], ids[-1])
            if frozen is not None:
                await self._buffer.unfreeze(ids, why)
            half = len(rows) // 2
            await self._send_events(rows[:half])
            await self._send_events(rows[half:])
            return
        log.error("%s; row(s) %s moved to dead letters", why, ids)
        await self._dead_letter(rows, why)

    async def _send(self, rows: list[Claimed], topic: str, payload: bytes, ctype: str,
                    *, gzipped: bool = False, props: Sequence[tuple[str, str]] | None = None,
                    frozen: FrozenDocument | None = None) -> None:
        ids = [c.id for c in rows]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await self._uplink.publish(
                topic, payload, qos=1, content_type=ctype, timeout_s=self._cfg.publish_timeout_s,
                user_properties=(props if props is not None else
                                 [(CONTENT_ENCODING, "gzip")] if gzipped else ()),
            )
        except (PublishTimeout, UplinkNotConnected) as exc:
            # Not confirmed: the rows stay and go again; a duplicate carries the same eventIDs.
            await self._release(ids, error=str(exc) or type(exc).__name__)
            return
        except PacketTooLargeError as exc:
            # The broker's Maximum Packet Size shrank after the payload was built (a reconnect,
            # a failover): not sent. Split events again; a single message can never go.
            await self._split(rows, str(exc), frozen)
            return
        if result.ok:
            await self._buffer.ack(ids, document=None if frozen is None else frozen.id)
            self._publish_ms.append((loop.time() - started) * 1000)
            self._event_ms.append(max(0.0, self._clock() - rows[0].created_at_s) * 1000)
            self._bucket.recover()
            self.delivered_messages += 1
            self.delivered_events += len(rows)
            await self._forget_refusals(ids)
            return
        await self._refused(rows, topic, result, frozen)

    async def _refused(self, rows: list[Claimed], topic: str, result: PublishResult,
                       frozen: FrozenDocument | None = None) -> None:
        ids = [c.id for c in rows]
        code = result.reason_code
        self.refused_messages += 1
        key = f"0x{code:02X} {result.reason}"
        self.refused_by_reason[key] = self.refused_by_reason.get(key, 0) + 1
        what = f"reason code {key}"
        self.last_refusal = what
        span = f"rows {ids[0]}..{ids[-1]}" if len(ids) > 1 else f"row {ids[0]}"
        loop = asyncio.get_running_loop()
        if code == PACKET_TOO_LARGE:
            await self._split(rows, f"broker refused {span} on {topic}: {what}", frozen)
            return
        if code in PERMANENT_REFUSALS:
            log.error("broker refused %s on %s: %s; moved to dead letters", span, topic, what)
            await self._dead_letter(rows, what)
            return
        if code == QUOTA_EXCEEDED:
            rate = self._bucket.shrink()
            self._paused_until = max(self._paused_until, loop.time() + self._cfg.quota_pause_s)
            log.warning("broker refused %s on %s: %s; pausing %g s, drain rate now %.0f "
                        "events/s", span, topic, what, self._cfg.quota_pause_s, rate)
            await self._release(ids, error=what)
            return
        attempts = 1 + max(self._refusals.get(i, 0) for i in ids)
        if attempts >= self._cfg.max_attempts:
            log.error("broker refused %s on %s: %s, %d times; moved to dead letters", span,
                      topic, what, attempts)
            await self._dead_letter(rows, f"{what} (after {attempts} attempts)")
            return
        for i in ids:
            self._refusals[i] = attempts
        # Durable before the row is released: a crash after this cannot forget the attempt.
        await self._buffer.commit_events(
            [], [], state={f"{REFUSALS_STATE}{i}": str(attempts) for i in ids})
        cap = min(self._cfg.retry_max_s, self._cfg.retry_min_s * 2 ** (attempts - 1))
        delay = self._rng.uniform(0, cap)
        log.warning("broker refused %s on %s: %s (attempt %d of %d); retrying in %.1f s", span,
                    topic, what, attempts, self._cfg.max_attempts, delay)
        await self._release(ids, error=REFUSED_PREFIX + what)
        self._paused_until = max(self._paused_until, loop.time() + delay)

    async def _dead_letter(self, rows: list[Claimed], reason: str) -> None:
        ids = [c.id for c in rows]
        # At the dead-letter cap with policy keep, some rows stay in the outbox (held back,
        # retried later): only the moved ones count as dead-lettered.
        moved = await self._buffer.dead_letter(ids, reason)
        self.dead_lettered += moved
        if moved < len(ids):
            log.warning("dead letters are full (buffer.dead_letter_policy keep): %d of row(s) %s "
                        "stay in the outbox and are retried after a pause", len(ids) - moved,
                        ids)
        await self._forget_refusals(ids)
