"""Presence state machine, pure, with an injected clock (agent/pipeline/presence.py)."""

from __future__ import annotations

from agent.pipeline.epcis import ARRIVED, DEPARTED, PRESENT
from agent.pipeline.mapping import ReaderPlan
from agent.pipeline.presence import PresenceEngine, Transition
from tests.support.pipeline_helpers import DOOR_A, DOOR_B, T0, dock_plan, read, sgtin_hex


def engine(plan: ReaderPlan) -> PresenceEngine:
    return PresenceEngine(lambda name: plan)


def run(eng: PresenceEngine, start: float, end: float, epcs: list[str], *, every_s: float = 0.1,
        antenna: int = 1, rssi: float = -55.0, tick_s: float = 0.5) -> list[Transition]:
    """Each tag read every ``every_s`` from start to end, the engine advanced every tick_s."""
    out: list[Transition] = []
    t = start
    next_tick = start
    while t < end:
        for e in epcs:
            eng.fold(read(t, e, antenna=antenna, rssi=rssi))
        if t >= next_tick:
            out += eng.advance(t)
            next_tick = t + tick_s
        t += every_s
    return out


def quiet(eng: PresenceEngine, start: float, end: float, tick_s: float = 0.5) -> list[Transition]:
    out: list[Transition] = []
    t = start
    while t <= end:
        out += eng.advance(t)
        t += tick_s
    return out


def epcs_of(tr: Transition) -> set[str]:
    return {t.epc for t in tr.tags}


PALLET = [sgtin_hex(n) for n in range(1, 21)]


def test_pallet_arrives_as_one_event_with_folded_reads() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=10.0))
    out = run(eng, T0, T0 + 3, PALLET)
    assert [tr.kind for tr in out] == [ARRIVED]
    (arr,) = out
    assert epcs_of(arr) == set(PALLET)
    assert arr.mapping.read_point == DOOR_A
    tag = next(t for t in arr.tags if t.epc == PALLET[0])
    assert tag.first_seen == T0
    assert tag.count >= 10  # ~1 s of reads folded at 10 reads/s
    assert tag.peak_rssi == -55.0
    assert tag.clock_synced


def test_an_hour_at_the_door_gives_no_new_events_then_departure() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=10.0))
    out = run(eng, T0, T0 + 3600, PALLET[:5], every_s=0.5, tick_s=1.0)  # 36,000 raw reads
    assert [tr.kind for tr in out] == [ARRIVED]
    last_read = T0 + 3600 - 0.5
    out = quiet(eng, T0 + 3600, T0 + 3600 + 5)
    assert out == []  # absent for 5 s < depart_after_s
    out = quiet(eng, T0 + 3605.5, T0 + 3630)
    assert [tr.kind for tr in out] == [DEPARTED]
    (dep,) = out
    assert epcs_of(dep) == set(PALLET[:5])
    assert max(t.last_seen for t in dep.tags) >= last_read - 1e-3
    assert eng.present() == {"dock|" + DOOR_A: set()}


def test_departure_is_detected_by_the_tick_alone() -> None:
    eng = engine(dock_plan(window_s=0.5, depart_after_s=5.0))
    run(eng, T0, T0 + 1, PALLET[:2])
    (dep,) = quiet(eng, T0 + 1, T0 + 8)
    assert dep.kind == DEPARTED
    assert dep.at <= T0 + 1 + 5 + 0.5 + 0.25 + 0.5 + 1e-6  # after + window + scan + tick


def test_re_arrival_after_departure_is_a_new_arrival() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0))
    kinds = [tr.kind for tr in run(eng, T0, T0 + 2, PALLET[:3])]
    kinds += [tr.kind for tr in quiet(eng, T0 + 2, T0 + 10)]
    kinds += [tr.kind for tr in run(eng, T0 + 20, T0 + 22, PALLET[:3])]
    assert kinds == [ARRIVED, DEPARTED, ARRIVED]


def test_a_short_gap_is_not_a_departure() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0))
    out = run(eng, T0, T0 + 2, PALLET[:3])
    out += quiet(eng, T0 + 2, T0 + 6)  # 4 s of silence
    out += run(eng, T0 + 6, T0 + 8, PALLET[:3])
    assert [tr.kind for tr in out] == [ARRIVED]


def test_read_again_while_departing_cancels_the_departure() -> None:
    eng = engine(dock_plan(window_s=2.0, depart_after_s=5.0))
    assert [tr.kind for tr in run(eng, T0, T0 + 3, PALLET[:1])] == [ARRIVED]
    assert quiet(eng, T0 + 3, T0 + 8.5) == []  # departing (since ~T0+8), batch still open
    out = run(eng, T0 + 8.6, T0 + 9, PALLET[:1])
    out += quiet(eng, T0 + 9, T0 + 13)
    assert out == []
    assert [tr.kind for tr in quiet(eng, T0 + 13, T0 + 20)] == [DEPARTED]


