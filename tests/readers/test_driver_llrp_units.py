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


async def test_antenna_events_set_the_state_and_raise_alarms(tmp_path: object) -> None:
    """Issue 11 item 4: a disconnected antenna is an alarm, and so is its return."""
    from agent.readers.codecs import llrp
    from agent.readers.drivers.llrp import LlrpReader
    from agent.readers.status import ReaderStatus

    class _NoLink:  # the message handling under test never touches the link
        async def read(self) -> bytes:
            raise AssertionError("not used")

        async def write(self, data: bytes) -> None:
            raise AssertionError("not used")

        async def aclose(self) -> None:
            return None

    def event(antenna: int, connected: bool) -> llrp.LlrpMessage:
        body = llrp.tlv(246, llrp.tlv(128, (1_780_000_000_000_000).to_bytes(8, "big"))
                        + llrp.tlv(255, bytes((int(connected),)) + antenna.to_bytes(2, "big")))
        return llrp.LlrpMessage(1, llrp.MsgType.READER_EVENT_NOTIFICATION, 7, body)

    cfg = LlrpConfig.model_validate({"name": "dock", "driver": "llrp", "host": "h"})
    status = ReaderStatus("dock", "llrp", cfg.link_spec)
    reader = LlrpReader(cfg, _NoLink(), status)
    reader._reader_event(event(3, connected=False))
    reader._reader_event(event(3, connected=True))
    reader._reader_event(event(1, connected=True))  # a first report "connected": no alarm
    assert status.as_dict()["antennas"] == {"1": "connected", "3": "connected"}
    alarms = status.take_alarms()
    assert [(a["type"], a["antenna"], a["reader"]) for a in alarms] == [
        ("antenna_disconnected", 3, "dock"), ("antenna_connected", 3, "dock")]
    assert status.take_alarms() == []


async def test_reader_mode_must_be_in_the_readers_mode_table() -> None:
    from agent.readers.codecs import llrp
    from agent.readers.drivers.llrp import LlrpReader
    from agent.readers.session import ReaderCommandError
    from agent.readers.status import ReaderStatus

    def mode(mode_id: int) -> llrp.RfMode:
        return llrp.RfMode(mode_id, False, True, 2, 0, 2, 320_000, 1500, 6250, 25000, 0)

    cfg = LlrpConfig.model_validate({"name": "d", "driver": "llrp", "host": "h",
                                     "reader_mode": 1002})
    reader = LlrpReader(cfg, None, ReaderStatus("d", "llrp", cfg.link_spec))  # type: ignore[arg-type]
    reader.capabilities = llrp.Capabilities(rf_modes=(mode(1000), mode(1002)))
    assert reader._mode() == 1002
    reader.capabilities = llrp.Capabilities(rf_modes=(mode(1000), mode(2)))
    with pytest.raises(ReaderCommandError, match=r"reader_mode 1002 is not .* \(it has 1000, 2\)"):
        reader._mode()


def test_tls_verify_off_is_refused_for_readers() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"tls\.verify: false is not supported"):
        LlrpConfig.model_validate({"name": "x", "driver": "llrp", "host": "h",
                                   "tls": {"verify": False}})
