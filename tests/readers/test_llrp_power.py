"""LLRP output power at run time: the ROSpec is replaced on the same connection with the new
RFTransmitter indexes (mapped to the reader's TransmitPowerTable) and read back with
GET_ROSPECS, against reader-sim llrp over TCP as the agent runs it (in-process supervisor with
a ReaderControl). What the simulated reader holds is checked in its own log (its ADD_ROSPEC
line names each antenna's power from its table), not only in what the driver reads back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.readers.codecs import llrp
from agent.readers.codecs.llrp import LlrpMessage, MsgType
from agent.readers.control import ReaderControl, check_power
from agent.readers.drivers.llrp import power_index
from tests.support.reader_support import Run, llrpkit_emulator, reader_config, sim
from tests.support.sim import SimProcess


def _llrp(s: SimProcess, **fields: object) -> object:
    host, port = s.host_port
    fields.setdefault("antennas", [1, 2])
    return reader_config(driver="llrp", host=host, port=port, **fields)


def _add_rospec_lines(tmp_path: Path) -> list[str]:
    return re.findall(r"ADD_ROSPEC \d+: .*", (tmp_path / "sim-llrp.log").read_text())


def test_rospec_settings_reads_the_power_index_of_each_antenna() -> None:
    add = llrp.add_rospec(1, 0x7E1A, [1, 3], session=2, power_index=[81, 61])
    rospec = add[10:]  # header 10 bytes: the ROSpec parameter as GET_ROSPECS lists it
    reply = LlrpMessage(MsgType.GET_ROSPECS_RESPONSE, 7, 1,
                        bytes.fromhex("011f 0008 0000 0000") + rospec)
    got = llrp.rospec_settings(reply, 0x7E1A)
    assert got is not None
    assert got.powers == ((1, 81), (3, 61))
    # Without RFTransmitter (no power asked): none reported, the reader's own applies.
    plain = llrp.add_rospec(1, 0x7E1A, [1])[10:]
    got = llrp.rospec_settings(LlrpMessage(MsgType.GET_ROSPECS_RESPONSE, 7, 1,
                                           bytes.fromhex("011f 0008 0000 0000") + plain),
                               0x7E1A)
    assert got is not None
    assert got.powers == ()


def test_llrp_power_is_checked_against_the_reader_s_antennas() -> None:
    cfg = reader_config(driver="llrp", host="10.0.0.5", antennas=[1, 2])
    assert check_power(cfg, 25) == 25
    assert check_power(cfg, {2: 20}) == {2: 20}
    with pytest.raises(ValueError, match=r"antenna\(s\) \[3\] are not in this reader's"):
        check_power(cfg, {3: 20})
    with pytest.raises(ValueError, match=r"dbm must be within 0..40 for an LLRP reader"):
        check_power(cfg, 41)
    with pytest.raises(ValueError, match=r"no antenna given"):
        check_power(cfg, {})


def test_a_fractional_config_power_asks_for_every_antenna() -> None:
    control = ReaderControl(reader_config(driver="llrp", host="10.0.0.5", antennas=[1, 2],
                                          power_dbm=27.5))
    assert control.desired is None  # not whole dBm: the config's until a command
    whole = ReaderControl(reader_config(driver="llrp", host="10.0.0.5", antennas=[1, 2],
                                        power_dbm={1: 30.0, 2: 20}))
    assert whole.desired == {1: 30, 2: 20}


async def test_fractional_config_and_one_antenna_is_refused_clearly() -> None:
    control = ReaderControl(reader_config(driver="llrp", host="10.0.0.5", antennas=[1, 2],
                                          power_dbm=27.5))
    with pytest.raises(ValueError, match=r"power_dbm 27.5 is not whole dBm"):
        await control.set_power({2: 20}, timeout_s=1)


def test_power_index_is_the_highest_entry_not_above() -> None:
    table = ((1, 1000), (2, 1025), (3, 1050))
    assert power_index(table, 10.3) == (2, 10.25)
    assert power_index(table, 40) == (3, 10.5)
    assert power_index(table, 5) == (1, 10.0)  # below every entry: the lowest


async def test_llrp_power_changes_on_the_same_connection_and_is_read_back(
        tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "4", "--tag-antennas", "1,2",
             "--log-level", "INFO") as s:
        cfg = _llrp(s, antennas=[1, 2], power_dbm=30)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        assert control.desired == 30
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(10)
            connects = run.status.connects
            out = await control.set_power(25, timeout_s=10)
            assert out.as_dict("r1") == {"reader": "r1", "applied": True, "desiredDbm": 25,
                                         "reportedDbm": 25, "written": True}
            assert run.status.power_reported == (25, 25)
            n = len(run.reads)
            await run.wait_reads(n + 10)  # reads go on
            # One antenna: the other keeps its power; the desired power says so.
            out = await control.set_power({2: 20}, timeout_s=10)
            assert out.as_dict("r1")["reportedDbm"] == {"1": 25, "2": 20}
            assert out.desired == {1: 25, 2: 20}
            # Above the table (10..31.5 dBm in the simulator): its highest entry, reported.
            out = await control.set_power(40, timeout_s=10)
            assert out.reported == (31.5, 31.5)
            assert run.status.as_dict()["power"]["reportedDbm"] == 31.5
            n = len(run.reads)
            await run.wait_reads(n + 10)
            assert run.status.connects == connects  # no reconnect: the same connection
            assert run.status.state == "connected"
    lines = _add_rospec_lines(tmp_path)
    assert "power [1: 30 dBm, 2: 30 dBm]" in lines[0]
    assert "power [1: 25 dBm, 2: 25 dBm]" in lines[1]
    assert "power [1: 25 dBm, 2: 20 dBm]" in lines[2]
    assert "power [1: 31.5 dBm, 2: 31.5 dBm]" in lines[3]
    log = (tmp_path / "sim-llrp.log").read_text()
    assert log.count("STOP_ROSPEC") >= 3


async def test_a_desired_llrp_power_is_applied_again_at_the_next_connect(
        tmp_path: Path) -> None:
    """The sim hangs up after a while: the new connection's ROSpec has the changed power."""
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--log-level",
             "INFO") as s:
        cfg = _llrp(s, antennas=[1], reconnect_min_s=0.05, reconnect_max_s=0.2)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        assert control.desired is None
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
            out = await control.set_power(22, timeout_s=10)
            assert out.applied
            assert out.reported == (22,)
            # A settings change reconnects: the power is part of the new connection's config.
            settled = await control.set_settings({"session": 2}, timeout_s=10)
            assert settled.confirmed
            assert run.status.settings_read_back is not None
            assert run.status.settings_read_back["powerDbm"] == {"1": 22}
            await control.set_power(21, timeout_s=10)  # live again: the read-back follows
            assert run.status.settings_read_back["powerDbm"] == {"1": 21}
    lines = _add_rospec_lines(tmp_path)
    assert "power" not in lines[0]  # no power_dbm: the reader's own
    assert "power [1: 22 dBm]" in lines[1]
    assert "power [1: 22 dBm]" in lines[2]
    assert lines[2].endswith("session 2")


