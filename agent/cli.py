"""`edge-agent`: the technician's and systemd's door into the agent.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration (or a buffer path that cannot
work), so a systemd unit can use RestartPreventExitStatus=2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import AgentConfig, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
SWITCH_INTERVAL_S = 0.0005

log = logging.getLogger("agent")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pyserial-asyncio logs a traceback at DEBUG when a vanished port cannot be flushed: that is
    # an expected unplug, which our supervisor reports in one line.
    logging.getLogger("serial_asyncio_fast").setLevel(logging.INFO)


def _load(path: str) -> AgentConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"configuration error ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return None


def _secure(cfg: AgentConfig) -> bool:
    """Refuse insecure uplink settings (exit 2) unless allowed; print the warnings."""
    from agent.uplink.security import check_security

    report = check_security(cfg)
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.errors:
        print(f"security error ({len(report.errors)} problem(s)):", file=sys.stderr)
        for problem in report.errors:
            print(f"  {problem}", file=sys.stderr)
        return False
    return True


def _restart() -> None:
    """Run ``edge-agent`` again with the same arguments, same pid (systemd keeps tracking)."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "agent", *sys.argv[1:]])  # noqa: S606


def _roll_back_if_on_probation(config: str, why: str) -> bool:
    """A config applied from the page that cannot even start: put the backup back (True)."""
    from agent.fieldtools.web.configedit import read_note, roll_back

    path = Path(config)
    note = read_note(path)
    if note is None or note.get("state") != "probation" or not note.get("backup"):
        return False
    roll_back(path, note, f"it does not start: {why}")
    return True


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None or not _secure(cfg):
        if _roll_back_if_on_probation(args.config, "configuration refused at start"):
            _restart()
        return EXIT_CONFIG
    from agent.app import Agent
    from agent.buffer.api import BufferOpenError

    agent = Agent(cfg, config_path=Path(args.config))
    # A thread woken by a serial port waits for the GIL at most this long (the default 5 ms is
    # most of what a 4 KB tty buffer holds at 10,000 lines/s; issue 12, item 3).
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    try:
        asyncio.run(main())
    except BufferOpenError as exc:
        print(f"buffer error: {exc}", file=sys.stderr)
        if _roll_back_if_on_probation(args.config, f"buffer error: {exc}"):
            _restart()
        return EXIT_CONFIG
    except Exception as exc:
        # A crash is a bug (systemd restarts us); but a config on probation that crashes the
        # agent must not crash it again at every restart.
        if _roll_back_if_on_probation(args.config, f"the agent crashed: {exc!r}"):
            log.exception("the agent crashed with the configuration applied from the page")
            _restart()
        raise
    if agent.restart_requested:
        # A config applied (or rolled back) from the technician's page: run again with the
        # file as it is now.
        log.info("restarting to load %s", args.config)
        _restart()
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.fieldtools.commands import cmd_check_config as check

    try:
        cfg = load_config(args.config)
    except ConfigError:
        cfg = None  # check() prints every problem with file:line
    if cfg is not None and not _secure(cfg):
        return EXIT_CONFIG
    return check(args)


