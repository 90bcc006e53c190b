"""The HTTP server on ``http.listen``: /metrics, /health, /status and the technician's page.

Read-only pages and their JSON are open on a loopback listener; on any other address every
page, the static files and the JSON need a login: without a session ``/`` is a self-contained
login page and everything else answers 401 (/metrics and /health stay open for Prometheus and
probes, as before; they carry no secret).
Anything that changes state needs the admin password's session and its CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import shutil
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agent.config import ConfigError, ConfigIssue, is_loopback
from agent.fieldtools.doctor import (
    Check,
    Doctor,
    certificate_checks,
    clock_check,
    disk_check,
)
from agent.fieldtools.metrics import render
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.web import configedit
from agent.fieldtools.web.auth import (
    COOKIE,
    SET_PASSWORD_HINT,
    LoginLimiter,
    PasswordFileError,
    Session,
    Sessions,
    csrf_ok,
    read_password_hash,
    verify_password,
)
from agent.fieldtools.web.bundle import LogRing, bundle, scrub, secret_values
from agent.fieldtools.web.survey import SurveyWindow
from agent.readers.control import settings_choices, settings_of
from agent.uplink.commands import CommandError

log = logging.getLogger("agent.fieldtools.web")

SURVEY_INTERVAL_S = 0.5
SURVEY_QUEUE = 20_000
SSE_HEARTBEAT_S = 10.0
POWER_CONFIRM_S = 8.0
MAX_BODY = 256 * 1024
# Open without a session on a non-loopback listener ("/" then serves the login page only).
OPEN_PATHS = {"/health", "/metrics", "/api/login"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BadRequest = Callable[[str, str], None]


@dataclass(slots=True)
class WebState:
    rt: Runtime
    bad_request: BadRequest
    logs: LogRing = field(default_factory=LogRing)
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.rt.cfg.http.host_port[0])

    def password_hash(self) -> str | None:
        return read_password_hash(self.rt.cfg.http.admin_password_file)

    def secrets(self) -> list[str]:
        return secret_values(self.rt.cfg)


STATE: web.AppKey[WebState] = web.AppKey("state", WebState)


def _json(data: Any, status: int = 200, state: WebState | None = None) -> web.Response:
    text = json.dumps(data, default=str)
    if state is not None:
        text = scrub(text, state.secrets())
    return web.Response(text=text, status=status, content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


def _client(request: web.Request) -> str:
    return request.remote or "?"


def _loopback_host(request: web.Request) -> bool:
    host = request.host
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def _session(request: web.Request) -> Session | None:
    return request.app[STATE].sessions.get(request.cookies.get(COOKIE))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    st = request.app[STATE]
    path = request.path
    try:
        if request.match_info.http_exception is not None:  # 404 / 405: nothing to guard
            return await handler(request)
        if st.loopback and path not in ("/health", "/metrics") and not _loopback_host(request):
            # DNS rebinding: a web site whose name now points at 127.0.0.1 must not read
            # the page from the technician's browser.
            st.bad_request("http", f"Host {request.host[:60]!r} is not a loopback name")
            return _error(403, "open the page as http://127.0.0.1:PORT or http://localhost:PORT "
                          "(an SSH tunnel)")
        if request.method == "POST" and path != "/api/login":
            try:
                stored = st.password_hash()
            except PasswordFileError as exc:
                return _error(403, f"changes are refused: {exc}")
            if stored is None:
                return _error(403, "changes are refused: no admin password is set; set "
                              f"http.admin_password_file and run `{SET_PASSWORD_HINT}`")
            session = _session(request)
            if session is None:
                return _error(401, "log in with the admin password to change anything")
            if not csrf_ok(session, request.headers.get("X-CSRF-Token")):
                log.warning("http: %s %s from %s refused: missing or wrong CSRF token",
                            request.method, path, _client(request))
                return _error(403, "missing or wrong CSRF token; reload the page")
        elif not st.loopback and path not in OPEN_PATHS and _session(request) is None:
            if path == "/" and request.method == "GET" and st.rt.cfg.http.ui:
                return login_page()
            return _error(401, "log in to see this page (the listener is not loopback)")
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            st.bad_request("http", f"{request.method} {path[:80]!r}: {exc.reason}")
            if exc.status == 404:
                return web.Response(status=404, text="not found: try /, /metrics or /health\n")
        raise


# ----------------------------------------------------------------------------- metrics, health


async def metrics(request: web.Request) -> web.Response:
    snap = await request.app[STATE].rt.snapshot()
    return web.Response(body=render(snap).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def health(request: web.Request) -> web.Response:
    snap = await request.app[STATE].rt.snapshot()
    h = snap["health"]
    return web.Response(
        status=200 if h["ok"] else 503, content_type="application/json",
        text=json.dumps({"status": "ok" if h["ok"] else "unhealthy", "reasons": h["reasons"]},
                        separators=(",", ":")) + "\n")


def alarms(snap: dict[str, Any]) -> list[str]:
    """What a technician should look at first, from the snapshot."""
    out: list[str] = []
    for r in snap["readers"]:
        if r["state"] != "connected":
            out.append(f"reader {r['name']} {r['state']}"
                       + (f": {r['lastError']}" if r.get("lastError") else ""))
        out.extend(f"reader {r['name']} antenna {a} disconnected"
                   for a, s in (r.get("antennas") or {}).items() if s != "connected")
        if r.get("power", {}).get("error"):
            out.append(f"reader {r['name']} power: {r['power']['error']}")
    b = snap["buffer"]
    if b.get("diskFull"):
        out.append("buffer: the disk is full")
    if b.get("deadLettersFull"):
        out.append("buffer: dead letters at their cap")
    for name, c in (snap.get("certificates") or {}).items():
        if c.get("warning"):
            out.append(f"certificate {name}: {c.get('daysLeft')} days left")
    if not snap["uplink"]["connected"]:
        out.append(f"broker {snap['uplink']['broker']} not connected")
    return out


async def status(request: web.Request) -> web.Response:
    st = request.app[STATE]
    snap = await st.rt.snapshot()
    if request.path.startswith("/api/"):
        snap["alarms"] = alarms(snap)
    return _json(snap, state=st)


# ----------------------------------------------------------------------------- page, session


def _static(name: str) -> bytes:
    return resources.files("agent.fieldtools.web").joinpath("static", name).read_bytes()


STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".svg": "image/svg+xml"}


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def login_page() -> web.Response:
    """All a browser without a session gets on a non-loopback listener (inline CSS and JS:
    the static files need the login too)."""
    return web.Response(body=_static("login.html"), content_type="text/html",
                        charset="utf-8", headers={"Cache-Control": "no-store"})


async def index(_request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html",
                        charset="utf-8", headers={"Cache-Control": "no-store"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = STATIC_TYPES.get(Path(name).suffix)
    if kind is None or "/" in name or name.startswith("."):
        raise web.HTTPNotFound
    try:
        body = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound from None
    return web.Response(body=body, content_type=kind, charset="utf-8")


async def session_info(request: web.Request) -> web.Response:
    st = request.app[STATE]
    s = _session(request)
    try:
        password_set, problem = st.password_hash() is not None, None
    except PasswordFileError as exc:
        password_set, problem = False, str(exc)
    return _json({"loggedIn": s is not None, "csrf": s.csrf if s else None,
                  "passwordSet": password_set, "passwordProblem": problem,
                  "loginRequired": not st.loopback, "setPasswordHint": SET_PASSWORD_HINT})


async def login(request: web.Request) -> web.Response:
    st = request.app[STATE]
    client = _client(request)
    wait = st.limiter.retry_after(client)
    if wait > 0:
        log.warning("http: login from %s refused: too many failed attempts (retry in %.0f s)",
                    client, wait)
        return _error(429, f"too many failed logins; try again in {wait:.0f} s")
    try:
        body = await request.json()
        password = str(body["password"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "expected {\"password\": ...}")
    try:
        stored = st.password_hash()
    except PasswordFileError as exc:
        return _error(403, str(exc))
    if stored is None:
        return _error(403, f"no admin password is set: run `{SET_PASSWORD_HINT}`")
    if not await asyncio.to_thread(verify_password, password, stored):
        st.limiter.failed(client)
        log.warning("http: failed admin login from %s", client)
        return _error(401, "wrong password")
    st.limiter.succeeded(client)
    st.sessions.drop(request.cookies.get(COOKIE))
    s = st.sessions.create(client)
    log.info("http: admin login from %s", client)
    resp = _json({"loggedIn": True, "csrf": s.csrf})
    resp.set_cookie(COOKIE, s.token, httponly=True, samesite="Strict", path="/",
                    secure=st.rt.cfg.http.tls.cert is not None)
    return resp


async def logout(request: web.Request) -> web.Response:
    st = request.app[STATE]
    st.sessions.drop(request.cookies.get(COOKIE))
    log.info("http: admin logout from %s", _client(request))
    resp = _json({"loggedIn": False})
    resp.del_cookie(COOKIE, path="/")
    return resp


# ----------------------------------------------------------------------------- live survey


async def survey(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: one ``survey`` aggregate every SURVEY_INTERVAL_S."""
    rt = request.app[STATE].rt
    window = SurveyWindow(prefix=request.query.get("prefix", "").strip().upper())
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store"})
    await resp.prepare(request)
    with rt.tap.subscribe(None, maxsize=SURVEY_QUEUE) as sub, contextlib.suppress(
            ConnectionResetError):  # the browser went away (stop, another page, closed)
        await resp.write(b"retry: 2000\n\n")
        reported = 0
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(SURVEY_INTERVAL_S)
            while not sub.queue.empty():
                window.add(sub.queue.get_nowait())
            dropped, reported = sub.dropped - reported, sub.dropped
            now = time.monotonic()
            if window.reads or dropped or now - last_beat > SSE_HEARTBEAT_S:
                last_beat = now
                msg = window.flush(time.time(), SURVEY_INTERVAL_S, dropped)
                await resp.write(b"data: " + json.dumps(msg).encode() + b"\n\n")
    return resp


