"""LLRP driver pieces without a reader: power mapping and configuration."""

from __future__ import annotations

import pytest

from agent.config import LlrpConfig
from agent.readers.drivers.llrp import power_index
from agent.readers.link import LinkBase

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

    class _NoLink(LinkBase):  # the message handling under test never touches the link
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
    with pytest.raises(ReaderCommandError,
                       match=r"reader_mode 1002 is not .* \(it has 1000 \(m4_320k\), 2 "):
        reader._mode()


async def test_reader_mode_by_name_from_the_vendor_or_the_table_entry() -> None:
    from agent.readers.codecs import llrp
    from agent.readers.drivers.llrp import LlrpReader
    from agent.readers.session import ReaderCommandError
    from agent.readers.status import ReaderStatus

    def mode(mode_id: int, m: int, bdr_bps: int) -> llrp.RfMode:
        return llrp.RfMode(mode_id, False, True, m, 0, 2, bdr_bps, 1500, 6250, 25000, 0)

    table = (mode(0, 0, 640_000), mode(2, 2, 256_000), mode(1000, 2, 320_000),
             mode(1002, 2, 320_000))

    def resolve(name: str, pen: int | None) -> int | None:
        cfg = LlrpConfig.model_validate({"name": "d", "driver": "llrp", "host": "h",
                                         "reader_mode": name})
        reader = LlrpReader(cfg, None, ReaderStatus("d", "llrp", "x"))  # type: ignore[arg-type]
        reader.capabilities = llrp.Capabilities(rf_modes=table, manufacturer_pen=pen)
        return reader._mode()

    impinj = 25882
    assert resolve("AutoSet Dense Reader", impinj) == 1000
    assert resolve("autoset-dense-reader-deep-scan", impinj) == 1002
    assert resolve("max_throughput", impinj) == 0
    assert resolve("FM0 640k", None) == 0  # built from the entry: any vendor
    assert resolve("m4_256k", 161) == 2
    assert resolve("1002", 161) == 1002  # a quoted number is the number
    with pytest.raises(ReaderCommandError, match=r"'m4_320k' names more than one mode"):
        resolve("m4_320k", impinj)
    # Impinj's names are Impinj's: a Zebra reader's mode 1000 is not "autoset_dense_reader".
    with pytest.raises(ReaderCommandError, match=r"is not a mode of this reader \(it has 0 "
                       r"\(fm0_640k\), 2 \(m4_256k\), 1000 \(m4_320k\)"):
        resolve("autoset_dense_reader", 161)


def test_gpi_trigger_and_report_timeout_reach_the_rospec() -> None:
    from agent.readers.codecs import llrp
    from agent.readers.codecs.llrp_params import parse_params

    msg = llrp.add_rospec(1, 7, [1], gpi=llrp.GpiTrigger(2, 5000), aispec_duration_ms=250,
                          report_trigger=llrp.REPORT_UPON_N_TAGS_OR_END_OF_AISPEC,
                          report_every_n_tags=10,
                          inventory_custom=llrp.impinj_inventory_search_mode(2))
    (rospec,) = parse_params(msg[10:])
    body = rospec.value
    # ROBoundarySpec: start trigger type 3 + GPITriggerValue(port 2, high, 0);
    # stop trigger type 2, duration 0 + GPITriggerValue(port 2, low, 5000 ms).
    start = bytes.fromhex("00b30010" "03" "00b5000b" "0002" "80" "00000000")
    stop = bytes.fromhex("00b60014" "02" "00000000" "00b5000b" "0002" "00" "00001388")
    assert start + stop in body
    assert bytes.fromhex("00b80009" "01" "000000fa") in body  # AISpecStopTrigger: 250 ms
    assert bytes.fromhex("00ed000d" "01" "000a") in body  # ROReportSpec: trigger 1, N = 10
    assert bytes.fromhex("03ff000e" "0000651a" "00000017" "0002") in body  # search mode 2


def test_tls_verify_off_is_refused_for_readers() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"tls\.verify: false is not supported"):
        LlrpConfig.model_validate({"name": "x", "driver": "llrp", "host": "h",
                                   "tls": {"verify": False}})
