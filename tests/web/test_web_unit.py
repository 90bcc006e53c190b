"""The technician's page without a browser: password hashes, sessions, login limits, CSRF and
the loopback rule over real HTTP (aiohttp in this process), config redaction and edits, and the
survey aggregates."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientSession, CookieJar, web
from aiohttp.test_utils import TestServer

from agent.buffer.api import BufferStats
from agent.config import ConfigError, parse_config
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.web import configedit
from agent.fieldtools.web.app import build_app
from agent.fieldtools.web.auth import (
    LoginLimiter,
    Sessions,
    csrf_ok,
    hash_password,
    token_key,
    verify_password,
    write_password_file,
)
from agent.fieldtools.web.survey import SurveyWindow
from agent.readers.status import ReaderStatus
from agent.uplink.mqtt import UplinkStats

CONFIG = """\
# comment kept
gateway: {id: gw-1, site: plant}
readers:
  - name: dock-1
    driver: r2000
    port: socket://127.0.0.1:4001
    antennas: [1, 2]
  - name: dock-2   # second door
    driver: r2000
    port: socket://127.0.0.1:4002
    power_dbm: 30
buffer: {path: /tmp/unit-buffer.db}
uplink:
  mqtt:
    host: 127.0.0.1
    port: 1883
    username: edge
    password: very-secret-pw