# ----------------------------------------------------------------------------- readers


async def readers(request: web.Request) -> web.Response:
    st = request.app[STATE]
    snap = await st.rt.snapshot()
    out = []
    for r in snap["readers"]:
        rc = next((c for c in st.rt.cfg.readers if c.name == r["name"]), None)
        out.append({**r, "enabled": rc.enabled if rc else None,
                    "configAntennas": list(getattr(rc, "antennas", []) or []),
                    "configPowerDbm": getattr(rc, "power_dbm", None),
                    "configSettings": settings_of(rc) if rc else None,
                    "settingsChoices": settings_choices(
                        rc, (r.get("settings") or {}).get("maxAntennas")) if rc else {}})
    return _json({"readers": out, "canSave": st.rt.config_path is not None}, state=st)


async def set_power(request: web.Request) -> web.Response:
    st = request.app[STATE]
    name = request.match_info["name"]
    setter = st.rt.reader_commands
    if setter is None:
        return _error(503, "setting power is not available in this agent")
    try:
        body = await request.json()
        dbm = body["dbm"]
        save = bool(body.get("save", False))
    except (ValueError, KeyError, TypeError):
        return _error(400, 'expected {"dbm": N or {"port": N, ...}, "save": true|false}')
    client = _client(request)
    log.info("http: %s sets the output power of %s to %s dBm%s", client, name,
             json.dumps(dbm), " (and saves it)" if save else "")
    try:
        outcome = dict(await setter.set_reader_power(name, dbm))
    except CommandError as exc:
        log.warning("http: power of %s not set: %s", name, exc.message)
        return _error(400 if exc.code == "bad_argument" else 409, exc.message, code=exc.code)
    if save:
        outcome["saved"] = await _save_power(st, name, dbm)
    return _json(outcome, state=st)