async def test_llrp_power_against_llrpkit_s_emulator_a_reader_we_did_not_write() -> None:
    """The same replace-and-read-back against llrpkit's emulator (its GET_ROSPECS, its power
    table): confirmed, on the same connection, and reads go on."""
    async with llrpkit_emulator(tags=5, seed=4) as port:
        cfg = reader_config(driver="llrp", host="127.0.0.1", port=port,
                            antennas=[1, 2], power_dbm=25)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(10, timeout_s=15)
            out = await control.set_power(20, timeout_s=10)
            assert out.as_dict("r1") == {"reader": "r1", "applied": True, "desiredDbm": 20,
                                         "reportedDbm": 20, "written": True}
            n = len(run.reads)
            await run.wait_reads(n + 10, timeout_s=15)
            assert (run.status.connects, run.status.state) == (1, "connected")


async def test_a_refused_restart_after_the_change_reconnects_with_the_new_power(
        tmp_path: Path) -> None:
    """START_ROSPEC refused after the ROSpec was replaced (the simulator refuses every
    START_ROSPEC inside a window): the reader would sit idle on a healthy-looking connection,
    so the driver gives the connection up; the supervisor reconnects, configure() applies the
    desired power, and reads come back once the reader starts inventories again."""
    import asyncio
    import time

    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--log-level", "INFO",
             "--error-code", "100", "--error-after", "2.0", "--error-for", "2.0") as s:
        # The simulator's clock starts before it listens, so at least this much of it passed.
        started = time.monotonic()
        cfg = _llrp(s, antennas=[1], power_dbm=30)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
            # Into the window: the simulator's time is at least our time since `started`.
            await asyncio.sleep(max(0.0, 2.3 - (time.monotonic() - started)))
            out = await control.set_power(24, timeout_s=10)
            assert out.applied is False
            assert out.note is not None
            assert "inventory not restarted after replacing the ROSpec" in out.note
            assert control.desired == 24  # kept: applied at the next connect
            n = len(run.reads)
            await run.wait_reads(n + 5, timeout_s=20)
            assert run.status.state == "connected"
            assert run.status.connects >= 2
    lines = _add_rospec_lines(tmp_path)
    assert "power [1: 30 dBm]" in lines[0]
    assert "power [1: 24 dBm]" in lines[-1]
