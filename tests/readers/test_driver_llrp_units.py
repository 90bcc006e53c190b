"""LLRP driver pieces without a reader: power mapping and configuration."""

from __future__ import annotations

import pytest

from agent.config import LlrpConfig
from agent.readers.drivers.llrp import power_index

# A reader's TransmitPowerTable: (index, dBm * 100), 10.00 .. 31.50 dBm in 0.25 dB steps.
TABLE = tuple((i + 1, 1000 + 25 * i) for i in range(87))


@pytest.mark.parametrize(("asked", "index", "dbm"), [
    (30.0, 81, 30.0),
    (27.6, 71, 27.5),  # the highest entry not above the request
    (40.0, 87, 31.5),
    (5.0, 1, 10.0),  # below the table: its lowest entry
])
def test_power_maps_to_the_table(asked: float, index: int, dbm: float) -> None:
    assert power_index(TABLE, asked) == (index, dbm)


def test_no_table_no_power() -> None:
    assert power_index((), 30) is None


def test_three_lines_of_yaml_are_enough() -> None:
    cfg = LlrpConfig.model_validate({"name": "dock-fx", "driver": "llrp", "host": "10.0.0.7"})
    assert cfg.link_spec == "socket://10.0.0.7:5084"
    assert cfg.antennas == [1]
    assert cfg.link_baudrate == 0
    v6 = LlrpConfig.model_validate({"name": "x", "driver": "llrp", "host": "fd00::7", "port": 1})
    assert v6.link_spec == "socket://[fd00::7]:1"