async def set_settings(request: web.Request) -> web.Response:
    """Antennas, session, inventory mode...: the remote set_reader_settings command's code
    (a reconnect, then the reader's read-back); ``save`` writes them into the YAML."""
    st = request.app[STATE]
    name = request.match_info["name"]
    setter = st.rt.reader_commands
    if setter is None:
        return _error(503, "reader settings are not available in this agent")
    try:
        body = await request.json()
        settings = body["settings"]
        save = bool(body.get("save", False))
    except (ValueError, KeyError, TypeError):
        settings = None
    if not isinstance(settings, dict):
        return _error(400, 'expected {"settings": {"antennas": [...], "session": N, ...}, '
                      '"save": true|false}')
    log.info("http: %s sets reader %s to %s%s", _client(request), name,
             json.dumps(settings), " (and saves it)" if save else "")
    try:
        outcome = dict(await setter.set_reader_settings(name, settings))
    except CommandError as exc:
        log.warning("http: settings of %s not set: %s", name, exc.message)
        return _error(400 if exc.code == "bad_argument" else 409, exc.message, code=exc.code)
    if save:
        outcome["saved"] = await _save_settings(st, name, dict(outcome.get("desired") or {}))
    return _json(outcome, state=st)


async def _save_settings(st: WebState, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    path = st.rt.config_path
    if path is None:
        return {"ok": False, "error": "the agent was not started from a config file"}
    try:
        backup = await asyncio.to_thread(configedit.save_settings, path, name, settings)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(i) for i in exc.issues)}
    except (ValueError, OSError) as exc:
        return {"ok": False, "error": str(exc)}
    log.info("http: settings %s of %s saved to %s (backup %s)", sorted(settings), name, path,
             backup)
    return {"ok": True, "path": str(path), "backup": str(backup)}


