"""The templated event hash (issue 12): a shape's pre-hash string rendered once, later events
fill in their slots. Whatever the event, the result must be the generic pre-hash string: the
reference examples, the agent's own barcode and tag events with hostile values, and shapes
whose slot values would change the rendering elsewhere (these go the generic way)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model import BarcodeRead, TagRead
from agent.pipeline import eventhash
from agent.pipeline.barcode_events import barcode_body, barcode_event, barcode_json
from agent.pipeline.epcis import HASH_CONTEXT, every_read_event, iso_ms
from agent.pipeline.eventhash import EventTemplates, event_hash, prehash_string
from agent.pipeline.mapping import EventMapping
from tests.pipeline.test_eventhash import REFERENCE_EXAMPLES

T0 = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)


def _unhashed(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "eventID"}


def _generic_json(event: dict[str, Any], context: dict[str, str]) -> str:
    eid = event_hash(event, context)
    return json.dumps({"type": event["type"], "eventID": eid,
                       **{k: v for k, v in event.items() if k != "type"}},
                      separators=(",", ":"))


def _same_as_generic(hashes: EventTemplates, events: list[dict[str, Any]],
                     context: dict[str, str] | None = None) -> None:
    ctx = context or HASH_CONTEXT
    for event in events:
        assert hashes.prehash_string(event) == prehash_string(event, ctx)
        assert hashes.finish_json(event) == _generic_json(event, ctx)  # the exact text


@pytest.mark.parametrize(("event", "context", "prehash", "digest"), REFERENCE_EXAMPLES)
def test_reference_examples_templated_equal_generic(
    event: dict[str, Any], context: dict[str, str], prehash: str, digest: str,
) -> None:
    hashes = EventTemplates(context)
    events = [event, copy.deepcopy(event), copy.deepcopy(event)]  # seen, made, used
    for e in events:
        assert hashes.prehash_string(e) == prehash
        assert hashes.finish_json(e) == _generic_json(e, context)
    moved = copy.deepcopy(event)
    if isinstance(moved.get("eventTime"), str):
        moved["eventTime"] = "2031-01-02T03:04:05.678Z"
    _same_as_generic(hashes, [moved, moved], context)


def _scan(text: bytes, i: int, symbology: str | None = None) -> BarcodeRead:
    return BarcodeRead(reader="scan-1", data=text, read_at=T0 + timedelta(milliseconds=i),
                       clock_synced=True, symbology=symbology)


def test_a_busy_barcode_line_is_templated_and_equal() -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping(biz_step="receiving", read_point="urn:epc:id:sgln:4012345.00011.987")
    events = [_unhashed(barcode_event(_scan(b"BENCH%012d" % i + b"X" * 45, i), timezone="+01:00",
                                      mapping=mapping, source_id=f"g1:{i}")) for i in range(300)]
    _same_as_generic(hashes, events)
    assert hashes.templated >= 2 * 298  # the first of a shape is generic, the second makes it


def test_a_templated_json_text_is_what_json_dumps_writes_for_any_text() -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping()
    texts = [b"plain", "caf\u00e9 \u2603 \U0001f600".encode(), b'quote " and \\ back',
             b"\x1dGS\x1d", b"tab\there", b"\x7f\x00"]
    events = [_unhashed(barcode_event(_scan(t, i), timezone="+00:00", mapping=mapping,
                                      source_id=f"g:{i}")) for i, t in enumerate(texts * 2)]
    _same_as_generic(hashes, events)
    assert hashes.templated > 0


HOSTILE = [
    b"0012", b"1.50", b"1_000", b"inf", b"NaN", b" padded ", b"\x1dGS-first",
    b"\x1d0109506000134352103ABC\x1d17250101", b"010950600013435221SERIAL1", b"receiving",
    b"tea:readId", b"cbvmda:lotNumber", b"urn:epcglobal:cbv:bizstep:shipping",
    b"https://ref.gs1.org/cbv/BizStep-shipping", b"https://id.gs1.org/01/09506000134352",
    b"2026-12-07T08:00:00+01:00", b"2026-12-07T08:00:00.000Z", "\ue000".encode(),
    "\ue0011\ue001".encode(), "\u0661\u0662".encode(), "\uff11\uff12".encode(), b"", b"x=y",
    b"a\x00b", b"departing",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_barcode_text_hashes_as_the_generic_rules_say(text: bytes) -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping(biz_step="receiving", disposition="in_progress")
    plain = [_unhashed(barcode_event(_scan(b"PLAIN%d" % i, i), timezone="+00:00",
                                     mapping=mapping, source_id=f"g:{i}")) for i in range(3)]
    odd = [_unhashed(barcode_event(_scan(text, 10 + i), timezone="+00:00", mapping=mapping,
                                   source_id=f"g:{10 + i}")) for i in range(3)]
    _same_as_generic(hashes, plain + odd + plain)


def test_a_constant_with_the_placeholder_character_is_never_templated() -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping(read_point="urn:x:\ue000")
    events = [_unhashed(barcode_event(_scan(b"A%d" % i, i), timezone="+00:00", mapping=mapping,
                                      source_id=f"g:{i}")) for i in range(5)]
    _same_as_generic(hashes, events)
    assert hashes.templated == 0


def _tag(epc: str, i: int, rssi: float | None, antenna: int | None,
         extra: tuple[tuple[str, float | int | str], ...] = ()) -> TagRead:
    return TagRead(reader="door-1", epc=epc, read_at=T0 + timedelta(milliseconds=i),
                   antenna=antenna, rssi_dbm=rssi, extra=extra)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    epcs=st.lists(st.sampled_from([
        "3034257BF400B7800004CB2F", "3074257BF7194E4000001A85", "E2801160600002084F8B2B6C",
        "00", "3034257BF400B7800004CB2", "ABCDEF", "",
    ]), min_size=2, max_size=6),
    rssis=st.lists(st.one_of(st.none(), st.floats(-90, -20, allow_nan=False).map(
        lambda f: round(f, 1)), st.sampled_from([-62.0, -70.0, 0.0])), min_size=6, max_size=6),
    antenna=st.one_of(st.none(), st.integers(1, 4)),
    offset=st.one_of(st.none(), st.floats(-4000, 4000, allow_nan=False)),
)
def test_tag_events_templated_equal_generic(
    epcs: list[str], rssis: list[float | None], antenna: int | None, offset: float | None,
) -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping(biz_step="shipping", read_point="urn:epc:id:sgln:4012345.00011.987")
    extra: tuple[tuple[str, float | int | str], ...] = (
        () if offset is None else (("tea:readerClockOffsetS", offset),))
    events = []
    for i, epc in enumerate(epcs * 2):
        read = _tag(epc, i, rssis[i % len(rssis)], antenna, extra)
        events.append(_unhashed(every_read_event(read, timezone="+00:00", mapping=mapping,
                                                 source_id=f"gen:{i}")))
    _same_as_generic(hashes, events)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=5),
       biz_step=st.sampled_from([None, "receiving", "urn:epcglobal:cbv:bizstep:shipping"]),
       action=st.sampled_from(["OBSERVE", "ADD"]))
def test_any_barcode_text_templated_equal_generic(
    texts: list[str], biz_step: str | None, action: str,
) -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping(biz_step=biz_step, action=action)
    events = []
    for i, text in enumerate(["ANCHOR", "ANCHOR", *texts, "ANCHOR", *texts]):
        read = _scan(text.encode("utf-8", "surrogatepass"), i)
        events.append(_unhashed(barcode_event(read, timezone="+00:00", mapping=mapping,
                                              source_id=f"g:{i}")))
    _same_as_generic(hashes, events)


def test_a_template_that_disagrees_is_caught_by_the_recheck(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventhash, "_RECHECK_EVERY", 4)
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping()
    events = [_unhashed(barcode_event(_scan(b"S%d" % i, i), timezone="+00:00", mapping=mapping,
                                      source_id=f"g:{i}")) for i in range(12)]
    for e in events[:2]:
        hashes.prehash_string(e)
    (key,) = [k for k, v in hashes._templates.items() if v is not None]
    good = hashes._templates[key]
    assert good is not None
    hashes._templates[key] = dataclasses.replace(good, parts=("WRONG", *good.parts[1:]))
    with caplog.at_level(logging.ERROR):
        results = [hashes.prehash_string(e) for e in events[2:]]
    assert "disagrees with the generic pre-hash" in caplog.text
    assert hashes._templates[key] is None  # that shape goes the generic way from now on
    assert results[-1] == prehash_string(events[-1], HASH_CONTEXT)


# -- finish_json_keyed: a plain scan's event filled in by its shape key (barcode_json) -------


def _body_json(read: BarcodeRead, mapping: EventMapping, source_id: str,
               step_s: float = 0.0) -> str:
    return _generic_json(barcode_body(read, timezone="+00:00", mapping=mapping,
                                      source_id=source_id, step_s=step_s), HASH_CONTEXT)


@pytest.mark.parametrize("symbology", [None, "]C0", "]Q1"])
@pytest.mark.parametrize("step_s", [0.0, 1.25])
def test_a_plain_scan_s_json_is_the_generic_text(symbology: str | None, step_s: float) -> None:
    for action in ("OBSERVE", "ADD"):
        mapping = EventMapping(biz_step="receiving", action=action,
                               read_point="urn:epc:id:sgln:4012345.00011.987")
        texts = [b"PLAIN%d" % i for i in range(4)] + HOSTILE + [b"PLAIN-END"] * 3
        for i, text in enumerate(texts):
            read = dataclasses.replace(_scan(text, i, symbology), clock_synced=i % 2 == 0)
            got = barcode_json(read, timezone="+00:00", mapping=mapping, source_id=f"7:{i}",
                               step_s=step_s)
            assert got == _body_json(read, mapping, f"7:{i}", step_s), text


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=6),
       ids=st.lists(st.integers(0, 10**12), min_size=6, max_size=6))
def test_any_plain_scan_s_json_is_the_generic_text(texts: list[str], ids: list[int]) -> None:
    mapping = EventMapping(disposition="in_progress")
    for i, text in enumerate(["ANCHOR", "ANCHOR", *texts, *texts]):
        read = _scan(text.encode("utf-8", "surrogatepass"), i, "]C0")
        source_id = f"{i}:{ids[i % len(ids)]}"
        got = barcode_json(read, timezone="+00:00", mapping=mapping, source_id=source_id)
        assert got == _body_json(read, mapping, source_id)


def test_a_shape_key_is_learnt_then_used_without_building_the_event() -> None:
    hashes = EventTemplates(HASH_CONTEXT)
    mapping = EventMapping()
    built: list[int] = []

    def json_of(i: int) -> str:
        read = _scan(b"K%d" % i, i)
        body = barcode_body(read, timezone="+00:00", mapping=mapping, source_id=f"1:{i}")
        slots = {k: body[k] if k == "eventTime" else body["tea:reads"][0][k]
                 for k in ("eventTime", "tea:readTime", "tea:readId", "tea:barcode")}

        def build() -> dict[str, Any]:
            built.append(i)
            return body

        return hashes.finish_json_keyed("k", slots, build)

    texts = [json_of(i) for i in range(10)]
    assert built == [0, 1]  # seen, template made and key learnt; then filled in
    assert texts == [_body_json(_scan(b"K%d" % i, i), mapping, f"1:{i}") for i in range(10)]


def test_a_shape_key_that_lies_is_caught_by_the_recheck(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventhash, "_RECHECK_EVERY", 4)
    hashes = EventTemplates(HASH_CONTEXT)

    def event(i: int, reader: str) -> dict[str, Any]:
        read = dataclasses.replace(_scan(b"L%d" % i, i), reader=reader)
        return barcode_body(read, timezone="+00:00", mapping=EventMapping(), source_id=f"1:{i}")

    def json_of(i: int, reader: str) -> str:
        body = event(i, reader)
        slots = {"eventTime": body["eventTime"], **{
            k: body["tea:reads"][0][k] for k in ("tea:readTime", "tea:readId", "tea:barcode")}}
        return hashes.finish_json_keyed("same key", slots, lambda: body)

    for i in range(2):
        json_of(i, "a")
    with caplog.at_level(logging.ERROR):
        out = [json_of(i, "b") for i in range(2, 12)]  # a caller's bug: one key, two shapes
    assert "the event of a shape key disagrees" in caplog.text
    assert hashes._keyed["same key"] is None  # that key goes the generic way from now on
    assert out[-1] == _generic_json(event(11, "b"), HASH_CONTEXT)


def test_iso_ms_writes_utc_milliseconds_across_seconds_and_zones() -> None:
    def reference(dt: datetime) -> str:
        dt = dt.astimezone(UTC)
        return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
                f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")
    for step_us in (1, 999, 1000, 333_333, 999_999, 86_400_000_001):
        for n in range(50):
            dt = T0 + timedelta(microseconds=step_us * n)
            assert iso_ms(dt) == reference(dt)
    for dt in (datetime(5, 1, 2, 3, 4, 5, 6_789, tzinfo=UTC),
               datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
               datetime(2027, 1, 1, 1, 0, 0, 500, tzinfo=timezone(timedelta(hours=1)))):
        assert iso_ms(dt) == reference(dt)
