"""Live reader settings (antennas, session, inventory mode): validation and overrides (plain
tests), then the reconnect-and-read-back path against reader-sim (LLRP over TCP, R2000 on a
pty), as the agent runs it (in-process supervisor with a ReaderControl).

What the simulated reader got is checked in the simulator's own log (its ADD_ROSPEC line), not
only in what the driver reads back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.readers.codecs import llrp
from agent.readers.codecs.llrp import LlrpMessage, MsgType
from agent.readers.control import (
    ReaderControl,
    check_settings,
    compare_read_back,
    settings_choices,
)
from agent.readers.drivers.base import SettingNotSupported
from agent.readers.session import ReaderCommandError
from agent.readers.status import ReaderStatus
from tests.support.reader_support import Run, reader_config, sim
from tests.support.sim import SimProcess


def _llrp(s: SimProcess, **fields: object) -> object:
    host, port = s.host_port
    fields.setdefault("antennas", [1, 2])
    return reader_config(driver="llrp", host=host, port=port, **fields)


# -- validation and overrides (no reader) ---------------------------------------------------------


def test_a_change_is_validated_by_the_driver_s_own_config_model() -> None:
    r2000 = reader_config(driver="r2000", port="/dev/null", antennas=[1, 2])
    new = check_settings(r2000, {"antennas": [1, 3], "session": 2, "inventory": "session"})
    assert (new.antennas, new.session, new.inventory) == ([1, 3], 2, "session")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"session: Input should be less than or equal to 3"):
        check_settings(r2000, {"session": 4})
    with pytest.raises(ValueError, match=r"inventory: Input should be 'real_time'"):
        check_settings(r2000, {"inventory": "fast"})
    with pytest.raises(ValueError, match=r"antennas lists a port twice"):
        check_settings(r2000, {"antennas": [1, 1]})
    with pytest.raises(ValueError, match=r"reader_mode: not a setting of a r2000 reader"):
        check_settings(r2000, {"reader_mode": 2})
    for lax in ({"session": True}, {"session": "2"}, {"antennas": [True]},
                {"inventory": 1}):
        with pytest.raises(ValueError, match=r"expected"):
            check_settings(r2000, lax)
    with pytest.raises(ValueError, match=r"no setting given"):
        check_settings(r2000, {})
    mapped = reader_config(driver="r2000", port="/dev/null", antennas=[1, 2],
                           antenna_map={2: {"read_point": "urn:epc:id:sgln:0614141.00777.0"}})
    with pytest.raises(ValueError, match=r"antenna_map: antenna\(s\) \[2\] are not in antennas"):
        check_settings(mapped, {"antennas": [1]})
    llrp_cfg = reader_config(driver="llrp", host="10.0.0.5")
    assert check_settings(llrp_cfg, {"search_mode": "dual_target"}).search_mode == "dual_target"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"inventory: not a setting of a llrp reader"):
        check_settings(llrp_cfg, {"inventory": "session"})
    barcode = reader_config(driver="barcode", port="/dev/null")
    with pytest.raises(SettingNotSupported):
        check_settings(barcode, {"antennas": [1]})


def test_choices_offer_the_driver_s_values() -> None:
    r2000 = reader_config(driver="r2000", port="/dev/null", antennas=[1, 2])
    assert settings_choices(r2000) == {"antennas": [1, 2, 3, 4], "session": [0, 1, 2, 3],
                                       "inventory": ["real_time", "session", "fast_switch"],
                                       "target": ["A", "B"]}
    chafon = reader_config(driver="chafon", port="/dev/null", protocol="uhfreader18")
    assert settings_choices(chafon)["antennas"] == [1]
    llrp_cfg = reader_config(driver="llrp", host="10.0.0.5", antennas=[1, 6])
    choices = settings_choices(llrp_cfg)
    assert choices["antennas"] == [1, 2, 3, 4, 5, 6]
    assert "dual_target" in choices["search_mode"]
    assert choices["reader_mode"] is None
    assert settings_choices(llrp_cfg, max_antennas=8)["antennas"] == list(range(1, 9))


async def test_a_stopped_reader_keeps_the_override_for_its_next_connect() -> None:
    cfg = reader_config(driver="r2000", port="/dev/null", antennas=[1, 2], power_dbm=25)
    control = ReaderControl(cfg)
    out = await control.set_settings({"antennas": [2, 3], "session": 2}, timeout_s=1)
    assert out.as_dict("r1") == {
        "reader": "r1", "confirmed": False, "desired": {"antennas": [2, 3], "session": 2},
        "readBack": None, "verifiedBy": None, "queued": True,
        "note": "reader r1 is stopped; the settings are kept and applied when it starts"}
    conn = control.connect_config()
    assert (conn.antennas, conn.session, conn.power_dbm) == ([2, 3], 2, 25)  # type: ignore[union-attr]
    # Back to the config's value: no override left for that key.
    await control.set_settings({"antennas": [1, 2]}, timeout_s=1)
    assert control.overrides == {"session": 2}
    status = ReaderStatus("r1", "r2000", "/dev/null")
    control.bind(status)
    assert status.as_dict()["settings"]["desired"] == {
        "antennas": [1, 2], "session": 2, "inventory": "real_time", "target": "A"}
    # A refused change keeps nothing.
    with pytest.raises(ValueError, match="session"):
        await control.set_settings({"session": 9}, timeout_s=1)
    assert control.overrides == {"session": 2}


def test_read_back_mismatches_are_named() -> None:
    assert compare_read_back({"antennas": [2, 1], "session": 2},
                             {"antennas": [1, 2], "session": 2}) == []
    assert compare_read_back({"antennas": [1], "session": 2},
                             {"antennas": [1, 2], "session": 1}) == [
        "antennas: asked [1], the reader reports [1, 2]",
        "session: asked 2, the reader reports 1"]


def test_rospec_settings_parses_what_add_rospec_sends() -> None:
    add = llrp.add_rospec(1, 0x7E1A, [1, 3], session=2, mode_index=1000)
    body = add[10:]  # the ROSpec parameter, as GET_ROSPECS_RESPONSE lists it after LLRPStatus
    reply = LlrpMessage(MsgType.GET_ROSPECS_RESPONSE, 7, 1, bytes.fromhex(
        "01 1f 00 08 00 00 00 00") + body)
    got = llrp.rospec_settings(reply, 0x7E1A)
    assert got == llrp.RospecSettings((1, 3), 2, 1000)
    assert llrp.rospec_settings(reply, 5) is None


# -- against reader-sim --------------------------------------------------------------------------


def _add_rospec_lines(tmp_path: Path) -> list[str]:
    return re.findall(r"ADD_ROSPEC \d+: .*", (tmp_path / "sim-llrp.log").read_text())


async def test_llrp_antennas_and_session_change_live_and_are_read_back(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "4", "--tag-antennas", "1,2,3",
             "--log-level", "INFO") as s:
        cfg = _llrp(s, antennas=[1, 2], session=1)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(10)
            assert run.status.settings_read_back is None  # read back only for a change
            connects = run.status.connects
            out = await control.set_settings({"antennas": [1, 3], "session": 2}, timeout_s=10)
            assert out.as_dict("r1") == {
                "reader": "r1", "confirmed": True, "desired": {"antennas": [1, 3], "session": 2},
                "readBack": {"source": "GET_ROSPECS", "antennas": [1, 3], "session": 2,
                             "modeIndex": None},
                "verifiedBy": "GET_ROSPECS"}
            assert run.status.connects == connects + 1
            assert run.status.disconnects == 0  # a planned reconnect, not a failure
            n = len(run.reads)
            await run.wait_for(lambda r: any(t.antenna == 3 for t in r.tags[n:]), 10,
                               "a read from antenna 3")
            assert all(t.antenna in (1, 3) for t in run.tags[n + 5:])
            # A value the reader refuses at connect: named, and the previous settings return.
            with pytest.raises(ReaderCommandError, match="did not take the new settings"):
                await control.set_settings({"reader_mode": 4242}, timeout_s=10)
            assert control.overrides == {"antennas": [1, 3], "session": 2}
            m = len(run.reads)
            await run.wait_reads(m + 5)
            assert run.status.state == "connected"
    lines = _add_rospec_lines(tmp_path)
    assert "antennas [1, 2]" in lines[0]
    assert lines[0].endswith("session 1")
    assert "antennas [1, 3]" in lines[1]
    assert lines[1].endswith("session 2")
    assert lines[-1] == lines[1]  # restored after the refused mode


async def test_r2000_settings_reconnect_and_reads_go_on(tmp_path: Path) -> None:
    with sim(tmp_path, "r2000", "--pty", "--tags", "4", "--tag-antennas", "1,2") as s:
        cfg = reader_config(driver="r2000", port=s.port, antennas=[1])
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(10)
            assert {t.antenna for t in run.tags} == {1}
            out = await control.set_settings({"antennas": [1, 2], "inventory": "session",
                                              "session": 2, "target": "B"}, timeout_s=10)
            assert out.confirmed
            assert out.verified_by == "connect"
            assert out.read_back is None
            n = len(run.reads)
            await run.wait_for(lambda r: any(t.antenna == 2 for t in r.tags[n:]), 10,
                               "a read from antenna 2")
            assert run.status.as_dict()["settings"]["desired"] == {
                "antennas": [1, 2], "session": 2, "inventory": "session", "target": "B"}
            assert run.status.disconnects == 0


async def test_changes_one_after_another_each_confirmed(tmp_path: Path) -> None:
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "6") as s:
        cfg = _llrp(s)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(20)
            for session in (2, 3, 0):
                out = await control.set_settings({"session": session}, timeout_s=10)
                assert out.confirmed, out
                assert out.read_back is not None
                assert out.read_back["session"] == session
                await run.wait_reads(len(run.reads) + 5)


async def test_chafon_antennas_and_session_change_by_a_reconnect(tmp_path: Path) -> None:
    with sim(tmp_path, "chafon", "--pty", "--antennas", "1,2", "--tag-antennas", "1,2",
             "--tags", "4", "--seed", "2") as s:
        cfg = reader_config(driver="chafon", port=s.port, antennas=[1], scan_time_ms=300)
        control = ReaderControl(cfg)
        async with Run(cfg, control) as run:
            await run.wait_reads(5)
            assert {t.antenna for t in run.tags} == {1}
            out = await control.set_settings({"antennas": [1, 2], "session": 1, "target": "B"},
                                              timeout_s=10)
            assert (out.confirmed, out.verified_by) == (True, "connect")
            n = len(run.reads)
            await run.wait_for(lambda r: any(t.antenna == 2 for t in r.tags[n:]), 10,
                               "a read from antenna 2")
            assert run.status.disconnects == 0


async def test_a_lost_connection_is_not_a_refusal(tmp_path: Path) -> None:
    """The reader vanishes while the new settings wait: they stay, not confirmed, and the
    next connection (the reader back) gets them."""
    with sim(tmp_path, "llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--log-level",
             "INFO") as s:
        cfg = _llrp(s)
        control = ReaderControl(cfg)  # type: ignore[arg-type]
        async with Run(cfg, control) as run:  # type: ignore[arg-type]
            await run.wait_reads(5)
            s.stop()  # gone: every reconnect fails with a refused TCP connection
            out = await control.set_settings({"session": 3}, timeout_s=1.5)
            assert not out.confirmed
            assert out.as_dict("r1")["queued"] is True
            assert "not connected again within 1.5 s" in (out.note or "")
            assert control.overrides == {"session": 3}
            assert control.connect_config().session == 3  # type: ignore[union-attr]