async def reader_action(request: web.Request) -> web.Response:
    """Start or stop a reader (the remote start_reader / stop_reader commands)."""
    st = request.app[STATE]
    name, action = request.match_info["name"], request.match_info["action"]
    commands = st.rt.reader_commands
    if commands is None:
        return _error(503, "reader commands are not available in this agent")
    log.info("http: %s asks to %s reader %s", _client(request), action, name)
    try:
        if action == "start":
            outcome = await commands.start_reader(name)
        else:
            outcome = await commands.stop_reader(name)
    except CommandError as exc:
        return _error(400 if exc.code == "bad_argument" else 409, exc.message, code=exc.code)
    return _json(dict(outcome), state=st)


async def _save_power(st: WebState, name: str, dbm: Any) -> dict[str, Any]:
    path = st.rt.config_path
    if path is None:
        return {"ok": False, "error": "the agent was not started from a config file"}
    try:
        power = dbm if isinstance(dbm, int) else {int(k): int(v) for k, v in dbm.items()}
        backup = await asyncio.to_thread(configedit.save_power, path, name, power)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(i) for i in exc.issues)}
    except (ValueError, OSError, AttributeError) as exc:
        return {"ok": False, "error": str(exc)}
    log.info("http: power_dbm of %s saved to %s (backup %s)", name, path, backup)
    return {"ok": True, "path": str(path), "backup": str(backup)}


# ----------------------------------------------------------------------------- configuration


def _config_file(st: WebState) -> Path:
    if st.rt.config_path is None:
        raise web.HTTPConflict(text="the agent was not started from a config file")
    return st.rt.config_path


async def config_get(request: web.Request) -> web.Response:
    st = request.app[STATE]
    path = _config_file(st)
    text = await asyncio.to_thread(path.read_text)
    return _json({"path": str(path), "text": configedit.redact(text),
                  "outcome": configedit.read_note(path)}, state=st)


async def _posted_text(request: web.Request, path: Path) -> str:
    try:
        body = await request.json()
        text = str(body["text"])
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='expected {"text": "..."}') from None
    current = await asyncio.to_thread(path.read_text)
    return configedit.unredact(text, current)


def _checked(path: Path, text: str) -> configedit.CheckResult:
    result = configedit.check_text(text, str(path))
    if result.cfg is not None and configedit.HIDDEN in text:
        result.cfg = None
        result.errors.append(ConfigIssue(
            str(path), next(i + 1 for i, ln in enumerate(text.splitlines())
                            if configedit.HIDDEN in ln), "",
            f"{configedit.HIDDEN} is left where a secret value belongs; type the value"))
    return result


async def config_check(request: web.Request) -> web.Response:
    st = request.app[STATE]
    path = _config_file(st)
    try:
        text = await _posted_text(request, path)
    except ConfigError as exc:
        return _json(configedit.CheckResult(None, list(exc.issues)).as_dict(), state=st)
    return _json(_checked(path, text).as_dict(), state=st)


