"""ThingMagic live settings (antennas, Gen2 session and target): the codec's requests and
replies (plain tests), then the settings path against reader-sim thingmagic on a real
pseudo-terminal, as the agent runs it (in-process supervisor with a ReaderControl): a
reconnect, then the module's read-back (0x61 antenna ports, 0x6B protocol parameters). What
the simulated module holds is checked in its own log too, not only in the read-back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import AnyReaderConfig
from agent.readers.codecs import mercury
from agent.readers.control import ReaderControl, check_settings, settings_choices
from agent.readers.session import ReaderCommandError
from tests.support.reader_support import Run, reader_config, sim


def _config(port: str, **fields: Any) -> AnyReaderConfig:
    fields.setdefault("region", "EU3")
    return reader_config(driver="thingmagic", port=port, **fields)


def _frame(data: bytes) -> bytes:
    """The Data field of a host -> module request: [FF][Len][Opcode][Data][CRC:2]."""
    assert data[0] == 0xFF
    assert mercury.crc16(data[1:-2]) == int.from_bytes(data[-2:], "big")
    return data[3:-2]


def test_gen2_and_antenna_requests_carry_the_mercury_layout() -> None:
    # 0x9B [Protocol 05][Key][Value] (serial_reader_l3.c cmdSetProtocolConfiguration)
    assert mercury.set_gen2_session(2)[2] == 0x9B
    assert _frame(mercury.set_gen2_session(2)) == bytes.fromhex("05 00 02")
    assert _frame(mercury.set_gen2_target("A")) == bytes.fromhex("05 01 01 00")
    assert _frame(mercury.set_gen2_target("B")) == bytes.fromhex("05 01 01 01")
    assert _frame(mercury.set_gen2_target("AB")) == bytes.fromhex("05 01 00 00")
    assert _frame(mercury.set_gen2_target("BA")) == bytes.fromhex("05 01 00 01")
    assert mercury.get_gen2_param(mercury.GEN2_SESSION)[2] == 0x6B
    assert _frame(mercury.get_gen2_param(mercury.GEN2_TARGET)) == bytes.fromhex("05 01")
    assert mercury.get_antenna_ports()[2] == 0x61
    assert _frame(mercury.get_antenna_ports()) == b"\x00"
    assert _frame(mercury.get_antenna_search_list()) == b"\x02"


def test_gen2_and_antenna_replies_parse_and_refuse_garbage() -> None:
    assert mercury.parse_gen2_session(bytes.fromhex("05 00 02")) == 2
    assert mercury.parse_gen2_session(bytes.fromhex("05 01 02")) is None  # another key
    assert mercury.parse_gen2_session(bytes.fromhex("05 00 07")) is None
    assert mercury.parse_gen2_session(b"") is None
    assert mercury.parse_gen2_target(bytes.fromhex("05 01 01 01")) == "B"
    assert mercury.parse_gen2_target(bytes.fromhex("05 01 00 01")) == "BA"
    assert mercury.parse_gen2_target(bytes.fromhex("05 01 07 07")) is None
    assert mercury.parse_gen2_target(bytes.fromhex("05 01 01")) is None
    assert mercury.parse_antenna_ports(bytes.fromhex("02 02")) == [2]
    assert mercury.parse_antenna_ports(bytes.fromhex("02 01 01 03 03")) == [1, 3]
    assert mercury.parse_antenna_ports(bytes.fromhex("02 01 01 03")) is None
    assert mercury.parse_antenna_ports(b"\x01") is None


def test_thingmagic_settings_are_validated_and_offered() -> None:
    cfg = _config("/dev/null", antennas=[1, 2])
    new = check_settings(cfg, {"antennas": [1, 3], "session": 2, "target": "AB"})
    assert (new.antennas, new.session, new.target) == ([1, 3], 2, "AB")  # type: ignore[union-attr]
    assert check_settings(new, {"session": None}).session is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"target: Input should be 'A', 'B', 'AB' or 'BA'"):
        check_settings(cfg, {"target": "C"})
    with pytest.raises(ValueError, match=r"antennas.0: Input should be less than or equal to 4"):
        check_settings(cfg, {"antennas": [5]})
    with pytest.raises(ValueError, match=r"inventory: not a setting of a thingmagic reader"):
        check_settings(cfg, {"inventory": "session"})
    choices = settings_choices(cfg)
    assert choices == {"antennas": [1, 2, 3, 4], "session": [0, 1, 2, 3],
                       "target": ["A", "B", "AB", "BA"]}
    nano = _config("/dev/null")
    assert settings_choices(nano, max_antennas=1)["antennas"] == [1]


async def test_antennas_session_target_change_live_and_are_read_back(tmp_path: Path) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--model", "m6e", "--tags", "6",
             "--tag-antennas", "1,2,3", "--log-level", "INFO") as s:
        cfg = _config(s.port, antennas=[1, 2], power_dbm=22)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(10)
            assert run.status.max_antennas == 4  # an M6e
            connects = run.status.connects
            out = await control.set_settings({"antennas": [1, 3], "session": 2, "target": "B"},
                                             timeout_s=10)
            assert out.as_dict("r1") == {
                "reader": "r1", "confirmed": True,
                "desired": {"antennas": [1, 3], "session": 2, "target": "B"},
                "readBack": {"source": "Mercury 0x61/0x6B", "antennas": [1, 3], "session": 2,
                             "target": "B", "powerDbm": 22},
                "verifiedBy": "Mercury 0x61/0x6B"}
            assert run.status.connects == connects + 1
            assert run.status.disconnects == 0
            n = len(run.reads)
            await run.wait_for(lambda r: any(t.antenna == 3 for t in r.tags[n:]), 10,
                               "a read from antenna 3")
            # One antenna: 0x91 TX/RX pair, read back with 0x61 option 00.
            out = await control.set_settings({"antennas": [2]}, timeout_s=10)
            assert out.confirmed
            assert out.read_back is not None
            assert out.read_back["antennas"] == [2]
            assert out.read_back["session"] == 2  # kept from the change before
            m = len(run.reads)
            await run.wait_reads(m + 5)
            assert all(t.antenna == 2 for t in run.tags[m + 2:])
    log = (tmp_path / "sim-thingmagic.log").read_text()
    assert "antennas [1, 2]" in log
    assert "antennas [1, 3]" in log
    assert "Gen2 session 2" in log
    assert "Gen2 target B" in log
    assert "antennas [2]" in log


async def test_a_port_the_nano_does_not_have_is_refused_and_the_settings_return(
        tmp_path: Path) -> None:
    with sim(tmp_path, "thingmagic", "--pty", "--tags", "3", "--log-level", "INFO") as s:
        cfg = _config(s.port)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(5)
            assert run.status.max_antennas == 1  # a Nano: the page offers port 1 only
            with pytest.raises(ReaderCommandError, match="did not take the new settings: "
                               r"set antenna 2 refused: 0x0105"):
                await control.set_settings({"antennas": [2]}, timeout_s=10)
            assert control.overrides == {}
            m = len(run.reads)
            await run.wait_reads(m + 5)
            assert run.status.state == "connected"
