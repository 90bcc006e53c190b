"""Shared fixtures: real Mosquitto brokers (see tests/support/mosquitto.py), and the
leaked-task check every async test runs under."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.support.leaks import leaked_tasks
from tests.support.mosquitto import Mosquitto, find_mosquitto

MOSQUITTO_MISSING = (
    "mosquitto broker binary not found (MOSQUITTO_BIN, PATH, /usr/sbin) "
    "(apt-get install mosquitto); the MQTT tests need a real broker"
)


def _require_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip(MOSQUITTO_MISSING)


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """``make(**options)`` starts a broker with those options; all are closed after the test."""
    _require_mosquitto()
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = Mosquitto(**options)
        brokers.append(broker)
        try:
            broker.start()
        except BaseException:
            broker.close()
            raise
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A fresh broker for this test (restart, kill and pause freely)."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def shared_mosquitto() -> Iterator[Mosquitto]:
    """One broker for the whole session, for tests that do not stop or reconfigure it."""
    _require_mosquitto()
    with Mosquitto() as broker:
        yield broker


LEAK_GRACE_S = 1.0  # tasks finishing their last await after the test body returned are fine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.insert(0, "no_leaked_tasks")


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail an async test that leaves a task running (a fire-and-forget the code forgot).

    Set up first, so torn down last: the test's own fixtures have stopped their tasks by then.
    pytest-asyncio would cancel a leftover silently when it closes the loop; here it is a
    failure naming the task and where it was created.
    """
    yield
    if names := await leaked_tasks(LEAK_GRACE_S):
        pytest.fail(f"the test left {len(names)} task(s) running: {', '.join(names)}")