async def config_apply(request: web.Request) -> web.Response:
    st = request.app[STATE]
    path = _config_file(st)
    try:
        text = await _posted_text(request, path)
    except ConfigError as exc:
        return _json(configedit.CheckResult(None, list(exc.issues)).as_dict(), 400, state=st)
    result = _checked(path, text)
    if result.cfg is None:
        log.warning("http: config apply from %s refused: %d error(s): %s", _client(request),
                    len(result.errors), "; ".join(str(i) for i in result.errors[:3]))
        return _json({**result.as_dict(), "applied": False}, 400, state=st)
    if st.rt.restart is None:
        return _error(503, "this agent cannot restart itself to apply a config")
    why = configedit.not_writable(path)
    if why:
        log.warning("http: config apply from %s refused: %s", _client(request), why)
        return _error(409, f"not applied: {why}")
    note = {"state": "probation", "config": str(path), "backup": "",
            "by": _client(request), "appliedAt": time.time(),
            "confirmS": result.cfg.http.apply_confirm_s}
    try:
        backup = await asyncio.to_thread(configedit.write_atomic, path, text)
    except OSError as exc:
        log.warning("http: config apply from %s failed: %s", _client(request), exc)
        return _error(500, f"not applied: cannot write {path}: {exc.strerror or exc}")
    note["backup"] = str(backup)
    try:
        await asyncio.to_thread(configedit.write_note, path, note)
    except OSError as exc:  # without the note nothing would roll back: undo the change
        await asyncio.to_thread(shutil.copy2, backup, path)
        log.warning("http: config apply from %s undone: cannot write its note: %s",
                    _client(request), exc)
        return _error(500, f"not applied: cannot write {configedit.note_path(path)}: "
                      f"{exc.strerror or exc}")
    log.warning("http: config %s applied from the page by %s (backup %s); restarting to load "
                "it; it must connect its readers and the broker within %g s or it is rolled "
                "back", path, _client(request), backup, result.cfg.http.apply_confirm_s)
    st.rt.restart()
    return _json({**result.as_dict(), "applied": True, "outcome": note}, state=st)


async def config_outcome(request: web.Request) -> web.Response:
    st = request.app[STATE]
    return _json({"outcome": configedit.read_note(_config_file(st))}, state=st)


# ----------------------------------------------------------------------------- diagnostics


async def _doctor(st: WebState, snap: dict[str, Any]) -> list[Check]:
    """Doctor's checks from inside the agent: its view of the readers (the ports are held),
    the broker, certificates, clock, disk, and the buffer from the running agent's stats (a
    quick_check of the file would stall the event loop)."""
    cfg = st.rt.cfg
    d = Doctor(cfg, timeout_s=3.0, out=io.StringIO(), agent_view=snap)
    for rc in cfg.readers:
        if rc.enabled:
            await d.check_reader(rc)
    await d.check_broker()
    for c in certificate_checks(cfg):
        d.add(c)
    d.add(clock_check())
    d.add(disk_check(cfg))
    b = snap["buffer"]
    status: Any = "WARN" if b["deadLetters"] or b["diskFull"] else "PASS"
    d.add(Check("buffer", status, f"{b['depth']} events pending, oldest "
                f"{b['oldestEventAgeS'] or 0:.0f} s, {b['deadLetters']} dead letters"
                + (", DISK FULL" if b["diskFull"] else ""),
                "inspect dead letters with `edge-agent buffer export --dead-letters -c FILE`"
                if b["deadLetters"] else ""))
    return d.results


def _check_dict(c: Check) -> dict[str, Any]:
    return {"name": c.name, "status": c.status, "detail": c.detail, "hint": c.hint}


async def diagnostics(request: web.Request) -> web.Response:
    st = request.app[STATE]
    snap = await st.rt.snapshot()
    checks = await _doctor(st, snap)
    return _json({"checks": [_check_dict(c) for c in checks]}, state=st)


async def logs(request: web.Request) -> web.Response:
    st = request.app[STATE]
    return _json({"lines": list(st.logs.lines)}, state=st)