"""


def test_password_hash_is_scrypt_and_verifies() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert not verify_password("x", "not a hash")
    assert hash_password("same") != hash_password("same")  # salted


def test_password_file_is_private_and_refuses_short_passwords(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "admin-password"
    write_password_file(path, "long enough")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_password("long enough", path.read_text())
    with pytest.raises(ValueError, match="at least 8"):
        write_password_file(path, "short")
    import grp
    import os

    group = grp.getgrgid(os.getgid()).gr_name
    write_password_file(path, "long enough", group=group)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_gid == os.getgid()
    with pytest.raises(KeyError):
        write_password_file(path, "long enough", group="no-such-group-here")


def test_login_limiter_and_session_expiry() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(60)
    assert limiter.retry_after("b") == 0  # per client
    now[0] = 61
    assert limiter.retry_after("a") == 0
    sessions = Sessions(idle_s=10, clock=lambda: now[0])
    s = sessions.create("a")
    assert sessions.get(s.token) is s
    now[0] += 11
    assert sessions.get(s.token) is None


def test_sessions_survive_a_restart_through_a_private_store(tmp_path: Path) -> None:
    mono, wall = [100.0], [1_800_000_000.0]
    store = tmp_path / "state" / "web-sessions.json"

    def sessions() -> Sessions:
        return Sessions(idle_s=600, clock=lambda: mono[0], wall=lambda: wall[0], store=store)

    first = sessions()
    s = first.create("10.0.0.9")
    gone = first.create("10.0.0.8")
    first.drop(gone.token)
    assert store.stat().st_mode & 0o777 == 0o600
    text = store.read_text()
    assert s.token not in text  # only its hash
    assert token_key(s.token) in text
    assert token_key(gone.token) not in text
    # The restart: a new process (another monotonic clock), 100 s later by the wall clock.
    mono[0], wall[0] = 5.0, wall[0] + 100
    second = sessions()
    assert second.load() == 1
    got = second.get(s.token)
    assert got is not None
    assert (got.csrf, got.client) == (s.csrf, "10.0.0.9")
    assert csrf_ok(got, s.csrf)
    assert second.get(gone.token) is None
    assert second.get("forged-token") is None
    # Idle too long by the wall clock, or a clock that stepped back: not loaded.
    wall[0] += 601
    assert sessions().load() == 0
    wall[0] -= 10_000
    assert sessions().load() == 0
    # A store others can read is ignored.
    wall[0] += 10_000 - 601
    store.chmod(0o644)
    assert sessions().load() == 0
    store.chmod(0o600)
    assert sessions().load() == 1
    # Logout removes it from the store.
    third = sessions()
    third.load()
    third.drop(s.token)
    assert sessions().load() == 0
    # An unwritable store: logins still work, in memory only.
    bad = Sessions(store=tmp_path / "file-not-dir" / "x.json")
    (tmp_path / "file-not-dir").write_text("")
    assert bad.get(bad.create("a").token) is not None


def test_secrets_are_hidden_and_put_back() -> None:
    shown = configedit.redact(CONFIG)
    assert "very-secret-pw" not in shown
    assert 'password: "<hidden secret>"' in shown
    assert configedit.unredact(shown, CONFIG) == CONFIG
    with pytest.raises(ConfigError):
        configedit.unredact(shown, CONFIG.replace("    password: very-secret-pw\n", ""))


def test_check_text_reports_every_error_with_its_line() -> None:
    bad = CONFIG.replace("port: 1883", "port: lots").replace("driver: r2000\n    port: socket"
                                                            "://127.0.0.1:4002",
                                                            "driver: nope\n    port: x")
    result = configedit.check_text(bad, "agent.yaml")
    assert result.cfg is None
    texts = [str(i) for i in result.errors]
    assert any(t.startswith("agent.yaml:16: uplink.mqtt.port") for t in texts), texts
    assert any(t.startswith("agent.yaml:9: readers[1].driver") for t in texts), texts
    assert configedit.check_text(CONFIG, "agent.yaml").cfg is not None


def test_save_power_edits_one_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG)
    backup = configedit.save_power(path, "dock-2", 22)
    assert backup.read_text() == CONFIG
    assert path.read_text() == CONFIG.replace("power_dbm: 30", "power_dbm: 22")
    configedit.save_power(path, "dock-1", {1: 20, 2: 25})
    text = path.read_text()
    assert "  - name: dock-1\n    power_dbm: {1: 20, 2: 25}\n    driver: r2000" in text
    assert text.startswith("# comment kept")
    assert "dock-2   # second door" in text
    cfg = parse_config(text)
    assert [r.power_dbm for r in cfg.readers] == [{1: 20, 2: 25}, 22]  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        configedit.save_power(path, "dock-2", 99)  # out of range: validated before writing
    assert parse_config(path.read_text()).readers[1].power_dbm == 22  # type: ignore[union-attr]


def test_survey_folds_a_thousand_reads_into_one_small_message() -> None:
    w = SurveyWindow()
    for i in range(1000):
        w.add({"type": "read", "reader": "r1", "antenna": 1 + i % 2, "epc": f"3034{i % 5:020X}",
               "rssiDbm": -60.0 - i % 7, "time": f"t{i}", "uri": "urn:x"})
    w.add({"type": "event"})
    msg = w.flush(0.0, 0.5, dropped=3)
    assert msg["reads"] == 1000
    assert len(msg["tags"]) == 10  # 5 EPCs x 2 antennas
    assert sum(t["count"] for t in msg["tags"]) == 1000
    assert msg["antennas"]["r1/1"]["readsPerS"] == 1000.0
    assert msg["antennas"]["r1/1"]["rssiMax"] == -60.0
    assert all(t["peakRssi"] >= t["lastRssi"] for t in msg["tags"])
    assert w.flush(0.5, 0.5, 0)["tags"] == []
    only = SurveyWindow(prefix="E2")
    only.add({"type": "read", "reader": "r1", "antenna": 1, "epc": "3034AA", "time": "t"})
    assert only.reads == 0


# ----------------------------------------------------------------------------- over HTTP


@dataclass
class _Buffer:
    async def stats(self) -> BufferStats:
        return BufferStats(generation="g", reads_pending=0, events_pending=0, events_leased=0,
                           oldest_event_age_s=None, size_bytes=4096, dropped_total=0,
                           dead_letters=0, quarantined_files=0, disk_full=False)


@dataclass
class _Uplink:
    connected: bool = True

    def stats(self) -> UplinkStats:
        return UplinkStats(connected=True, connects=1, reconnects=0, connection_losses=0,
                           connect_failures=0, published_ok=5, published_refused=0,
                           publish_timeouts=0, late_acks=0, dropped_too_large=0, in_flight=0,
                           window=20)


@dataclass
class _Forwarder:
    delivered_events: int = 0
    delivered_messages: int = 0
    dead_lettered: int = 0
    last_refusal: str | None = None
    refused_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class _Ingest:
    accepted_total: int = 0
    waiting: int = 0
    paused: bool = False


@dataclass
class _Power:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def set_reader_power(self, reader: str, dbm: Any) -> dict[str, Any]:
        self.calls.append((reader, dbm))
        return {"reader": reader, "applied": True, "reportedDbm": dbm}

    async def set_reader_settings(self, reader: str, settings: Any) -> dict[str, Any]:
        self.calls.append((reader, dict(settings)))
        return {"reader": reader, "confirmed": True, "desired": dict(settings)}

    async def start_reader(self, reader: str) -> dict[str, Any]:
        self.calls.append((reader, "start"))
        return {"reader": reader, "state": "started"}

    async def stop_reader(self, reader: str) -> dict[str, Any]:
        self.calls.append((reader, "stop"))
        return {"reader": reader, "state": "stopped"}


def _runtime(tmp_path: Path, *, listen: str, password: str | None, http_extra: str = ""
             ) -> Runtime:
    pw = tmp_path / "admin-password"
    text = CONFIG + f"http: {{listen: '{listen}', admin_password_file: {pw}{http_extra}}}\n"
    if password is not None:
        write_password_file(pw, password)
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    cfg = parse_config(text)
    readers = {r.name: ReaderStatus(r.name, r.driver, str(r.port)) for r in cfg.readers}
    return Runtime(cfg, readers, _Buffer(), _Uplink(), _Forwarder(), _Ingest(),
                   config_path=path, reader_commands=_Power())


@pytest.fixture
async def client_factory() -> AsyncIterator[Any]:
    servers: list[TestServer] = []
    sessions: list[ClientSession] = []

    async def make(rt: Runtime) -> tuple[ClientSession, str]:
        server = TestServer(build_app(rt, lambda door, why: None))
        await server.start_server()
        servers.append(server)
        session = ClientSession(cookie_jar=CookieJar(unsafe=True))  # cookies for an IP
        sessions.append(session)
        return session, str(server.make_url("")).rstrip("/")

    yield make
    for s in sessions:
        await s.close()
    for srv in servers:
        await srv.close()


async def test_without_a_password_file_changes_are_refused_naming_the_command(
        tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password=None)
    http, base = await client_factory(rt)
    async with http.post(base + "/api/readers/dock-1/power", json={"dbm": 20}) as r:
        assert r.status == 403
        assert "edge-agent set-admin-password" in (await r.json())["error"]
    async with http.get(base + "/api/status") as r:  # read-only pages stay open on loopback
        assert r.status == 200
        assert "very-secret-pw" not in await r.text()
    assert rt.reader_commands is not None
    assert rt.reader_commands.calls == []  # type: ignore[attr-defined]


async def test_login_csrf_and_power_through_the_remote_command_path(
        tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password="admin-pass-1")
    http, base = await client_factory(rt)
    async with http.post(base + "/api/readers/dock-1/power", json={"dbm": 20}) as r:
        assert r.status == 401
    async with http.post(base + "/api/login", json={"password": "admin-pass-1"}) as r:
        assert r.status == 200
        csrf = (await r.json())["csrf"]
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    async with http.post(base + "/api/readers/dock-1/power", json={"dbm": 20}) as r:
        assert r.status == 403  # no CSRF token
    async with http.post(base + "/api/readers/dock-1/power", json={"dbm": 20},
                         headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200
        assert (await r.json())["applied"] is True
    async with http.post(base + "/api/readers/dock-1/stop", headers={"X-CSRF-Token": csrf}) as r:
        assert (await r.json())["state"] == "stopped"
    async with http.post(base + "/api/readers/dock-1/start") as r:
        assert r.status == 403  # no CSRF token
    assert rt.reader_commands.calls == [  # type: ignore[union-attr]
        ("dock-1", 20), ("dock-1", "stop")]


async def test_reader_settings_through_the_remote_command_path_and_saved(
        tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password="admin-pass-1")
    http, base = await client_factory(rt)
    body = {"settings": {"antennas": [1, 3], "session": 2}, "save": True}
    async with http.post(base + "/api/readers/dock-1/settings", json=body) as r:
        assert r.status == 401
    async with http.post(base + "/api/login", json={"password": "admin-pass-1"}) as r:
        csrf = (await r.json())["csrf"]
    async with http.get(base + "/api/readers") as r:
        dock1 = (await r.json())["readers"][0]
    assert dock1["configSettings"] == {"antennas": [1, 2], "session": 1,
                                       "inventory": "real_time", "target": "A"}
    assert dock1["settingsChoices"]["inventory"] == ["real_time", "session", "fast_switch"]
    async with http.post(base + "/api/readers/dock-1/settings", json={"settings": [1]},
                         headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 400
    async with http.post(base + "/api/readers/dock-1/settings", json=body,
                         headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200
        out = await r.json()
    assert out["confirmed"] is True
    assert out["saved"]["ok"] is True, out
    assert rt.reader_commands.calls == [  # type: ignore[union-attr]
        ("dock-1", {"antennas": [1, 3], "session": 2})]
    text = (tmp_path / "agent.yaml").read_text()
    assert ("  - name: dock-1\n    session: 2\n    driver: r2000\n"
            "    port: socket://127.0.0.1:4001\n    antennas: [1, 3]\n") in text, text
    cfg = parse_config(text)
    assert (cfg.readers[0].antennas, cfg.readers[0].session) == ([1, 3], 2)  # type: ignore[union-attr]


def test_save_settings_edits_lines_keeps_comments_and_checks_the_result(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG.replace("    antennas: [1, 2]", "    antennas: [1, 2]  # doors"))
    configedit.save_settings(path, "dock-1", {"antennas": [2, 4], "inventory": "session",
                                              "session": 3})
    text = path.read_text()
    assert "    antennas: [2, 4]  # doors\n" in text
    assert '    inventory: "session"\n' in text
    assert "    session: 3\n" in text
    assert "dock-2   # second door" in text
    assert text.startswith("# comment kept")
    r = parse_config(text).readers[0]
    assert (r.antennas, r.inventory, r.session) == ([2, 4], "session", 3)  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        configedit.save_settings(path, "dock-1", {"session": 5})  # validated before writing
    assert parse_config(path.read_text()).readers[0].session == 3  # type: ignore[union-attr]
    # A block list of scalars (what yaml.safe_dump writes) becomes one flow line.
    for items in ("    - 1\n    - 2", "      - 1\n      - 2"):
        block = CONFIG.replace("    antennas: [1, 2]", "    antennas:\n" + items)
        path.write_text(block)
        configedit.save_settings(path, "dock-1", {"antennas": [1, 3]})
        assert path.read_text() == CONFIG.replace("antennas: [1, 2]", "antennas: [1, 3]")
    nested = CONFIG.replace("    antennas: [1, 2]", "    antennas:\n    - {a: 1}")
    path.write_text(nested)
    with pytest.raises((ValueError, ConfigError)):
        configedit.save_settings(path, "dock-1", {"antennas": [1]})
    assert path.read_text() == nested


async def test_failed_logins_are_rate_limited(tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password="admin-pass-1")
    http, base = await client_factory(rt)
    codes = []
    for _ in range(6):
        async with http.post(base + "/api/login", json={"password": "nope-nope"}) as r:
            codes.append(r.status)
    assert codes == [401] * 5 + [429]
    async with http.post(base + "/api/login", json={"password": "admin-pass-1"}) as r:
        assert r.status == 429  # even the right password waits out the window


async def test_not_loopback_every_page_needs_login(tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="0.0.0.0:9108", password="admin-pass-1")
    http, base = await client_factory(rt)
    for path in ("/api/status", "/api/config", "/api/readers", "/api/logs", "/status",
                 "/api/bundle", "/api/survey", "/static/app.js", "/static/style.css",
                 "/static/index.html", "/api/session", "/favicon.ico", "/index.html"):
        async with http.get(base + path) as r:
            assert r.status in (401, 404), path  # 404: no such page, nothing served either
            assert "gateway" not in await r.text(), path
    async with http.get(base + "/") as r:  # the login page only, self-contained
        assert r.status == 200
        page = await r.text()
    assert 'id="login-form"' in page
    assert "/static/" not in page
    assert "app.js" not in page
    assert "Reader settings" not in page
    for path in ("/health", "/metrics"):
        async with http.get(base + path) as r:
            assert r.status in (200, 503), path  # /health: 503, no agent tasks run here
    async with http.post(base + "/api/login", json={"password": "admin-pass-1"}) as r:
        assert r.status == 200
    async with http.get(base + "/") as r:  # now the page itself
        assert r.status == 200
        assert "/static/app.js" in await r.text()
    for path in ("/static/app.js", "/api/session"):
        async with http.get(base + path) as r:
            assert r.status == 200, path
    async with http.get(base + "/api/config") as r:
        assert r.status == 200
        doc = await r.json()
    assert "very-secret-pw" not in doc["text"]
    assert "<hidden secret>" in doc["text"]


async def test_a_foreign_host_name_is_refused_on_loopback(
        tmp_path: Path, client_factory: Any) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 gets nothing but /health, /metrics."""
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password=None)
    http, base = await client_factory(rt)
    for path, code in (("/api/config", 403), ("/", 403), ("/metrics", 200)):
        async with http.get(base + path, headers={"Host": "evil.example:9108"}) as r:
            assert r.status == code, path
    for host in ("localhost:9108", "127.0.0.1:9108", "[::1]:9108", "localhost"):
        async with http.get(base + "/api/config", headers={"Host": host}) as r:
            assert r.status == 200, host


