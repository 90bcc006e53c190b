"""The reader-clock model (agent/readers/readerclock.py): offset, stamping, steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.readers.readerclock import ReaderClock

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
OFFSET_S = 42.0  # the reader's clock runs 42 s ahead of the gateway's


def us(gateway: datetime, offset_s: float = OFFSET_S) -> int:
    """The reader's timestamp for an instant of the gateway's timeline."""
    return round((gateway.timestamp() + offset_s) * 1e6)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_offset_is_the_fastest_message_and_reads_land_on_the_gateways_timeline() -> None:
    clock = ReaderClock(hold_s=1.0)
    # Three reports, read at 0, 1, 2 s, arriving 30, 5 and 80 ms later.
    for read_s, delay_s in ((0.0, 0.030), (1.0, 0.005), (2.0, 0.080)):
        assert clock.observe(us(at(read_s)), at(read_s + delay_s)) is None
    assert clock.offset_s is not None
    assert abs(clock.offset_s - (OFFSET_S - 0.005)) < 1e-6
    # A read made at 3.000 s arriving at 3.200 s: stamped 3.005 s (the fastest delay remains).
    stamped = clock.stamp(us(at(3.0)), at(3.2))
    assert abs((stamped - at(3.005)).total_seconds()) < 1e-6
    assert clock.steps == 0


def test_a_stamp_is_never_after_arrival_nor_earlier_than_the_hold() -> None:
    clock = ReaderClock(hold_s=1.0)
    clock.observe(us(at(0.0)), at(0.0))
    assert clock.stamp(us(at(10.0)), at(5.0)) == at(5.0)  # "from the future": arrival
    assert clock.stamp(us(at(0.0)), at(5.0)) == at(4.0)  # older than the hold: clamped
    assert clock.stamp(None, at(5.0)) == at(5.0)
    assert ReaderClock(1.0).stamp(us(at(1.0)), at(1.0)) == at(1.0)  # offset unknown


def test_a_forward_step_rebaselines_at_once_and_reads_never_jump() -> None:
    clock = ReaderClock(hold_s=1.0)
    clock.observe(us(at(0.0)), at(0.0))
    step = clock.observe(us(at(1.0), OFFSET_S + 3600), at(1.0))  # NTP on the reader: +1 h
    assert step is not None
    assert step.step_s == 3600.0
    assert clock.steps == 1
    stamped = clock.stamp(us(at(2.0), OFFSET_S + 3600), at(2.0))
    assert stamped == at(2.0)


def test_a_backward_step_is_taken_after_three_samples_over_two_seconds() -> None:
    clock = ReaderClock(hold_s=1.0)
    clock.observe(us(at(0.0)), at(0.0))
    back = OFFSET_S - 600  # the reader's clock is set back 10 minutes
    assert clock.observe(us(at(1.0), back), at(1.0)) is None
    assert clock.observe(us(at(2.0), back), at(2.0)) is None
    # Meanwhile reads are clamped to the hold: never 10 minutes in the past.
    assert clock.stamp(us(at(2.0), back), at(2.0)) == at(1.0)
    step = clock.observe(us(at(3.0), back), at(3.0))
    assert step is not None
    assert step.step_s == -600.0
    assert clock.stamp(us(at(4.0), back), at(4.0)) == at(4.0)


def test_a_late_burst_after_a_stall_is_not_a_step() -> None:
    clock = ReaderClock(hold_s=1.0)
    clock.observe(us(at(0.0)), at(0.0))
    # The network stalls 5 s; the buffered reports of 1..4 s all arrive at 6.0 s.
    for read_s in (1.0, 2.0, 3.0, 4.0):
        assert clock.observe(us(at(read_s)), at(6.0)) is None
    clock.observe(us(at(6.5)), at(6.5))  # back to normal
    assert clock.steps == 0
    assert abs((clock.offset_s or 0) - OFFSET_S) < 1e-6
    # The late reads were stamped no earlier than the hold allows.
    assert clock.stamp(us(at(1.0)), at(6.0)) == at(5.0)


def test_hold_follows_the_report_settings() -> None:
    assert ReaderClock.hold_for(1, None) == 1.0
    assert ReaderClock.hold_for(1, 250) == 0.75
    assert ReaderClock.hold_for(50, None) == 10.0