async def support_bundle(request: web.Request) -> web.Response:
    st = request.app[STATE]
    snap = await st.rt.snapshot()
    checks = [_check_dict(c) for c in await _doctor(st, snap)]
    text = bundle(st.rt.cfg, st.rt.config_path, snap, checks, list(st.logs.lines))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"edge-agent-support-{st.rt.cfg.gateway.id}-{stamp}.json"
    log.info("http: support bundle downloaded by %s", _client(request))
    return web.Response(text=text, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


# ----------------------------------------------------------------------------- wiring


def sessions_file(rt: Runtime) -> Path:
    """Where logins are kept across restarts: next to the buffer (the agent's state dir)."""
    return rt.cfg.buffer.path.parent / "web-sessions.json"


def build_app(rt: Runtime, bad_request: BadRequest, logs_ring: LogRing | None = None,
              sessions_store: Path | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    sessions = Sessions(idle_s=rt.cfg.http.session_idle_s, store=sessions_store)
    if kept := sessions.load():
        log.info("http: %d login(s) kept from before the restart", kept)
    app[STATE] = WebState(rt, bad_request, logs_ring or LogRing(), sessions)
    r = app.router
    r.add_get("/metrics", metrics)
    r.add_get("/health", health)
    r.add_get("/status", status)
    if rt.cfg.http.ui:
        r.add_get("/", index)
        r.add_get("/favicon.ico", favicon)
        r.add_get("/static/{name}", static)
        r.add_get("/api/session", session_info)
        r.add_post("/api/login", login)
        r.add_post("/api/logout", logout)
        r.add_get("/api/status", status)
        r.add_get("/api/survey", survey)
        r.add_get("/api/readers", readers)
        r.add_post("/api/readers/{name}/power", set_power)
        r.add_post("/api/readers/{name}/settings", set_settings)
        r.add_post("/api/readers/{name}/{action:start|stop}", reader_action)
        r.add_get("/api/config", config_get)
        r.add_post("/api/config/check", config_check)
        r.add_post("/api/config/apply", config_apply)
        r.add_get("/api/config/outcome", config_outcome)
        r.add_get("/api/diagnostics", diagnostics)
        r.add_get("/api/logs", logs)
        r.add_get("/api/bundle", support_bundle)
    return app


def _ssl(rt: Runtime) -> ssl.SSLContext | None:
    t = rt.cfg.http.tls
    if t.cert is None or t.key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(t.cert, t.key)
    return ctx


class _MalformedRequests(logging.Filter):
    """aiohttp reports a malformed request (no Host, a header that never ends) at DEBUG with a
    traceback: that is a client's mistake, counted as one rate-limited ``bad request`` line."""

    def __init__(self, bad_request: BadRequest) -> None:
        super().__init__()
        self.bad_request = bad_request

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self.bad_request("http", f"{type(exc).__name__}: {exc.message}")
            return False
        return True


async def setup_runner(rt: Runtime, bad_request: BadRequest, ring: LogRing) -> web.AppRunner:
    """The page's application, set up and not yet listening."""
    server_log = logging.getLogger("aiohttp.server")
    for f in [f for f in server_log.filters if isinstance(f, _MalformedRequests)]:
        server_log.removeFilter(f)
    server_log.addFilter(_MalformedRequests(bad_request))
    store = sessions_file(rt) if rt.cfg.http.ui else None
    runner = web.AppRunner(build_app(rt, bad_request, ring, store), access_log=None,
                           handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    return runner


async def take_over(runner: web.AppRunner, listening: socket.socket,
                    first: socket.socket) -> None:
    """Serve ``first`` (a connection accepted before aiohttp was loaded) and then every
    connection ``listening`` accepts (server.py's lazy start)."""
    server = runner.server
    assert server is not None  # set up
    await asyncio.get_running_loop().connect_accepted_socket(server, first)
    await web.SockSite(runner, listening).start()


async def start(rt: Runtime, bad_request: BadRequest) -> web.AppRunner | None:
    """Listen on http.listen; None (logged) when the address cannot be bound."""
    ring = LogRing()
    logging.getLogger().addHandler(ring)
    runner = await setup_runner(rt, bad_request, ring)
    host, port = rt.cfg.http.host_port
    try:
        site = web.TCPSite(runner, host, port, ssl_context=_ssl(rt), reuse_address=True)
        await site.start()
    except (OSError, ssl.SSLError) as exc:
        logging.getLogger().removeHandler(ring)
        await runner.cleanup()
        log.warning("http: cannot listen on %s (%s); /metrics, /health and the page are off",
                    rt.cfg.http.listen, getattr(exc, "strerror", None) or exc)
        return None
    addresses = runner.addresses
    bound = addresses[0] if addresses else (host, port)
    rt.http_address = f"{bound[0]}:{bound[1]}"
    scheme = "https" if rt.cfg.http.tls.cert else "http"
    log.info("http: the page, /metrics and /health on %s://%s", scheme, rt.http_address)
    return runner


async def stop(runner: web.AppRunner) -> None:
    for h in [h for h in logging.getLogger().handlers if isinstance(h, LogRing)]:
        logging.getLogger().removeHandler(h)
    with contextlib.suppress(KeyError, AttributeError):
        runner.app[STATE].sessions.save()  # the last use of each login, for the next start
    with contextlib.suppress(Exception):
        await runner.cleanup()
