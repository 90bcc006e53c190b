"""``edge-agent buffer stats|export|purge -c FILE`` (issue 5 part 5): CLI glue only.

The functions come from agent/buffer/tools.py when the buffer owner adds it, else from the
field tools' minimal read-only view (agent/fieldtools/buffer_view.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TextIO

from agent.config import ConfigError, load_config
from agent.fieldtools import buffer_view as impl

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _age(s: float | None) -> str:
    return "-" if s is None else f"{s:.0f} s"


def cmd_buffer(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    path = Path(cfg.buffer.path)
    try:
        if args.buffer_command == "stats":
            st = impl.buffer_stats(path)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print(f"buffer {st['path']} (generation {st['generation']})\n"
                      f"  depth            {st['depth']} events ({st['leased']} leased), "
                      f"{st['readsPending']} reads not yet events\n"
                      f"  oldest event     {_age(st['oldestEventAgeS'])}\n"
                      f"  size on disk     {st['sizeOnDiskBytes']} bytes\n"
                      f"  dropped          {st['dropped']} {st['droppedByCause'] or ''}\n"
                      f"  quarantined      {st['quarantined']} file(s) "
                      f"{' '.join(st['quarantinedFilesPresent'])}\n"
                      f"  dead letters     {st['deadLetters']}")
            return EXIT_OK
        if args.buffer_command == "export":
            out: TextIO
            with contextlib.ExitStack() as stack:
                out = (stack.enter_context(open(args.output, "w", encoding="utf-8"))
                       if args.output else sys.stdout)
                n = impl.export(path, out, dead_letters=args.dead_letters)
            what = "dead letters" if args.dead_letters else "pending events"
            print(f"exported {n} {what}" + (f" to {args.output}" if args.output else ""),
                  file=sys.stderr)
            return EXIT_OK
        return _purge(args, cfg.gateway.id, path, cfg)
    except impl.BufferFileError as exc:
        print(f"edge-agent buffer: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _purge(args: argparse.Namespace, gateway_id: str, path: Path, cfg: object) -> int:
    from agent.config import AgentConfig
    from agent.fieldtools.client import agent_running
    from agent.fieldtools.server import socket_candidates

    assert isinstance(cfg, AgentConfig)
    if agent_running(socket_candidates(cfg)) and not args.force:
        print("edge-agent buffer purge: the agent is running (its status socket answers); stop "
              "it first (systemctl stop edge-agent) or pass --force", file=sys.stderr)
        return EXIT_FAILURE
    st = impl.buffer_stats(path)
    what = (f"{st['deadLetters']} dead letters" if args.dead_letters else
            f"{st['depth']} events, {st['readsPending']} reads and {st['deadLetters']} dead "
            "letters")
    if not args.yes:
        if not sys.stdin.isatty():
            print("edge-agent buffer purge: not a terminal; pass --yes to purge without asking",
                  file=sys.stderr)
            return EXIT_FAILURE
        print(f"This deletes {what} from {path} for good (export them first?).")
        answer = input(f"Type the gateway id ({gateway_id}) to confirm: ").strip()
        if answer != gateway_id:
            print("not confirmed; nothing deleted", file=sys.stderr)
            return EXIT_FAILURE
    counts = impl.purge(path, dead_letters_only=args.dead_letters)
    print("purged " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    buf = sub.add_parser("buffer", help="inspect, export or purge the buffer file")
    bsub = buf.add_subparsers(dest="buffer_command", required=True, metavar="ACTION")
    stats = bsub.add_parser("stats", help="depth, oldest age, size, dropped, dead letters")
    stats.add_argument("--json", action="store_true")
    export = bsub.add_parser("export", help="pending events (or dead letters) as JSON lines")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--dead-letters", action="store_true", help="export the dead letters")
    purge = bsub.add_parser("purge", help="delete what is buffered (asks first)")
    purge.add_argument("--dead-letters", action="store_true", help="only the dead letters")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.add_argument("--force", action="store_true", help="even while the agent runs")
    for p in (stats, export, purge):
        p.add_argument("-c", "--config", required=True)
        p.set_defaults(func=cmd_buffer)
