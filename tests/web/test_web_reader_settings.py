"""Reader settings from the page in a real headless Chromium: an agent with a simulated LLRP
reader (reader-sim llrp over TCP, logging at INFO) and a real Mosquitto. Antennas and session
are changed on the page, the page shows "confirmed" with the reader's read-back (GET_ROSPECS),
the simulator's own log shows the ADD_ROSPEC with them, and "save to config" writes them into
the YAML. Also: on a non-loopback listener the browser gets only the login page first."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import parse_config
from tests.support.harness import AgentProcess, SimProcess, agent_cli, agent_status, wait_until
from tests.support.mosquitto import Mosquitto, find_mosquitto, free_port
from tests.web.browser import chrome, http, missing_browser, screenshot
from tests.web.test_web_browser import ADMIN_PASSWORD, _by, _login, _text, _wait

pytestmark = pytest.mark.slow


@dataclass
class Rig:
    tmp: Path
    cfg: Path
    url: str
    agent: AgentProcess
    sim_log: Path


def _start(tmp: Path, listen: str, broker: Mosquitto) -> tuple[Path, SimProcess, AgentProcess]:
    sim_log = tmp / "sim-llrp.log"
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "4", "--tag-antennas", "1,2,3",
                     "--log-level", "INFO", log_path=sim_log)
    host, port = sim.host_port
    cfg = tmp / "agent.yaml"
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-llrp", "site": "lab"},
        "readers": [{"name": "fx1", "driver": "llrp", "host": host, "port": port,
                     "antennas": [1, 2], "session": 1, "reconnect_max_s": 1.0}],
        "buffer": {"path": str(tmp / "buffer.db")},
        "uplink": {"mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "trace",
                            "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}},
        "status": {"socket": str(tmp / "agent.sock")},
        "http": {"listen": listen, "admin_password_file": str(tmp / "admin-password")},
    }
    cfg.write_text("# the LLRP door (comments survive edits from the page)\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    setpw = agent_cli("set-admin-password", "-c", str(cfg), "--stdin",
                      stdin=ADMIN_PASSWORD + "\n")
    assert setpw.returncode == 0, setpw.stderr
    agent = AgentProcess(cfg, tmp / "agent.log")
    return cfg, sim, agent


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    if missing_browser():
        pytest.skip(missing_browser() or "")
    tmp = tmp_path_factory.mktemp("web-llrp")
    with Mosquitto() as broker:
        http_addr = f"127.0.0.1:{free_port()}"
        cfg, sim, agent = _start(tmp, http_addr, broker)
        try:
            wait_until(lambda: (tmp / "agent.sock").exists()
                       and agent_status(cfg)["readers"][0]["state"] == "connected", 30,
                       "the LLRP reader to connect", diagnostics=agent.log_text)
            yield Rig(tmp, cfg, f"http://{http_addr}", agent, tmp / "sim-llrp.log")
        finally:
            code = agent.stop()
            sim.stop()
            log = agent.log_text()
            assert code == 0, log[-3000:]
            assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def driver() -> Iterator[Any]:
    yield from chrome()


def _answers(url: str) -> bool:
    try:
        return http(url)[0] in (200, 503)
    except OSError:
        return False


def _add_rospecs(rig: Rig) -> list[str]:
    return re.findall(r"ADD_ROSPEC \d+: .*", rig.sim_log.read_text())


def test_antennas_and_session_from_the_page_reach_the_reader(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#settings")
    _login(driver, rig)  # type: ignore[arg-type]
    box = "[data-reader='fx1'] .reader-settings"
    _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), box + " .antenna"), 10,
          "the settings form")
    boxes = {int(b.get_attribute("value")): b
             for b in driver.find_elements(_by("CSS_SELECTOR"), box + " .antenna")}
    assert sorted(boxes) == [1, 2, 3, 4]
    assert [a for a, b in boxes.items() if b.is_selected()] == [1, 2]
    boxes[2].click()  # off
    boxes[3].click()  # on
    from selenium.webdriver.support.ui import Select

    session = Select(driver.find_element(_by("CSS_SELECTOR"),
                                         box + " .setting-session select"))
    assert session.first_selected_option.text == "1"
    session.select_by_visible_text("2")
    driver.find_element(_by("CSS_SELECTOR"), box + " .settings-save").click()
    driver.find_element(_by("CSS_SELECTOR"), box + " .settings-apply").click()
    _wait(driver, lambda d: "confirmed" in _text(d, box + " .settings-result"), 30,
          "the read-back confirmation")
    result = _text(driver, box + " .settings-result")
    assert "the reader reports antennas [1,3], session 2 (GET_ROSPECS)" in result, result
    assert "saved to" in result, result
    screenshot(driver, "reader-settings")
    # The simulated reader got them (its own log of the ADD_ROSPEC it accepted).
    lines = _add_rospecs(rig)
    assert "antennas [1, 2]" in lines[0]
    assert lines[0].endswith("session 1")
    assert "antennas [1, 3]" in lines[-1]
    assert lines[-1].endswith("session 2")
    status = agent_status(rig.cfg)["readers"][0]
    assert status["settings"]["desired"]["antennas"] == [1, 3]
    assert status["settings"]["readBack"]["session"] == 2
    assert status["disconnects"] == 0
    text = rig.cfg.read_text()
    assert text.startswith("# the LLRP door")
    reader = parse_config(text).readers[0]
    assert (reader.antennas, reader.session) == ([1, 3], 2)  # type: ignore[union-attr]
    # A refused value is named and nothing changes.
    session.select_by_visible_text("3")
    mode = driver.find_element(_by("CSS_SELECTOR"), box + " .setting-reader_mode input")
    mode.send_keys("4242")
    driver.find_element(_by("CSS_SELECTOR"), box + " .settings-save").click()  # off again
    driver.find_element(_by("CSS_SELECTOR"), box + " .settings-apply").click()
    _wait(driver, lambda d: "refused" in _text(d, box + " .settings-result"), 30, "the refusal")
    assert "4242" in _text(driver, box + " .settings-result")
    wait_until(lambda: agent_status(rig.cfg)["readers"][0]["state"] == "connected", 20,
               "the reader back with the previous settings", diagnostics=rig.agent.log_text)
    assert "antennas [1, 3]" in _add_rospecs(rig)[-1]
    assert _add_rospecs(rig)[-1].endswith("session 2")


def test_power_from_the_page_reaches_the_llrp_reader(rig: Rig, driver: Any) -> None:
    """Output power on an LLRP reader: the page shows it confirmed with what the reader
    reports (GET_ROSPECS of the ROSpec replaced on the same connection), and the simulator's
    own log shows the ROSpec it now holds with that power on every antenna."""
    driver.get(rig.url + "/#settings")
    _login(driver, rig)  # type: ignore[arg-type]
    box = "[data-reader='fx1']"
    _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), box + " .power-all"), 10,
          "the power form")
    before = agent_status(rig.cfg)["readers"][0]
    antennas = before["settings"]["desired"]["antennas"]
    inp = driver.find_element(_by("CSS_SELECTOR"), box + " .power-all")
    inp.clear()
    inp.send_keys("27")
    driver.find_element(_by("CSS_SELECTOR"), box + " .power-apply").click()
    _wait(driver, lambda d: "confirmed" in _text(d, box + " .power-result"), 30,
          "the power confirmation")
    assert _text(driver, box + " .power-result") == "confirmed: the reader reports 27 dBm"
    screenshot(driver, "reader-power-llrp")
    status = agent_status(rig.cfg)["readers"][0]
    assert status["power"] == {"desiredDbm": 27, "reportedDbm": 27, "error": None}
    assert status["connects"] == before["connects"]  # the same connection
    assert status["state"] == "connected"
    want = "power [" + ", ".join(f"{a}: 27 dBm" for a in antennas) + "]"
    assert want in _add_rospecs(rig)[-1]
    # A power beyond what any LLRP table holds is refused, named, and nothing changes.
    inp.clear()
    inp.send_keys("41")
    driver.find_element(_by("CSS_SELECTOR"), box + " .power-apply").click()
    _wait(driver, lambda d: "refused" in _text(d, box + " .power-result"), 30, "the refusal")
    assert "dbm must be within 0..40 for an LLRP reader" in _text(driver, box + " .power-result")
    assert agent_status(rig.cfg)["readers"][0]["power"]["reportedDbm"] == 27


def test_a_network_listener_serves_only_the_login_page_first(
        tmp_path: Path, driver: Any) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    with Mosquitto() as broker:
        port = free_port()
        _cfg, sim, agent = _start(tmp_path, f"0.0.0.0:{port}", broker)
        try:
            wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), 30,
                       "the HTTP listener", diagnostics=agent.log_text)
            driver.get(f"http://127.0.0.1:{port}/#settings")
            _wait(driver, lambda d: d.find_elements(_by("ID"), "login-form"), 10, "login page")
            assert "gw-llrp" not in driver.page_source
            assert not driver.find_elements(_by("ID"), "nav")
            driver.find_element(_by("ID"), "password").send_keys("wrong-password")
            driver.find_element(_by("ID"), "login").click()
            _wait(driver, lambda d: "refused" in _text(d, "#login-error"), 10, "the refusal")
            driver.find_element(_by("ID"), "password").send_keys(ADMIN_PASSWORD)
            driver.find_element(_by("ID"), "login").click()
            _wait(driver, lambda d: d.find_elements(_by("ID"), "nav"), 10, "the page")
            _wait(driver, lambda d: _text(d, "#auth-state") == "admin", 10, "logged in")
            _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"),
                                                    "[data-reader='fx1'] .antenna"), 10,
                  "the settings page")
            driver.find_element(_by("ID"), "logout").click()
            _wait(driver, lambda d: d.find_elements(_by("ID"), "login-form"), 10,
                  "the login page again")
        finally:
            code = agent.stop()
            sim.stop()
        assert code == 0, agent.log_text()[-3000:]


def test_thingmagic_antennas_session_target_from_the_page(tmp_path: Path, driver: Any) -> None:
    """A ThingMagic M6e (reader-sim thingmagic on a pty): antennas, session and target are
    changed on the page, which shows them confirmed by the module's read-back (0x61/0x6B);
    the simulator's own log shows the module took them."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    sim_log = tmp_path / "sim-tm.log"
    with Mosquitto() as broker:
        sim = SimProcess("thingmagic", "--pty", "--model", "m6e", "--tags", "4",
                         "--tag-antennas", "1,2,3", "--log-level", "INFO", log_path=sim_log)
        http_addr = f"127.0.0.1:{free_port()}"
        cfg = tmp_path / "agent.yaml"
        doc: dict[str, Any] = {
            "gateway": {"id": "gw-tm", "site": "lab"},
            "readers": [{"name": "m6e", "driver": "thingmagic", "port": sim.port,
                         "region": "EU3", "antennas": [1, 2], "reconnect_max_s": 1.0}],
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "uplink": {"mqtt": {"host": broker.host, "port": broker.port,
                                "topic_prefix": "trace", "reconnect_min_s": 0.1,
                                "reconnect_max_s": 1.0}},
            "status": {"socket": str(tmp_path / "agent.sock")},
            "http": {"listen": http_addr, "admin_password_file": str(tmp_path / "admin-pw")},
        }
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        setpw = agent_cli("set-admin-password", "-c", str(cfg), "--stdin",
                          stdin=ADMIN_PASSWORD + "\n")
        assert setpw.returncode == 0, setpw.stderr
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: (tmp_path / "agent.sock").exists()
                       and agent_status(cfg)["readers"][0]["state"] == "connected", 30,
                       "the module to connect", diagnostics=agent.log_text)
            driver.get(f"http://{http_addr}/#settings")
            driver.find_element(_by("ID"), "password").send_keys(ADMIN_PASSWORD)
            driver.find_element(_by("ID"), "login").click()
            _wait(driver, lambda d: _text(d, "#auth-state") == "admin", 10, "login")
            box = "[data-reader='m6e'] .reader-settings"
            _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), box + " .antenna"),
                  10, "the settings form")
            boxes = {int(b.get_attribute("value")): b
                     for b in driver.find_elements(_by("CSS_SELECTOR"), box + " .antenna")}
            assert sorted(boxes) == [1, 2, 3, 4]  # the M6e's ports
            boxes[2].click()  # off
            boxes[3].click()  # on
            from selenium.webdriver.support.ui import Select

            session = Select(driver.find_element(_by("CSS_SELECTOR"),
                                                 box + " .setting-session select"))
            assert session.first_selected_option.text == "reader's default"
            session.select_by_visible_text("2")
            target = Select(driver.find_element(_by("CSS_SELECTOR"),
                                                box + " .setting-target select"))
            target.select_by_visible_text("AB")
            driver.find_element(_by("CSS_SELECTOR"), box + " .settings-apply").click()
            _wait(driver, lambda d: "confirmed" in _text(d, box + " .settings-result"), 30,
                  "the read-back confirmation")
            result = _text(driver, box + " .settings-result")
            assert ("the reader reports antennas [1,3], session 2, target AB "
                    "(Mercury 0x61/0x6B)") in result, result
            screenshot(driver, "reader-settings-thingmagic")
            status = agent_status(cfg)["readers"][0]
            assert status["settings"]["readBack"]["target"] == "AB"
            assert status["state"] == "connected"
        finally:
            code = agent.stop()
            sim.stop()
    assert code == 0, agent.log_text()[-3000:]
    assert "Traceback" not in agent.log_text()
    log = sim_log.read_text()
    assert "antennas [1, 3]" in log
    assert "Gen2 session 2" in log
    assert "Gen2 target AB" in log
