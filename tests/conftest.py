"""Shared fixtures: real Mosquitto brokers (see tests/mosquitto.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.mosquitto import Mosquitto, find_mosquitto

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
