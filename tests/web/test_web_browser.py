"""The technician's page in a real headless Chromium, against a running agent (reader-sim on a
pty, a real Mosquitto with a password): site survey, reader power, config check / apply /
rollback, login and CSRF, no secret on any page or download. Screenshots go to docs/img/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.harness import AgentProcess, SimProcess, agent_cli, agent_status, wait_until
from tests.support.mosquitto import Mosquitto, find_mosquitto, free_port
from tests.web.browser import chrome, http, missing_browser, screenshot

pytestmark = pytest.mark.slow

BROKER_PASSWORD = "Br0ker-S3cret-xyz"  # the secret the page must never show
ADMIN_PASSWORD = "technician-pw-1"


@dataclass
class Rig:
    tmp: Path
    cfg: Path
    url: str
    agent: AgentProcess
    broker: Mosquitto
    original: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    if missing_browser():
        pytest.skip(missing_browser() or "")
    tmp = tmp_path_factory.mktemp("web")
    with Mosquitto(users={"edge": BROKER_PASSWORD}) as broker:
        sim = SimProcess("r2000", "--pty", "--tags", "3", "--seed", "4",
                         log_path=tmp / "sim.log")
        http_addr = f"127.0.0.1:{free_port()}"
        cfg = tmp / "agent.yaml"
        doc: dict[str, Any] = {
            "gateway": {"id": "gw-web", "site": "lab"},
            "readers": [{"name": "r1", "driver": "r2000", "port": sim.port,
                         "baudrate": 115200, "reconnect_max_s": 1.0}],
            "buffer": {"path": str(tmp / "buffer.db")},
            "uplink": {"mqtt": {"host": broker.host, "port": broker.port,
                                "username": "edge", "password": BROKER_PASSWORD,
                                "topic_prefix": "trace", "reconnect_min_s": 0.1,
                                "reconnect_max_s": 1.0}},
            "status": {"socket": str(tmp / "agent.sock")},
            "http": {"listen": http_addr, "admin_password_file": str(tmp / "admin-password"),
                     "apply_confirm_s": 6},
        }
        cfg.write_text("# the lab gateway (comments survive edits from the page)\n"
                       + yaml.safe_dump(doc, sort_keys=False))
        setpw = agent_cli("set-admin-password", "-c", str(cfg), "--stdin",
                          stdin=ADMIN_PASSWORD + "\n")
        assert setpw.returncode == 0, setpw.stderr
        stored = (tmp / "admin-password").read_text()
        assert stored.startswith("scrypt$")
        assert ADMIN_PASSWORD not in stored
        agent = AgentProcess(cfg, tmp / "agent.log")
        try:
            wait_until(lambda: (tmp / "agent.sock").exists()
                       and agent_status(cfg)["readers"][0]["state"] == "connected"
                       and agent_status(cfg)["uplink"]["connected"], 30,
                       "the reader and the broker to connect", diagnostics=agent.log_text)
            yield Rig(tmp, cfg, f"http://{http_addr}", agent, broker, cfg.read_text())
        finally:
            code = agent.stop()
            sim.stop()
            log = agent.log_text()
            assert code == 0, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
            assert BROKER_PASSWORD not in log


@pytest.fixture
def driver() -> Iterator[Any]:
    yield from chrome()


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def _text(driver: Any, css: str) -> str:
    return str(driver.find_element(_by("CSS_SELECTOR"), css).text)


def _wait(driver: Any, fn: Any, timeout: float, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: fn(d), message=what)


def _login(driver: Any, rig: Rig) -> None:
    driver.find_element(_by("ID"), "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(_by("ID"), "login").click()
    _wait(driver, lambda d: _text(d, "#auth-state") == "admin", 10, "login")


def test_overview_and_readers_show_the_running_agent(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#overview")
    _wait(driver, lambda d: "gw-web" in _text(d, "#overview"), 10, "overview")
    text = _text(driver, "#overview")
    for expected in ("site lab", "connected", f"127.0.0.1:{rig.broker.port}", "buffer depth",
                     "oldest event age", "last PUBACK", "dead letters 0", "clock synced"):
        assert expected in text, text
    screenshot(driver, "overview")
    driver.get(rig.url + "/#readers")
    _wait(driver, lambda d: "r1" in _text(d, "#readers tbody"), 10, "readers")
    assert "connected" in _text(driver, "#readers tbody")
    assert "1.9" in _text(driver, "#readers tbody")  # the simulator's firmware
    _wait(driver, lambda d: "ant 1: " in _text(d, "#readers tbody"), 10, "reads/s per antenna")
    screenshot(driver, "readers")


def test_site_survey_shows_simulated_epcs_with_their_antenna_within_5_s(
        rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#survey")
    driver.find_element(_by("ID"), "survey-start").click()
    started = time.monotonic()
    rows = _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"),
                                                   "#survey-tags tbody tr[data-epc^='3034']"),
                 5, "simulated EPCs in the survey table within 5 s")
    assert time.monotonic() - started < 5
    cells = rows[0].find_elements(_by("TAG_NAME"), "td")
    assert [cells[2].text, cells[3].text] == ["r1", "1"], [c.text for c in cells]
    assert cells[1].text.startswith("(01)") or cells[1].text.startswith("urn:epc:")
    _wait(driver, lambda d: "r1/1" in _text(d, "#survey-antennas tbody"), 5, "antenna rates")
    time.sleep(3)  # a few seconds of chart
    screenshot(driver, "survey")
    # the filter: a prefix no simulated tag has empties the table, clear empties it too
    box = driver.find_element(_by("ID"), "survey-prefix")
    box.send_keys("FFFF")
    driver.find_element(_by("ID"), "survey-clear").click()
    time.sleep(1.5)
    assert not driver.find_elements(_by("CSS_SELECTOR"), "#survey-tags tbody tr")
    driver.find_element(_by("ID"), "survey-stop").click()
    assert _text(driver, "#survey-state") == "stopped"


def test_changes_without_login_are_refused(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#settings")
    box = _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"),
                                                  "[data-reader='r1'] .power-all"), 10, "form")
    box[0].clear()
    box[0].send_keys("21")
    driver.find_element(_by("CSS_SELECTOR"), "[data-reader='r1'] .power-apply").click()
    _wait(driver, lambda d: "refused" in _text(d, "[data-reader='r1'] .power-result"), 10,
          "the refusal")
    assert "log in" in _text(driver, "[data-reader='r1'] .power-result")
    assert agent_status(rig.cfg)["readers"][0]["power"]["desiredDbm"] is None
    # without the CSRF token a session is not enough
    code, body, headers = http(rig.url + "/api/login", {"password": ADMIN_PASSWORD})
    assert code == 200, body
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    session = cookie.split(";", 1)[0]
    code, body, _ = http(rig.url + "/api/readers/r1/power", {"dbm": 21},
                         headers={"Cookie": session})
    assert (code, "CSRF" in body) == (403, True)
    code, body, _ = http(rig.url + "/api/login", {"password": "wrong-password"})
    assert code == 401
    assert "failed admin login from 127.0.0.1" in rig.agent.log_text()


def test_power_change_reaches_the_reader_and_is_saved(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#settings")
    _login(driver, rig)
    box = _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"),
                                                  "[data-reader='r1'] .power-all"), 10, "form")
    box[0].clear()
    box[0].send_keys("20")
    driver.find_element(_by("CSS_SELECTOR"), "[data-reader='r1'] .power-save").click()
    driver.find_element(_by("CSS_SELECTOR"), "[data-reader='r1'] .power-apply").click()
    _wait(driver, lambda d: "confirmed" in _text(d, "[data-reader='r1'] .power-result"), 20,
          "the read-back confirmation")
    result = _text(driver, "[data-reader='r1'] .power-result")
    assert "the reader reports 20 dBm" in result, result
    assert "saved to" in result, result
    screenshot(driver, "settings")
    power = agent_status(rig.cfg)["readers"][0]["power"]
    assert power == {"desiredDbm": 20, "reportedDbm": 20, "error": None}
    assert "output power set to 20 dBm" in rig.agent.log_text()  # the simulated reader's
    text = rig.cfg.read_text()
    assert "power_dbm: 20" in text
    assert text.startswith("# the lab gateway")
    rig.original = text


def test_stop_and_start_a_reader_from_the_page(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#settings")
    _login(driver, rig)
    _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), "[data-reader='r1'] "
                                            ".reader-stop"), 10, "the form")[0].click()
    wait_until(lambda: agent_status(rig.cfg)["readers"][0]["state"] == "stopped", 10,
               "the reader to stop", diagnostics=rig.agent.log_text)
    _wait(driver, lambda d: "(r2000, stopped)" in _text(d, "[data-reader='r1'] h2"), 10,
          "the page to show it stopped")
    driver.find_element(_by("CSS_SELECTOR"), "[data-reader='r1'] .reader-start").click()
    wait_until(lambda: agent_status(rig.cfg)["readers"][0]["state"] == "connected", 20,
               "the reader to connect again", diagnostics=rig.agent.log_text)
    assert "asks to stop reader r1" in rig.agent.log_text()


def test_broken_config_is_refused_with_its_line(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#config")
    _login(driver, rig)
    area = _wait(driver, lambda d: d.find_element(_by("ID"), "config-text")
                 if "gateway:" in d.find_element(_by("ID"), "config-text").get_attribute(
                     "value") else None, 10, "the config text")
    text = area.get_attribute("value")
    assert BROKER_PASSWORD not in text
    assert "<hidden secret>" in text
    lines = text.splitlines()
    line = next(i for i, ln in enumerate(lines) if "baudrate" in ln) + 1
    broken = text.replace("baudrate: 115200", "baudrate: fast")
    driver.execute_script("arguments[0].value = arguments[1]", area, broken)
    driver.find_element(_by("ID"), "config-check").click()
    _wait(driver, lambda d: "error" in _text(d, "#config-result"), 10, "the check result")
    result = _text(driver, "#config-result")
    assert f"line {line}: readers[0].baudrate" in result, result
    screenshot(driver, "config")
    driver.find_element(_by("ID"), "config-apply").click()
    _wait(driver, lambda d: "not applied" in _text(d, "#message"), 10, "the refusal")
    assert rig.cfg.read_text() == rig.original


def test_page_never_shows_a_secret(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#overview")
    _login(driver, rig)
    for page in ("overview", "readers", "survey", "settings", "config", "diagnostics"):
        driver.get(rig.url + f"/#{page}")
        time.sleep(1.0)
        assert BROKER_PASSWORD not in driver.page_source, page
    driver.find_element(_by("ID"), "diag-run").click()
    _wait(driver, lambda d: "broker" in _text(d, "#diag-checks tbody"), 30, "doctor checks")
    _wait(driver, lambda d: "http: admin login" in _text(d, "#diag-logs"), 10, "log lines")
    screenshot(driver, "diagnostics")
    assert BROKER_PASSWORD not in driver.page_source
    for path in ("/api/status", "/api/config", "/api/readers", "/api/logs", "/status",
                 "/metrics", "/api/diagnostics"):
        assert BROKER_PASSWORD not in http(rig.url + path)[1], path
    code, body, headers = http(rig.url + "/api/bundle")
    assert code == 200
    assert "attachment" in headers["Content-Disposition"]
    assert BROKER_PASSWORD not in body
    bundle = json.loads(body)
    assert {"config", "status", "doctor", "logs", "buffer"} <= set(bundle)
    assert "<hidden secret>" in bundle["config"]["text"]


def test_config_that_cannot_connect_is_rolled_back(rig: Rig, driver: Any) -> None:
    driver.get(rig.url + "/#config")
    _login(driver, rig)
    area = _wait(driver, lambda d: d.find_element(_by("ID"), "config-text")
                 if "gateway:" in d.find_element(_by("ID"), "config-text").get_attribute(
                     "value") else None, 10, "the config text")
    text = area.get_attribute("value")
    dead = free_port()
    bad = text.replace(f"port: {rig.broker.port}", f"port: {dead}")
    assert bad != text
    driver.execute_script("arguments[0].value = arguments[1]", area, bad)
    driver.find_element(_by("ID"), "config-apply").click()
    _wait(driver, lambda d: "rolled back" in _text(d, "#config-outcome"), 60,
          "the rollback shown on the page")
    outcome = _text(driver, "#config-outcome")
    assert f"127.0.0.1:{dead} is not connected" in outcome, outcome
    assert rig.cfg.read_text() == rig.original  # the backup is back, secret and all
    _wait(driver, lambda d: f"port: {rig.broker.port}" in d.find_element(
        _by("ID"), "config-text").get_attribute("value"), 20, "the restored file on the page")
    screenshot(driver, "config-rollback")
    assert rig.agent.alive()
    wait_until(lambda: agent_status(rig.cfg)["uplink"]["connected"], 30,
               "the agent to reconnect with the restored config",
               diagnostics=rig.agent.log_text)
    log = rig.agent.log_text()
    assert "applied from the page" in log
    assert "is restored from" in log


def test_survey_stays_responsive_at_a_thousand_reads_per_second(
        tmp_path: Path, shared_mosquitto: Mosquitto, driver: Any) -> None:
    """100 tags over 4 antennas at over 900 reads/s (the simulator paces a 460800 baud line; a
    pty has no baud rate): the browser gets ~2 aggregate messages a second, not a message per
    read, and answers script calls at once."""
    sim = SimProcess("r2000", "--pty", "--tags", "100", "--tag-antennas", "1,2,3,4",
                     "--read-rate", "0", "--reads-per-round", "2", "--baud", "460800",
                     "--seed", "7",
                     log_path=tmp_path / "sim.log")
    http_addr = f"127.0.0.1:{free_port()}"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "gateway": {"id": "gw-busy", "site": "lab"},
        "readers": [{"name": "r1", "driver": "r2000", "port": sim.port, "baudrate": 230400,
                     "antennas": [1, 2, 3, 4]}],
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "uplink": {"mqtt": {"host": shared_mosquitto.host, "port": shared_mosquitto.port,
                            "topic_prefix": "trace"}},
        "status": {"socket": str(tmp_path / "agent.sock")},
        "http": {"listen": http_addr},
    }, sort_keys=False))
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: (tmp_path / "agent.sock").exists()
                   and agent_status(cfg)["readers"][0]["readRate"] > 900, 30,
                   "the reader to read fast", diagnostics=agent.log_text)
        driver.get(f"http://{http_addr}/#survey")
        driver.execute_script(
            "window.__n = 0; const o = onSurvey; onSurvey = (m) => { window.__n++; o(m); };")
        driver.find_element(_by("ID"), "survey-start").click()
        _wait(driver, lambda d: len(d.find_elements(_by("CSS_SELECTOR"),
                                                    "#survey-tags tbody tr")) >= 100, 10,
              "all 100 tags in the table")
        driver.execute_script("window.__n = 0;")
        slowest = 0.0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            t = time.monotonic()
            driver.execute_script("return document.querySelectorAll('#survey-tags tr').length")
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.2)
        messages = driver.execute_script("return window.__n")
        rate = agent_status(cfg)["readers"][0]["readRate"]
        assert rate > 900, rate
        assert 6 <= messages <= 14, messages  # ~2 per second, not one per read
        assert slowest < 0.5, slowest
        antennas = _text(driver, "#survey-antennas tbody")
        for a in ("r1/1", "r1/2", "r1/3", "r1/4"):
            assert a in antennas, antennas
        screenshot(driver, "survey-busy")
        driver.find_element(_by("ID"), "survey-stop").click()
    finally:
        assert agent.stop() == 0, agent.log_text()[-2000:]
        sim.stop()
    assert "Traceback" not in agent.log_text()
