"""The names the system shows for the agent's threads (agent/osnames.py)."""

from __future__ import annotations

import threading

from agent.osnames import COMM_MAX, name_thread, thread_names


def test_a_thread_is_shown_by_its_name_cut_to_the_kernels_limit() -> None:
    named = threading.Event()
    done = threading.Event()
    results: list[bool] = []

    def body() -> None:
        results.append(name_thread("a-rather-long-thread-name"))
        named.set()
        done.wait(5)

    t = threading.Thread(target=body)
    t.start()
    try:
        assert named.wait(5)
        assert results == [True]
        assert t.native_id is not None
        assert thread_names()[t.native_id] == "a-rather-long-thread-name"[:COMM_MAX]
        assert name_thread("other", t)  # another thread's name, from this one
        assert thread_names()[t.native_id] == "other"
    finally:
        done.set()
        t.join(5)


def test_a_thread_not_started_is_left_alone() -> None:
    assert name_thread("never", threading.Thread(target=lambda: None)) is False
    assert thread_names(2**31) == {}  # no such process
