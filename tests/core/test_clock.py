"""Clock synchronisation state: cached, overridable, and conservative when unknown."""

from __future__ import annotations

import pytest

from agent import clock


def test_kernel_answer_is_a_bool_here() -> None:
    assert clock.kernel_clock_synchronised() in (True, False)


def test_override_wins() -> None:
    assert clock.SyncState(override=False).synced() is False
    assert clock.SyncState(override=True).synced() is True


def test_cached_for_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([True, False])
    monkeypatch.setattr(clock, "kernel_clock_synchronised", lambda: next(answers))
    now = [0.0]
    state = clock.SyncState(ttl_s=5, monotonic=lambda: now[0])
    assert state.synced() is True
    now[0] = 4.9
    assert state.synced() is True  # still cached
    now[0] = 5.0
    assert state.synced() is False


def test_unknown_is_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "kernel_clock_synchronised", lambda: None)
    monkeypatch.setattr(clock, "TIMESYNCD_FLAG", "/nonexistent/synchronized")
    assert clock.SyncState().synced() is False