async def test_apply_is_refused_clearly_when_the_config_cannot_be_written(
        tmp_path: Path, client_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As under the shipped systemd unit (ProtectSystem=strict: /etc is read-only). The tests
    run as root, where a read-only directory is still writable: access() is what says no."""
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password="admin-pass-1")
    rt.restart = lambda: None
    http, base = await client_factory(rt)
    async with http.post(base + "/api/login", json={"password": "admin-pass-1"}) as r:
        csrf = (await r.json())["csrf"]
    assert rt.config_path is not None
    before = rt.config_path.read_text()
    monkeypatch.setattr("agent.fieldtools.web.configedit.os.access",
                        lambda path, mode: Path(path) != tmp_path)
    async with http.post(base + "/api/config/apply", json={"text": before.replace(
            "gw-1", "gw-2")}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 409
        error = (await r.json())["error"]
        assert f"the agent may not write {tmp_path}" in error
        assert "sudo sh deploy/install.sh --web-admin" in error  # the way to allow it
    async with http.post(base + "/api/readers/dock-2/power", json={"dbm": 20, "save": True},
                         headers={"X-CSRF-Token": csrf}) as r:
        saved = (await r.json())["saved"]
    assert saved["ok"] is False
    assert "may not write" in saved["error"]
    assert rt.config_path.read_text() == before


async def test_without_the_ui_only_metrics_health_and_status(
        tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password=None, http_extra=", ui: false")
    http, base = await client_factory(rt)
    for path, codes in (("/", {404}), ("/api/status", {404}), ("/metrics", {200}),
                        ("/status", {200}), ("/health", {200, 503})):
        async with http.get(base + path) as r:
            assert r.status in codes, path
    async with http.head(base + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_a_busy_port_is_logged_and_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from agent.fieldtools.web import app as web_app
    from tests.support.mosquitto import free_port

    listen = f"127.0.0.1:{free_port()}"
    first = await web_app.start(_runtime(tmp_path, listen=listen, password=None),
                                lambda door, why: None)
    assert first is not None
    try:
        second = await web_app.start(_runtime(tmp_path, listen=listen, password=None),
                                     lambda door, why: None)
        assert second is None
        assert f"http: cannot listen on {listen}" in caplog.text
    finally:
        await web_app.stop(first)


def test_flow_style_secrets_are_hidden_and_refused_if_left() -> None:
    text = CONFIG.replace("    username: edge\n    password: very-secret-pw\n", "") \
        .replace("  mqtt:\n    host: 127.0.0.1\n    port: 1883\n",
                 "  mqtt: {host: 127.0.0.1, port: 1883, username: u, password: flow-secret}\n")
    assert "flow-secret" in text
    shown = configedit.redact(text)
    assert "flow-secret" not in shown
    back = configedit.unredact(shown, text)  # flow style is not put back ...
    assert configedit.HIDDEN in back
    from agent.fieldtools.web.app import _checked

    result = _checked(Path("agent.yaml"), back)  # ... so check and apply refuse it
    assert result.cfg is None
    assert "is left where a secret value belongs" in str(result.errors[-1])


async def test_static_files_only_from_the_package(tmp_path: Path, client_factory: Any) -> None:
    rt = _runtime(tmp_path, listen="127.0.0.1:9108", password=None)
    http, base = await client_factory(rt)
    for path in ("/static/..%2Fapp.py", "/static/app.py", "/static/.hidden.js", "/nope"):
        async with http.get(base + path) as r:
            assert r.status == 404, path
    async with http.post(base + "/metrics") as r:
        assert r.status == 405


_ = web  # the aiohttp server module is what build_app returns


def test_an_applied_config_that_cannot_start_is_rolled_back_at_start(tmp_path: Path) -> None:
    """The buffer of the applied config cannot be opened: the agent puts the backup back and
    runs again with it (same pid), instead of exiting with the new config in place."""
    import json as _json
    import time as _time

    from tests.support.harness import AgentProcess, wait_until
    from tests.support.mosquitto import free_port

    good = (CONFIG.replace("/tmp/unit-buffer.db", str(tmp_path / "buffer.db"))
            .replace("port: 1883", f"port: {free_port()}")
            + f"status: {{socket: {tmp_path / 'agent.sock'}}}\nhttp: {{listen: '127.0.0.1:0'}}\n")
    path = tmp_path / "agent.yaml"
    backup = tmp_path / "agent.yaml.bak"
    backup.write_text(good)
    path.write_text(good.replace(str(tmp_path / "buffer.db"), "/proc/no/such/buffer.db"))
    configedit.write_note(path, {"state": "probation", "backup": str(backup),
                                 "appliedAt": _time.time(), "confirmS": 5})
    agent = AgentProcess(path, tmp_path / "agent.log")
    try:
        wait_until(lambda: (tmp_path / "agent.sock").exists(), 30, "the agent on the backup",
                   diagnostics=agent.log_text)
        assert agent.alive()
        assert path.read_text() == good
        note = _json.loads((tmp_path / "agent.yaml.apply.json").read_text())
        assert note["state"] == "rolled back"
        assert "it does not start: buffer error" in note["reason"]
    finally:
        agent.stop()


async def test_https_when_a_certificate_is_configured(tmp_path: Path) -> None:
    import ssl

    from agent.fieldtools.web import app as web_app
    from tests.support.tlscerts import make_pki

    pki = make_pki(tmp_path / "pki")
    rt = _runtime(tmp_path, listen="127.0.0.1:0", password="admin-pass-1",
                  http_extra=f", tls: {{cert: {pki.server_cert}, key: {pki.server_key}}}")
    runner = await web_app.start(rt, lambda door, why: None)
    assert runner is not None
    try:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        base = f"https://{rt.http_address}"
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
            async with http.get(base + "/metrics", ssl=ctx) as r:
                assert r.status == 200
            async with http.post(base + "/api/login", json={"password": "admin-pass-1"},
                                 ssl=ctx) as r:
                assert r.status == 200
                assert "Secure" in r.headers["Set-Cookie"]
    finally:
        await web_app.stop(runner)


def test_every_configured_secret_is_scrubbed(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.fieldtools.web.bundle import scrub, secret_values

    (tmp_path / "cmd-secret").write_text("command-secret-123\n")
    monkeypatch.setenv("TEST_MQTT_PW", "env-password-456")
    cfg = parse_config(CONFIG.replace("    password: very-secret-pw\n",
                                      "    password_env: TEST_MQTT_PW\n")
                       + f"  commands: {{enabled: true, secret_file: {tmp_path / 'cmd-secret'}}}\n")
    found = secret_values(cfg)
    assert set(found) == {"command-secret-123", "env-password-456"}
    assert scrub("a env-password-456 b command-secret-123", found) == \
        f"a {configedit.HIDDEN} b {configedit.HIDDEN}"
    assert secret_values(parse_config(CONFIG)) == ["very-secret-pw"]


async def test_the_lazy_listener_binds_at_start_and_loads_the_page_at_the_first_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.fieldtools.server import LazyHttp
    from agent.fieldtools.web import app as web_app
    from tests.support.mosquitto import free_port

    listen = f"127.0.0.1:{free_port()}"
    rt = _runtime(tmp_path, listen=listen, password=None)
    assert LazyHttp.applies(rt.cfg)
    lazy = LazyHttp.open(rt, lambda door, why: None)
    assert lazy is not None
    assert rt.http_address == listen
    try:
        busy = LazyHttp.open(_runtime(tmp_path, listen=listen, password=None),
                             lambda door, why: None)
        assert busy is None  # a second agent on the port: logged, and it goes on without
        assert f"http: cannot listen on {listen}" in caplog.text
        task = asyncio.create_task(lazy.run(), name="http-first-connection")
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/health") as r:
            assert r.status in (200, 503)
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as r:
            assert r.status == 200  # served by aiohttp on the socket it took over
        await asyncio.wait_for(task, 5)
        assert lazy.runner is not None
    finally:
        await lazy.close()
    # Closed before any connection: nothing was loaded, the socket is let go.
    quiet = LazyHttp.open(_runtime(tmp_path, listen=listen, password=None),
                          lambda door, why: None)
    assert quiet is not None
    await quiet.close()
    # The page's server failing to start is logged; the agent goes on without it.
    broken = LazyHttp.open(_runtime(tmp_path, listen=listen, password=None),
                           lambda door, why: None)
    assert broken is not None

    async def refuse(*_: object) -> None:
        raise OSError("sessions file unreadable")

    monkeypatch.setattr(web_app, "setup_runner", refuse)
    task = asyncio.create_task(broken.run(), name="http-first-connection")
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/health"):
            pass
    await asyncio.wait_for(task, 5)
    assert "the page's server cannot start (sessions file unreadable)" in caplog.text
    await broken.close()
