"""The running agent's local doors: a Unix socket (status, tail) and HTTP (/metrics, /health).

Unix socket protocol: the client sends one JSON line, ``{"cmd": "status"}`` or
``{"cmd": "tail", "reader": null}``; status answers one JSON line, tail streams newline-delimited
JSON (``read``, ``scan``, ``event``, ``dropped``, ``tick`` items) until the client hangs up.

HTTP (agent/fieldtools/web/): ``GET /metrics``, ``GET /health`` (200/503 with the reasons),
``GET /status`` and the technician's page at ``/``.

Nothing here may stop the agent: a socket that cannot be bound is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.fieldtools.runtime import Runtime
from agent.fieldtools.web.bundle import LogRing  # no aiohttp: the page's log panel
from agent.fieldtools.web.probation import watch_apply

log = logging.getLogger(__name__)

RUN_DIR = Path("/run/edge-agent")
TICK_S = 1.0
TAIL_HEARTBEAT_S = 5.0
REQUEST_TIMEOUT_S = 5.0


def socket_candidates(cfg: AgentConfig) -> list[Path]:
    """Where the socket may be, in the order the agent tries them."""
    if cfg.status.socket is not None:
        return [Path(cfg.status.socket)]
    out = [RUN_DIR / "agent.sock"]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(Path(xdg) / "edge-agent.sock")
    out.append(Path(f"{os.path.abspath(cfg.buffer.path)}.sock"))
    return out


def choose_socket_path(cfg: AgentConfig) -> Path:
    candidates = socket_candidates(cfg)
    for path in candidates[:-1]:
        if path.parent.is_dir() and os.access(path.parent, os.W_OK | os.X_OK):
            return path
    return candidates[-1]


def _socket_in_use(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
    except OSError:
        return False
    else:
        return True
    finally:
        s.close()


async def serve(rt: Runtime) -> None:
    """Run the status socket, the HTTP endpoint and the once-a-second tick until cancelled."""
    servers: list[asyncio.Server] = []
    path: Path | None = None
    cfg = rt.cfg
    if cfg.status.enabled:
        path = choose_socket_path(cfg)
        server = await _start_unix(rt, path)
        if server is not None:
            servers.append(server)
            rt.socket_path = str(path)
        else:
            path = None
    runner: Any = None
    lazy: LazyHttp | None = None
    if cfg.http.enabled and LazyHttp.applies(cfg):
        lazy = LazyHttp.open(rt, bad_request)
    elif cfg.http.enabled:  # HTTPS, or a host name to resolve: aiohttp listens from the start
        from agent.fieldtools.web import app as web

        runner = await web.start(rt, bad_request)
    probation = asyncio.create_task(watch_apply(rt), name="config-apply-probation")
    loading = (asyncio.create_task(lazy.run(), name="http-first-connection")
               if lazy is not None else None)
    try:
        while True:
            rt.tick()
            await asyncio.sleep(TICK_S)
    finally:
        probation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probation
        if loading is not None:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        if lazy is not None:
            await lazy.close()
        if runner is not None:
            from agent.fieldtools.web import app as web

            await web.stop(runner)
        for s in servers:
            s.close()
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


class LazyHttp:
    """http.listen bound at start, aiohttp (the page's server, ~12 MB of RSS) loaded at the
    first connection (issue 12: a gateway nobody browses or scrapes never pays for it). That
    connection and the listening socket are then handed to aiohttp, which serves everything
    as if it had listened from the start; a request waits for the load once (~0.3 s)."""

    def __init__(self, rt: Runtime, bad_request: Any, sock: socket.socket,
                 ring: LogRing) -> None:
        self.rt = rt
        self.bad_request = bad_request
        self.sock = sock
        self.ring = ring
        self.runner: Any = None

    @staticmethod
    def applies(cfg: AgentConfig) -> bool:
        """Plain HTTP on an address literal (HTTPS and host names: aiohttp from the start)."""
        if cfg.http.tls.cert is not None:
            return False
        try:
            ipaddress.ip_address(cfg.http.host_port[0])
        except ValueError:
            return False
        return True

    @classmethod
    def open(cls, rt: Runtime, bad_request: Any) -> LazyHttp | None:
        host, port = rt.cfg.http.host_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            log.warning("http: cannot listen on %s (%s); /metrics, /health and the page are off",
                        rt.cfg.http.listen, exc.strerror or exc)
            return None
        sock.setblocking(False)
        ring = LogRing()  # from the start: the page shows the log lines from before its load
        logging.getLogger().addHandler(ring)
        bound = sock.getsockname()
        rt.http_address = f"{bound[0]}:{bound[1]}"
        log.info("http: the page, /metrics and /health on http://%s", rt.http_address)
        return cls(rt, bad_request, sock, ring)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        first, _ = await loop.sock_accept(self.sock)
        try:
            from agent.fieldtools.web import app as web

            log.info("http: first connection: the page's server is loaded")
            self.runner = await web.setup_runner(self.rt, self.bad_request, self.ring)
            await web.take_over(self.runner, self.sock, first)
        except (OSError, ImportError, ValueError) as exc:
            # As when the address cannot be bound at start: the agent goes on without it.
            first.close()
            self.sock.close()
            log.warning("http: the page's server cannot start (%s); /metrics, /health and the "
                        "page are off", exc)
        except BaseException:
            first.close()
            raise

    async def close(self) -> None:
        if self.runner is not None:
            from agent.fieldtools.web import app as web

            await web.stop(self.runner)  # closes the socket it took over, removes the ring
        else:
            logging.getLogger().removeHandler(self.ring)
        self.sock.close()


def _clear_stale(path: Path) -> bool:
    """False when a live process answers on ``path``; removes a socket left by a killed agent."""
    if path.exists() or path.is_symlink():
        if _socket_in_use(path):
            return False
        path.unlink()
    return True


async def _start_unix(rt: Runtime, path: Path) -> asyncio.Server | None:
    try:
        if not _clear_stale(path):
            log.warning("status socket %s is in use by another process (another agent?); "
                        "status and tail are off (set status.socket)", path)
            return None
        server = await asyncio.start_unix_server(lambda r, w: _unix_client(rt, r, w), str(path))
        os.chmod(path, 0o660)
    except OSError as exc:
        log.warning("status socket %s: %s; status and tail are off (set status.socket)",
                    path, exc.strerror or exc)
        return None
    log.info("status socket %s", path)
    return server


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class _BadRequests:
    """One log line per bad request on a local door, at most one per ``every_s`` per door
    (the rest are counted into the next line), so a scanner probing the port cannot flood
    the journal."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.total: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, door: str, why: str) -> None:
        self.total[door] = self.total.get(door, 0) + 1
        now = time.monotonic()
        if now - self._last.get(door, -1e9) < self.every_s:
            self._held[door] = self._held.get(door, 0) + 1
            return
        held = self._held.pop(door, 0)
        self._last[door] = now
        log.warning("%s: bad request: %s%s", door, why[:200],
                    f" ({held} more since the last such line)" if held else "")


bad_request = _BadRequests()


async def _unix_client(rt: Runtime, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):  # a line over the stream limit
            bad_request("status socket", "request line too long")
            return
        req: object
        try:
            text = line.strip()
            req = json.loads(text) if text.startswith(b"{") else {"cmd": text.decode()}
        except ValueError:
            req = None
        cmd = req.get("cmd") if isinstance(req, dict) else None
        tail_reader = req.get("reader") if isinstance(req, dict) else None
        if cmd not in ("status", "tail") or not (tail_reader is None
                                                 or isinstance(tail_reader, str)):
            bad_request("status socket", f"{line[:80]!r}: expected status, tail or "
                        '{"cmd": "tail", "reader": NAME}')
            writer.write(_dumps({"error": f"bad request {line[:40]!r}; expected status or "
                                          'tail (or {"cmd": "tail", "reader": NAME})'}))
            await writer.drain()
            return
        if cmd == "status":
            writer.write(_dumps(await rt.snapshot()))
            await writer.drain()
        else:
            await _tail(rt, writer, tail_reader)
    except (TimeoutError, ConnectionError, OSError):
        pass
    except Exception:
        log.exception("status socket: request failed")  # a bug here must not stop the agent
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _tail(rt: Runtime, writer: asyncio.StreamWriter, reader_name: str | None) -> None:
    names = list(rt.readers)
    if reader_name is not None and reader_name not in rt.readers:
        writer.write(_dumps({"error": f"no reader {reader_name!r}; readers: {names}"}))
        await writer.drain()
        return
    watched = [reader_name] if reader_name is not None else names
    antennas = _antenna_states(rt, watched)
    with rt.tap.subscribe(reader_name) as sub:
        writer.write(_dumps({"type": "hello", "readers": names, "reader": reader_name,
                             "antennas": _antennas_json(antennas)}))
        await writer.drain()
        reported = 0
        while True:
            try:
                async with asyncio.timeout(TAIL_HEARTBEAT_S):
                    item = await sub.get()
            except TimeoutError:
                item = {"type": "tick", "time": time.time()}
            if sub.dropped != reported:
                writer.write(_dumps({"type": "dropped", "count": sub.dropped - reported}))
                reported = sub.dropped
            # An antenna the reader reports (dis)connected shows in the stream as it happens.
            now_states = _antenna_states(rt, watched)
            for (reader, antenna), up in sorted(now_states.items()):
                if antennas.get((reader, antenna)) != up:
                    writer.write(_dumps({"type": "antenna", "time": time.time(),
                                         "reader": reader, "antenna": antenna,
                                         "state": "connected" if up else "disconnected"}))
            antennas = now_states
            writer.write(_dumps(item))
            await writer.drain()


def _antenna_states(rt: Runtime, readers: list[str]) -> dict[tuple[str, int], bool]:
    return {(name, antenna): up for name in readers
            for antenna, up in rt.readers[name].antennas.items()}


def _antennas_json(states: dict[tuple[str, int], bool]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for (reader, antenna), up in sorted(states.items()):
        out.setdefault(reader, {})[str(antenna)] = "connected" if up else "disconnected"
    return out