def cmd_set_admin_password(args: argparse.Namespace) -> int:
    """Store the technician's page admin password as a scrypt hash in http.admin_password_file."""
    import getpass

    from agent.fieldtools.web.auth import MIN_PASSWORD, write_password_file

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    path = cfg.http.admin_password_file
    if path is None:
        print(f"{args.config}: http.admin_password_file is not set; add it, e.g.\n"
              "  http:\n    admin_password_file: /etc/edge-agent/admin-password",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("new admin password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
    if len(password) < MIN_PASSWORD:
        print(f"the password must have at least {MIN_PASSWORD} characters; nothing changed",
              file=sys.stderr)
        return EXIT_FAILURE
    try:
        write_password_file(Path(path), password, group=args.group)
    except KeyError:
        print(f"no group {args.group!r}; nothing changed", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"admin password stored (scrypt hash) in {path}; the page uses it from the next login")
    return EXIT_OK


def cmd_ports(args: argparse.Namespace) -> int:
    """List serial ports with their stable names (by-id link, usb:VID:PID[:SERIAL] spec),
    then the input devices a keyboard-wedge (hid) scanner can be read from."""
    from agent.readers.input_devices import format_input_devices, list_input_devices
    from agent.readers.ports import format_ports, list_ports

    print(format_ports(list_ports()))
    print()
    print("USB keyboard-wedge scanners (driver: hid):")
    print(format_input_devices(list_input_devices()))
    return EXIT_OK


def _probe_llrp(url: str, timeout_s: float) -> int:
    from agent.readers.drivers.llrp import probe_llrp
    from agent.readers.link import LinkError
    from agent.readers.session import ReaderError

    hostport = url.removeprefix("llrp://").rstrip("/")
    host, sep, port_text = hostport.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = hostport, "5084"
    try:
        port = int(port_text)
    except ValueError:
        print(f"port error: {url}: the port must be a number (llrp://HOST[:PORT])",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(asyncio.run(probe_llrp(host.strip("[]"), port, timeout_s=max(timeout_s, 2.0))))
    except LinkError as exc:
        print(f"port error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ReaderError as exc:
        print(f"{url}: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    """Exit 0: a reader identified; 1: nothing identified; 2: the port cannot be used."""
    from agent.readers.link import LinkError
    from agent.readers.ports import PortError, resolve_port
    from agent.readers.probe import PROTOCOLS, format_probe, probe

    if args.port.startswith("llrp://"):
        return _probe_llrp(args.port, args.timeout_s)
    try:
        device = resolve_port(args.port)
    except (PortError, ValueError) as exc:
        print(f"port error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    protocols = [args.protocol] if args.protocol else list(PROTOCOLS)
    try:
        results = asyncio.run(
            probe(device, bauds=args.baud or None, protocols=protocols,
                  timeout_s=args.timeout_s, stop_at_first=not args.all)
        )
    except LinkError as exc:
        print(f"port error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(format_probe(results))
    return EXIT_OK if any(r.found for r in results) else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="Trace Edge Agent: RFID/barcode reads -> EPCIS 2.0 -> durable buffer -> MQTT",
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("-c", "--config", required=True, help="YAML configuration file")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check_config)

    setpw = sub.add_parser(
        "set-admin-password",
        help="set the technician's page admin password (scrypt hash in http.admin_password_file)")
    setpw.add_argument("-c", "--config", required=True)
    setpw.add_argument("--stdin", action="store_true",
                       help="read the password from the first line of standard input")
    setpw.add_argument("--group", metavar="GROUP", default=None,
                       help="make the file root:GROUP mode 0640 (the service's group, e.g. "
                       "edge-agent, when run as root); default: mode 0600, owned by you")
    setpw.set_defaults(func=cmd_set_admin_password)

    from agent.fieldtools.commands import register as register_field_tools

    register_field_tools(sub)  # doctor, status, tail, buffer

    from agent.fieldtools.identity_cmd import register as register_identity

    register_identity(sub)  # identity init | enroll | status

    ports = sub.add_parser(
        "ports", help="list serial ports and HID scanners with their stable names (by-id, "
        "usb:VID:PID:SERIAL)"
    )
    ports.set_defaults(func=cmd_ports)

    probe = sub.add_parser(
        "probe",
        help="identify the reader on a port (exit 0 found, 1 nothing, 2 port error)",
        description="Ask PORT in every protocol and baud rate the agent speaks: R2000 (0x72 "
        "firmware version), Chafon (0x21 reader information) and ThingMagic Mercury (0x03 "
        "version), each protocol's factory "
        "rate first. Bytes that arrive unasked are reported (a barcode scanner answers no "
        "command: scan something while probing).",
    )
    probe.add_argument("port", metavar="PORT",
                       help="device path, /dev/serial/by-id/..., usb:VID:PID[:SERIAL], "
                       "socket://host:port, or llrp://HOST[:PORT] for a fixed LLRP reader")
    probe.add_argument("--baud", type=int, action="append", metavar="N",
                       help="try only this baud rate (repeatable)")
    probe.add_argument("--protocol", choices=["r2000", "chafon", "thingmagic"],
                       help="try only this protocol")
    probe.add_argument("--timeout-s", type=float, default=0.5, metavar="S",
                       help="wait this long for each reply (default %(default)s)")
    probe.add_argument("--all", action="store_true",
                       help="go on after the first reader found (every protocol and rate)")
    probe.set_defaults(func=cmd_probe)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    rc: int = args.func(args)
    return rc
