"""CLI glue for the field tools: registered by agent/cli.py with one call."""

from __future__ import annotations

import argparse
import json
import sys

from agent.config import AgentConfig, ConfigError, load_config
from agent.fieldtools.buffer_cmd import register as register_buffer
from agent.fieldtools.verify_cmd import register as register_verify

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _print_config_errors(exc: ConfigError) -> None:
    print(f"configuration error ({len(exc.issues)} problem(s)):", file=sys.stderr)
    for issue in exc.issues:
        print(f"  {issue}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.fieldtools.checkconfig import check_config

    cfg, errors, warnings = check_config(args.config)
    if errors:
        _print_config_errors(ConfigError(errors))
        return EXIT_CONFIG
    assert cfg is not None
    for w in warnings:
        where = f"{w.file}:{w.line}" if w.line else w.file
        print(f"{where}: warning: {w.path}: {w.message}", file=sys.stderr)
    note = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"{args.config}: OK ({len(cfg.readers)} reader(s), broker "
          f"{cfg.uplink.mqtt.host}:{cfg.uplink.mqtt.port}{note})")
    return EXIT_OK


def _config_or_none(path: str | None) -> tuple[AgentConfig | None, int | None]:
    if path is None:
        return None, None
    try:
        return load_config(path), None
    except ConfigError as exc:
        _print_config_errors(exc)
        return None, EXIT_CONFIG


def cmd_status(args: argparse.Namespace) -> int:
    from agent.fieldtools.client import (
        AgentNotRunning,
        candidates_for,
        format_status,
        request_status,
    )

    cfg, rc = _config_or_none(args.config)
    if rc is not None:
        return rc
    try:
        snap = request_status(candidates_for(cfg, args.socket))
    except (AgentNotRunning, OSError, ValueError) as exc:
        print(f"edge-agent status: {exc}\n  is the agent running? (systemctl status "
              "edge-agent; pass -c FILE or --socket PATH)", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(snap, indent=2) if args.json else format_status(snap))
    return EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    from agent.fieldtools.client import AgentNotRunning, candidates_for, print_tail, stream_tail

    cfg, rc = _config_or_none(args.config)
    if rc is not None:
        return rc
    try:
        print_tail(stream_tail(candidates_for(cfg, args.socket), args.reader),
                   as_json=args.json)
    except KeyboardInterrupt:
        return EXIT_OK
    except (AgentNotRunning, OSError, ValueError) as exc:
        print(f"edge-agent tail: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.fieldtools.doctor import run_doctor

    return run_doctor(args.config, timeout_s=args.timeout)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check ports, readers, broker, certificates, clock, "
                            "disk and buffer; print a pass/fail table")
    doctor.add_argument("-c", "--config", required=True)
    doctor.add_argument("--timeout", type=float, default=3.0,
                        help="seconds per network step and reader probe (default 3)")
    doctor.set_defaults(func=cmd_doctor)

    for name, fn, text in (("status", cmd_status, "ask the running agent how it is doing"),
                           ("tail", cmd_tail, "show live reads and events (aim antennas)")):
        p = sub.add_parser(name, help=text)
        where = p.add_mutually_exclusive_group()
        where.add_argument("-c", "--config", help="the agent's configuration (finds its socket)")
        where.add_argument("--socket", help="the agent's status socket")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "tail":
            p.add_argument("--reader", help="only this reader")
        p.set_defaults(func=fn)

    register_buffer(sub)
    register_verify(sub)