def test_two_read_points_on_one_reader() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0))
    inbound, outbound = PALLET[:4], PALLET[10:13]
    out = run(eng, T0, T0 + 2, inbound, antenna=1)
    out += run(eng, T0, T0 + 2, outbound, antenna=3)
    # antenna 2 covers the same door as 1: no new arrival, same presence
    out += run(eng, T0 + 2, T0 + 3, inbound, antenna=2)
    arrivals = {tr.mapping.read_point: tr for tr in out if tr.kind == ARRIVED}
    assert len(out) == 2
    assert epcs_of(arrivals[DOOR_A]) == set(inbound)
    assert arrivals[DOOR_A].mapping.biz_step == "receiving"
    assert epcs_of(arrivals[DOOR_B]) == set(outbound)
    assert arrivals[DOOR_B].mapping.biz_step == "shipping"
    assert {a for t in arrivals[DOOR_B].tags for a in [t.antenna]} == {3}
    # the same tag at both doors is present at both
    out = run(eng, T0 + 3, T0 + 5, inbound[:1], antenna=4)
    assert [(tr.kind, tr.mapping.read_point) for tr in out] == [(ARRIVED, DOOR_B)]


def test_min_reads_suppresses_strays() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0, min_reads=3))
    stray, real = sgtin_hex(900), sgtin_hex(901)
    out: list[Transition] = []
    # the stray is read twice per window, a second apart each time: never qualifies
    for k in range(10):
        t = T0 + 2 * k
        eng.fold(read(t, stray))
        eng.fold(read(t + 0.9, stray))
        out += eng.advance(t + 1.5)
    out += run(eng, T0 + 30, T0 + 32, [real], every_s=0.3)
    assert [(tr.kind, epcs_of(tr)) for tr in out] == [(ARRIVED, {real})]
    assert eng.strays >= 9
    assert stray not in eng.present()["dock|" + DOOR_A]


def test_min_rssi_suppresses_weak_reads() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0, min_rssi_dbm=-70))
    out = run(eng, T0, T0 + 3, [sgtin_hex(1)], rssi=-75.0)
    assert out == []
    assert eng.ignored_weak > 0
    out = run(eng, T0 + 3, T0 + 5, [sgtin_hex(1)], rssi=-60.0)
    assert [tr.kind for tr in out] == [ARRIVED]
    # weak reads do not keep a tag present either
    out = run(eng, T0 + 5, T0 + 20, [sgtin_hex(1)], rssi=-80.0)
    assert [tr.kind for tr in out] == [DEPARTED]


def test_heartbeat_while_present_is_optional() -> None:
    eng = engine(dock_plan(window_s=1.0, depart_after_s=5.0, heartbeat_s=600))
    out = run(eng, T0, T0 + 1900, PALLET[:2], every_s=1.0, tick_s=1.0)
    kinds = [tr.kind for tr in out]
    assert kinds == [ARRIVED, PRESENT, PRESENT, PRESENT]
    assert all(epcs_of(tr) == set(PALLET[:2]) for tr in out)
    out = quiet(eng, T0 + 1900, T0 + 2600)
    assert [tr.kind for tr in out] == [DEPARTED]  # no heartbeat once nothing is present


def test_unsynced_clock_is_reported_per_tag() -> None:
    eng = engine(dock_plan(window_s=1.0))
    eng.fold(read(T0, sgtin_hex(1), synced=False))
    eng.fold(read(T0, sgtin_hex(2)))
    (arr,) = eng.advance(T0 + 1)
    synced = {t.epc: t.clock_synced for t in arr.tags}
    assert synced == {sgtin_hex(1): False, sgtin_hex(2): True}


def test_state_round_trip_keeps_presence() -> None:
    plan = dock_plan(window_s=1.0, depart_after_s=5.0)
    eng = engine(plan)
    state: dict[str, str] = {}

    def commit(e: PresenceEngine) -> None:
        for k, v in e.take_state().items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v

    out = run(eng, T0, T0 + 0.5, PALLET[:3])  # arriving, batch still open
    commit(eng)
    assert out == []
    eng2 = engine(plan)
    eng2.restore(state)
    out = run(eng2, T0 + 0.5, T0 + 3, PALLET[:3])
    commit(eng2)
    assert [tr.kind for tr in out] == [ARRIVED]
    eng3 = engine(plan)
    eng3.restore(state)
    out = run(eng3, T0 + 3, T0 + 4, PALLET[:3]) + quiet(eng3, T0 + 4, T0 + 12)
    commit(eng3)
    assert [tr.kind for tr in out] == [DEPARTED]
    assert state == {}
