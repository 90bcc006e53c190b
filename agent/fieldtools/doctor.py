"""``edge-agent doctor -c FILE``: is everything this gateway needs in place?

Checks each reader port (exists, may be opened, answers its protocol at the configured baud
rate), the broker (DNS, TCP, TLS, MQTT authentication), certificates, the clock, the disk and
the buffer file. One progress line per check as it runs, then a table; every failure carries a
fix hint. Exit 0 when nothing failed (warnings allowed), 1 otherwise, 2 for a bad config.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import shutil
import socket
import sqlite3
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from agent.config import AgentConfig, AnyReaderConfig, HidReaderConfig, MqttConfig
from agent.fieldtools.checkconfig import check_config
from agent.uplink.mqtt import connect_once
from agent.uplink.security import (
    CertExpiry,
    SecretError,
    build_ssl_context,
    cert_expiry,
    file_expiry,
    resolve_password,
)

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
# The same warning threshold as the health message: uplink.mqtt.cert_expiry_warn_days.
CERT_WARN_DAYS: int = MqttConfig.model_fields["cert_expiry_warn_days"].default
DISK_MIN_FREE = 64 * 1024**2


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


class Doctor:
    def __init__(self, cfg: AgentConfig, *, timeout_s: float = 3.0, out: TextIO = sys.stdout,
                 agent_view: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.out = out
        self.results: list[Check] = []
        self.agent_view = agent_view  # the running agent's status, when it answers

    def add(self, check: Check) -> Check:
        self.results.append(check)
        self.out.write(f"  {check.status:<4}  {check.name}: {check.detail}\n")
        self.out.flush()
        return check

    async def step(self, name: str, fn: Callable[[], Awaitable[Check]]) -> Check:
        if self.out.isatty():  # a long step shows what it waits for; the result overwrites it
            self.out.write(f"  ....  {name} ...\r")
            self.out.flush()
        try:
            check = await fn()
        except Exception as exc:  # a doctor reports, it does not crash
            check = Check(name, "FAIL", f"unexpected error: {type(exc).__name__}: {exc}",
                          "please report this with the output of --log-level DEBUG")
        return self.add(check)

    async def run(self) -> list[Check]:
        for rc in self.cfg.readers:
            if rc.enabled:
                await self.check_reader(rc)
        await self.check_broker()
        for check in certificate_checks(self.cfg):
            self.add(check)
        if self.cfg.uplink.est is not None:
            self.add(identity_check(self.cfg))
            await self.step("EST server", lambda: est_check(self.cfg))
        self.add(clock_check())
        self.add(disk_check(self.cfg))
        self.add(buffer_check(self.cfg))
        return self.results

    # ------------------------------------------------------------------ readers

    async def check_reader(self, rc: AnyReaderConfig) -> None:
        name = f"reader {rc.name}"
        port = rc.link_spec
        if isinstance(rc, HidReaderConfig):
            for check in hid_port_checks(name, port):
                if self.add(check).status == "FAIL":
                    return
        elif "://" in port:
            await self.step(f"{name} port", lambda: self._url_port(port))
        else:
            present = self.add(port_exists(name, port))
            if present.status == "FAIL":
                return
            if self.add(port_access(name, port)).status == "FAIL":
                return
        view = self._agent_reader(rc.name)
        if view is not None:
            ok = view["state"] == "connected"
            self.add(Check(
                f"{name} answers", "PASS" if ok else "FAIL",
                f"the running agent holds the port: {view['state']}"
                + (f", firmware {view['firmware']}" if view.get("firmware") else "")
                + (f" ({view['lastError']})" if view.get("lastError") and not ok else ""),
                "" if ok else _baud_hint(rc)))
            if rc.driver == "llrp" and ok:
                states = {int(a): s == "connected" for a, s in (view.get("antennas") or {}).items()}
                self.add(antenna_check(name, rc.antennas, states))
            return
        if rc.driver == "llrp":
            # Only one LLRP client may be connected: with the agent stopped, doctor connects
            # itself (connection accepted, capabilities, antennas) and closes the connection.
            for check in await llrp_checks(rc, self.timeout_s):
                self.add(check)
            return
        if rc.driver == "hid":
            self.add(Check(f"{name} answers", "SKIP",
                           "keyboard-wedge scanners answer no command",
                           "scan a code while `edge-agent tail` runs to see it arrive"))
            return
        if rc.driver == "barcode":
            # A scanner answers no command: only a scan proves the line (see `edge-agent tail`).
            self.add(Check(f"{name} answers", "SKIP",
                           "barcode scanners answer no command",
                           "scan a code while `edge-agent tail` runs to see it arrive"))
            return
        await self.step(f"{name} answers", lambda: probe_reader(rc, min(self.timeout_s, 1.0)))

    def _agent_reader(self, name: str) -> dict[str, Any] | None:
        if self.agent_view is None:
            return None
        for r in self.agent_view.get("readers", []):
            if r.get("name") == name:
                return dict(r)
        return None

    async def _url_port(self, url: str) -> Check:
        hostport = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        host, _, p = hostport.rpartition(":")
        try:
            async with asyncio.timeout(self.timeout_s):
                _, w = await asyncio.open_connection(host.strip("[]"), int(p))
            w.close()
        except (OSError, TimeoutError, ValueError) as exc:
            return Check(f"reader port {url}", "FAIL", f"cannot connect: {_why(exc)}",
                         "check the serial server's address and that it is powered")
        return Check(f"reader port {url}", "PASS", "TCP connection accepted")

    # ------------------------------------------------------------------ broker

    async def check_broker(self) -> None:
        m = self.cfg.uplink.mqtt
        host, port = m.brokers[0]  # the first broker: the one the uplink prefers
        where = f"{host}:{port}"
        dns = await self.step(f"broker {host} DNS", lambda: self._dns(host, port))
        if dns.status == "FAIL":
            return
        tcp = await self.step(f"broker {where} TCP", lambda: self._tcp(host, port))
        if tcp.status == "FAIL":
            return
        ctx: ssl.SSLContext | None = None
        if m.tls_enabled:
            try:
                ctx = build_ssl_context(m)  # the uplink's own context
            except (OSError, ssl.SSLError, SecretError, ValueError) as exc:
                self.add(Check(f"broker {where} TLS", "FAIL", f"cannot set up TLS: {_why(exc)}",
                               "check uplink.mqtt.tls.ca / cert / key paths and permissions"))
                return
            tls = await self.step(f"broker {where} TLS", lambda: self._tls(host, port, ctx))
            if tls.status == "FAIL":
                return
        await self.step(f"broker {where} MQTT login", lambda: self._mqtt(host, port, ctx))

    async def _dns(self, host: str, port: int) -> Check:
        name = f"broker {host} DNS"
        try:
            async with asyncio.timeout(self.timeout_s):
                infos = await asyncio.to_thread(socket.getaddrinfo, host, port, 0,
                                                socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            return Check(name, "FAIL", f"cannot resolve: {_why(exc)}",
                         "check uplink.mqtt.host, /etc/resolv.conf and the network link")
        addrs = sorted({str(i[4][0]) for i in infos})
        return Check(name, "PASS", ", ".join(addrs[:3]))

    async def _tcp(self, host: str, port: int) -> Check:
        name = f"broker {host}:{port} TCP"
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                _, w = await asyncio.open_connection(host, port)
            w.close()
        except ConnectionRefusedError:
            return Check(name, "FAIL", "connection refused",
                         "the broker is not running or listens on another port: check the "
                         "broker service and uplink.mqtt.port")
        except TimeoutError:
            return Check(name, "FAIL", f"no answer within {self.timeout_s:g} s",
                         "a firewall drops the packets or the address is wrong")
        except OSError as exc:
            return Check(name, "FAIL", _why(exc), "check the network route to the broker")
        return Check(name, "PASS", f"connected in {1000 * (time.monotonic() - t0):.0f} ms")

    async def _tls(self, host: str, port: int, ctx: ssl.SSLContext | None) -> Check:
        name = f"broker {host}:{port} TLS"
        try:
            async with asyncio.timeout(self.timeout_s):
                _, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
            peer = w.get_extra_info("peercert") or {}
            version = w.get_extra_info("ssl_object").version()
            w.close()
        except ssl.SSLCertVerificationError as exc:
            return Check(name, "FAIL", f"certificate not accepted: {exc.verify_message}",
                         "the broker's certificate is not signed by tls.ca, has expired or "
                         "does not name this host")
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            return Check(name, "FAIL", f"handshake failed: {_why(exc)}",
                         "is the port a TLS port (8883)? does the broker want a client "
                         "certificate (tls.cert/key)?")
        until = peer.get("notAfter", "?")
        return Check(name, "PASS", f"{version}, broker certificate valid until {until}")

    async def _mqtt(self, host: str, port: int, ctx: ssl.SSLContext | None) -> Check:
        """The login through the uplink's own CONNECT (its fail-back probe), with the uplink's
        secret resolution and TLS context."""
        name = f"broker {host}:{port} MQTT login"
        m = self.cfg.uplink.mqtt
        try:
            password = resolve_password(m) if m.username is not None else None
        except SecretError as exc:
            return Check(name, "FAIL", str(exc), "fix the password file or variable")
        cid = f"{self.cfg.mqtt_client_id}-doctor"
        code, text = await connect_once(host, port, ssl_context=ctx, client_id=cid,
                                        v5=m.protocol == "5", keepalive_s=m.keepalive_s,
                                        username=m.username, password=password,
                                        timeout_s=self.timeout_s)
        if code == 0:
            return Check(name, "PASS", f"CONNACK success as {cid}")
        hints = {
            0x86: "bad user name or password: check uplink.mqtt.username / password_file",
            0x87: "not authorised: the broker's ACL refuses this user or client id",
            0x84: "the broker does not speak MQTT 5",
            0x85: "client id refused: check uplink.mqtt.client_id",
        }
        return Check(name, "FAIL", text, hints.get(code or -1, "see the broker's log"))


# ----------------------------------------------------------------------------- reader checks


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def port_exists(name: str, port: str) -> Check:
    if os.path.exists(port):
        target = os.path.realpath(port)
        return Check(f"{name} port", "PASS", port + (f" -> {target}" if target != port else ""))
    from agent.readers.ports import by_id_links

    links = sorted(by_id_links())
    seen = ("; present: " + ", ".join(links[:4])) if links else "; no /dev/serial/by-id devices"
    return Check(f"{name} port", "FAIL", f"{port} does not exist",
                 "plug the reader in or fix readers[].port (ls -l /dev/serial/by-id/)" + seen)


def port_access(name: str, port: str) -> Check:
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        try:
            group = grp.getgrgid(os.stat(port).st_gid).gr_name
        except (KeyError, OSError):
            group = "dialout"
        return Check(f"{name} access", "FAIL", f"permission denied opening {port}",
                     f"add the agent's user to the '{group}' group: sudo usermod -aG {group} "
                     "USER (then log in again / restart the service)")
    except OSError as exc:
        hint = ("another program holds the port (a vendor tool, ModemManager, a second agent)"
                if exc.errno == errno.EBUSY else "check the device")
        return Check(f"{name} access", "FAIL", f"cannot open {port}: {_why(exc)}", hint)
    os.close(fd)
    return Check(f"{name} access", "PASS", "read/write open allowed")


def hid_port_checks(
    name: str, port: str, *, resolve: Callable[[str], str] | None = None
) -> list[Check]:
    """A keyboard-wedge scanner's port: found (a usb: spec among the input devices), and
    readable by this user (the agent's user must be in group input)."""
    from agent.readers.input_devices import resolve_input_port
    from agent.readers.link import input_permission_hint
    from agent.readers.ports import PortError

    try:
        device = (resolve or resolve_input_port)(port)
    except (PortError, ValueError) as exc:
        return [Check(f"{name} port", "FAIL", str(exc),
                      "plug the scanner in (USB keyboard mode), or fix readers[].port; "
                      "`edge-agent ports` lists the input devices")]
    if not os.path.exists(device):
        return [Check(f"{name} port", "FAIL", f"{device} does not exist",
                      "plug the scanner in or fix readers[].port (ls -l /dev/input/by-id/; "
                      "`edge-agent ports`)")]
    target = os.path.realpath(device)
    out = [Check(f"{name} port", "PASS", port + (f" -> {target}" if target != port else ""))]
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except PermissionError:
        out.append(Check(f"{name} access", "FAIL", f"permission denied opening {device}",
                         input_permission_hint(device).split(": ", 1)[1]))
        return out
    except OSError as exc:
        out.append(Check(f"{name} access", "FAIL", f"cannot open {device}: {_why(exc)}",
                         "check the device"))
        return out
    os.close(fd)
    out.append(Check(f"{name} access", "PASS", "read open allowed"))
    return out


def _baud_hint(rc: AnyReaderConfig) -> str:
    if rc.driver == "llrp":
        return ("the reader accepts TCP but did not complete the LLRP start: is another client "
                "connected (only one may be), or is it not an LLRP reader? (`edge-agent status`"
                " names the reason)")
    return (f"no valid reply at {rc.link_baudrate} baud: check readers[].baudrate (defaults: R2000 "
            "115200, Chafon 57600, ThingMagic 115200; `edge-agent probe PORT` tries every "
            "rate), the reader's address, its power, and that no other program holds the port")


def identity_check(cfg: AgentConfig, now: datetime | None = None) -> Check:
    """The gateway's key and certificate: a pair, valid, and when the agent renews it."""
    from agent.uplink import identity

    tls, est = cfg.uplink.mqtt.tls, cfg.uplink.est
    assert tls.cert is not None
    assert tls.key is not None
    assert est is not None
    fix = "edge-agent identity init / enroll -c <config> (docs/identity.md)"
    try:
        lt = identity.lifetime(tls.cert.read_bytes())
        key = identity.load_key(tls.key.read_bytes()) if not tls.key_password_file else None
    except (OSError, ValueError) as exc:
        return Check("identity", "FAIL", f"cannot read the certificate or key: {_why(exc)}", fix)
    if key is not None and not identity.matches(tls.cert.read_bytes(), key):
        return Check("identity", "FAIL", f"{tls.key} does not belong to {tls.cert}", fix)
    now = now or datetime.now(UTC)
    if lt.left(now).total_seconds() <= 0:
        return Check("identity", "FAIL", f"certificate {lt.serial:x} expired "
                     f"{lt.not_after.isoformat()}", fix)
    renew = lt.renew_at(est.renew_fraction)
    status: Status = "WARN" if renew <= now else "PASS"
    return Check("identity", status, f"{lt.subject}, serial {lt.serial:x}, valid until "
                 f"{lt.not_after.isoformat()}, renewal due {renew.isoformat()}",
                 "" if status == "PASS" else "renewal is due: is the agent running and the EST "
                 "server reachable? (`edge-agent status --json`: identity.lastError)")


async def est_check(cfg: AgentConfig) -> Check:
    """The EST server answers /cacerts (TLS verified against uplink.est.ca)."""
    from agent.uplink.est import EstClient, EstError

    assert cfg.uplink.est is not None
    try:
        cas = await asyncio.to_thread(EstClient(cfg.uplink.est).cacerts)
    except EstError as exc:
        return Check("EST server", "FAIL", str(exc), "check uplink.est.url / ca and the "
                     "network path to the CA")
    return Check("EST server", "PASS", f"{cfg.uplink.est.url}: /cacerts gave {len(cas)} CA "
                 "certificate(s)")


def antenna_check(name: str, configured: list[int], states: dict[int, bool]) -> Check:
    """The configured antennas against what an LLRP reader reports connected."""
    down = [a for a in configured if states.get(a) is False]
    unknown = [a for a in configured if a not in states]
    if down:
        return Check(f"{name} antennas", "FAIL",
                     f"antenna(s) {down} not connected (of {configured})",
                     "check the antenna cable and the port it is on; a port without an "
                     "antenna reads nothing (remove it from readers[].antennas if unused)")
    if unknown and len(unknown) == len(configured):
        return Check(f"{name} antennas", "SKIP", "the reader did not report antenna states")
    return Check(f"{name} antennas", "PASS", f"antenna(s) {configured} connected"
                 + (f" ({unknown} not reported)" if unknown else ""))


async def llrp_checks(rc: AnyReaderConfig, timeout_s: float) -> list[Check]:
    """Connect as the agent would (TLS too), identify, read the antenna states, close."""
    from agent.config import LlrpConfig
    from agent.readers.drivers.llrp import LlrpReader
    from agent.readers.link import Link, LinkError, SerialLink, TlsLink, tls_context
    from agent.readers.session import ReaderError
    from agent.readers.status import ReaderStatus

    assert isinstance(rc, LlrpConfig)
    name = f"reader {rc.name}"
    try:
        link: Link
        if rc.tls_on and rc.tls is not None:
            link = await TlsLink.open(rc.link_spec, tls_context(rc.tls))
        else:
            link = await SerialLink.open(rc.link_spec, 0)
    except (LinkError, OSError, ssl.SSLError) as exc:
        return [Check(f"{name} answers", "FAIL", f"cannot connect: {_why(exc)}",
                      "check readers[].host / port (LLRP 5084, over TLS 5085) and the "
                      "reader's network")]
    try:
        reader = LlrpReader(rc.model_copy(update={"response_timeout_s": timeout_s / 5}), link,
                            ReaderStatus(rc.name, rc.driver, rc.link_spec))
        try:
            who = await reader.identify()
        except (ReaderError, LinkError, OSError) as exc:
            return [Check(f"{name} answers", "FAIL", _why(exc), _baud_hint(rc))]
        with contextlib.suppress(ReaderError, LinkError, OSError):
            await reader.goodbye()
    finally:
        await link.aclose()
    return [Check(f"{name} answers", "PASS", who),
            antenna_check(name, rc.antennas, reader.antenna_ports)]


async def probe_reader(rc: AnyReaderConfig, timeout_s: float) -> Check:
    from agent.readers.link import LinkError
    from agent.readers.probe import probe

    name = f"reader {rc.name} answers"
    try:
        results = await probe(rc.link_spec, bauds=[rc.link_baudrate], protocols=[rc.driver],
                              timeout_s=timeout_s)
    except (LinkError, OSError) as exc:
        return Check(name, "FAIL", f"cannot open the port: {_why(exc)}",
                     "another program may hold the port (is the agent running?)")
    found = [r for r in results if r.found]
    if found:
        return Check(name, "PASS", found[0].line().split(": ", 1)[1])
    detail = "; ".join(r.detail for r in results)
    hint = _baud_hint(rc)
    if any(r.baudrate for r in results):
        hint = "bytes arrived but formed no reply frame: typical of a wrong baud rate; " + hint
    return Check(name, "FAIL", detail, hint)


# ----------------------------------------------------------------------------- certificates


def check_certificate(what: str, path: Path, now: datetime | None = None, *,
                      warn_days: int = CERT_WARN_DAYS) -> Check:
    """One row for ``tls.<what>`` (``ca`` or ``cert``), from the uplink's own expiry: the
    earliest notAfter of every certificate in the file (:func:`security.file_expiry`)."""
    now = now or datetime.now(UTC)
    return certificate_row(file_expiry("client" if what == "cert" else what, path, now),
                           warn_days)


def certificate_row(c: CertExpiry, warn_days: int) -> Check:
    what = "cert" if c.name == "client" else c.name
    name = f"certificate {what}"
    path = Path(c.path)
    if not path.exists():
        return Check(name, "FAIL", f"{path} does not exist", f"fix uplink.mqtt.tls.{what}")
    if not os.access(path, os.R_OK):
        return Check(name, "FAIL", f"{path} is not readable",
                     "let the agent's user read it (chgrp/chmod 640)")
    if c.not_after is None or c.days_left is None:
        return Check(name, "FAIL", f"{path}: not a PEM certificate",
                     f"tls.{what} must be a PEM file (-----BEGIN CERTIFICATE-----); ask for "
                     "the right file or convert it: openssl x509 -inform DER -in X -out X.pem")
    stamp = c.not_after.strftime("%Y-%m-%d")
    if c.expired:
        return Check(name, "FAIL", f"{path} expired on {stamp}",
                     f"renew the {what} certificate; until then TLS connections fail")
    if c.days_left <= warn_days:  # the health message's rule (uplink/health.py)
        return Check(name, "WARN", f"{path} expires in {c.days_left:.0f} days ({stamp})",
                     f"renew the {what} certificate soon")
    return Check(name, "PASS", f"valid until {stamp} ({c.days_left:.0f} days)")


def certificate_checks(cfg: AgentConfig, now: datetime | None = None) -> list[Check]:
    """CA bundle first, then the client certificate, as the health message reports them."""
    now = now or datetime.now(UTC)
    certs = sorted(cert_expiry(cfg.uplink.mqtt, now), key=lambda c: c.name != "ca")
    return [certificate_row(c, cfg.uplink.mqtt.cert_expiry_warn_days) for c in certs]


# ----------------------------------------------------------------------------- host


def clock_check() -> Check:
    from agent.clock import kernel_clock_synchronised

    synced = kernel_clock_synchronised()
    if synced:
        return Check("clock", "PASS", "NTP-synchronised")
    hint = ("enable time sync: timedatectl set-ntp true (check `timedatectl status` and that "
            "UDP 123 reaches an NTP server); meanwhile events are marked clockSynced=false")
    if synced is None:
        return Check("clock", "WARN", "cannot ask the kernel whether the clock is synchronised",
                     hint)
    return Check("clock", "WARN", "NOT synchronised (a Pi has no RTC: the time may be wrong)",
                 hint)


def _existing_dir(path: Path) -> Path:
    p = Path(os.path.abspath(path)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def disk_check(cfg: AgentConfig) -> Check:
    where = _existing_dir(cfg.buffer.path)
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Check("disk", "FAIL", f"cannot stat {where}: {_why(exc)}", "check the mount")
    mib = 1024**2
    text = f"{usage.free / mib:.0f} MiB free of {usage.total / mib:.0f} MiB on {where}"
    if usage.free < DISK_MIN_FREE:
        return Check("disk", "FAIL", text, "free space: journalctl --vacuum-size=50M, remove old "
                     "files; the buffer stops accepting reads when the disk is full")
    current = os.path.getsize(cfg.buffer.path) if os.path.exists(cfg.buffer.path) else 0
    if usage.free < cfg.buffer.max_size - current:
        return Check("disk", "WARN", text + f"; less than buffer.max_size "
                     f"({cfg.buffer.max_size / mib:.0f} MiB)",
                     "lower buffer.max_size or free space, or the disk fills before the "
                     "buffer's limit")
    return Check("disk", "PASS", text)


def buffer_check(cfg: AgentConfig) -> Check:
    path = Path(cfg.buffer.path)
    if not path.exists():
        parent = Path(os.path.abspath(path)).parent
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check("buffer", "PASS", f"{path} not created yet (the agent creates it)")
        return Check("buffer", "FAIL", f"{parent} does not exist or is not writable",
                     f"create it for the agent's user: sudo install -d -o USER {parent}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return Check("buffer", "FAIL", f"cannot open {path} read-only: {exc}",
                     "check the file's permissions")
    try:
        verdict = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if verdict != ["ok"]:
            return Check("buffer", "FAIL", f"{path} is damaged: {'; '.join(verdict[:3])}",
                         "the agent quarantines and salvages a corrupt file at start; restart "
                         "it, or move the file away and keep it for analysis")
        depth = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        reads = int(conn.execute("SELECT count(*) FROM reads").fetchone()[0])
        dead = int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        oldest = conn.execute("SELECT min(created_at_s) FROM outbox").fetchone()[0]
    except sqlite3.Error as exc:
        return Check("buffer", "FAIL", f"{path} is not a readable buffer: {exc}",
                     "the agent quarantines a file it cannot read at start; check buffer.path")
    finally:
        conn.close()
    age = "" if oldest is None else f", oldest {time.time() - float(oldest):.0f} s"
    text = f"quick_check ok, {depth} events{age}, {reads} reads pending, {dead} dead letters"
    if dead:
        return Check("buffer", "WARN", text, "the broker refused these for good: inspect them "
                     "with `edge-agent buffer export --dead-letters -c FILE`")
    return Check("buffer", "PASS", text)


# ----------------------------------------------------------------------------- entry


def format_table(results: list[Check]) -> str:
    width = max((len(c.name) for c in results), default=5)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    for c in results:
        lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
        if c.hint and c.status in ("FAIL", "WARN"):
            lines.append(f"{'':<{width}}  {'':<6}  fix: {c.hint}")
    return "\n".join(lines)


def run_doctor(config: str, *, timeout_s: float = 3.0, out: TextIO = sys.stdout) -> int:
    cfg, errors, warnings = check_config(config)
    if errors or cfg is None:
        print(f"configuration error ({len(errors)} problem(s)):", file=sys.stderr)
        for issue in errors:
            print(f"  {issue}", file=sys.stderr)
        return 2
    out.write(f"edge-agent doctor: {config}\n")
    for w in warnings:
        out.write(f"  note: {w}\n")
    from agent.fieldtools.client import AgentNotRunning, request_status
    from agent.fieldtools.server import socket_candidates

    view: dict[str, Any] | None
    try:
        view = request_status(socket_candidates(cfg), timeout_s=2.0)
        out.write(f"  the agent is running (pid {view.get('pid')}): reader checks use its view\n")
    except (AgentNotRunning, OSError, ValueError):
        view = None
    doctor = Doctor(cfg, timeout_s=timeout_s, out=out, agent_view=view)
    results = asyncio.run(doctor.run())
    out.write("\n" + format_table(results) + "\n")
    failed = [c for c in results if c.status == "FAIL"]
    warned = [c for c in results if c.status == "WARN"]
    out.write(f"\n{len(results) - len(failed) - len(warned)} passed, {len(warned)} warning(s), "
              f"{len(failed)} failed\n")
    return 1 if failed else 0
