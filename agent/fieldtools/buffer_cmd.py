"""``edge-agent buffer stats|export|purge|dead-letters -c FILE``: CLI glue over
agent/buffer/tools.py.

stats and export open the file read-only (WAL readers never block the running agent); purge
asks first and refuses while the agent runs unless forced.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TextIO

from agent.buffer import tools
from agent.config import ConfigError, load_config
from agent.uplink.forwarder import topics

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
            st = tools.stats(path)
            if args.json:
                print(json.dumps(st.as_dict(), indent=2))
            else:
                dropped = {k: v for k, v in st.counters.items() if k.startswith("dropped") and v}
                print(f"buffer {st.path} (generation {st.generation})\n"
                      f"  depth            {st.events_pending} events ({st.events_leased} "
                      f"leased), {st.reads_pending} reads not yet events\n"
                      f"  oldest event     {_age(st.oldest_event_age_s)}\n"
                      f"  size on disk     {st.size_bytes} bytes\n"
                      f"  dropped          {st.dropped_total} {dropped or ''}\n"
                      f"  quarantined      {len(st.quarantined_files)} file(s) "
                      f"{' '.join(st.quarantined_files)}\n"
                      f"  dead letters     {st.dead_letters}")
            return EXIT_OK
        if args.buffer_command == "export":
            out: TextIO
            with contextlib.ExitStack() as stack:
                out = (stack.enter_context(open(args.output, "w", encoding="utf-8"))
                       if args.output else sys.stdout)
                if args.documents:
                    n = tools.export_documents(path, out, topic=topics(
                        cfg.uplink.mqtt, cfg.gateway.site, cfg.gateway.id)["event"])
                else:
                    n = tools.export(path, out, dead_letters=args.dead_letters,
                                     outbox=not args.dead_letters)
            what = ("frozen documents" if args.documents else "dead letters"
                    if args.dead_letters else "pending events")
            print(f"exported {n} {what}" + (f" to {args.output}" if args.output else ""),
                  file=sys.stderr)
            return EXIT_OK
        if args.buffer_command == "dead-letters":
            return _dead_letters(args, path)
        return _purge(args, cfg.gateway.id, path, cfg)
    except tools.ToolError as exc:
        print(f"edge-agent buffer: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _dead_letters(args: argparse.Namespace, path: Path) -> int:
    action = args.dead_action
    if action == "list":
        rows = tools.dead_letters(path, limit=args.limit)
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return EXIT_OK
        if not rows:
            print(f"no dead letters in {path}")
            return EXIT_OK
        print(f"{'ID':>8}  {'KIND':<6}  {'EVENTS':>6}  {'BYTES':>7}  REASON")
        for r in rows:
            print(f"{r.id:>8}  {r.kind:<6}  {len(r.event_ids):>6}  {r.size_bytes:>7}  {r.reason}")
        return EXIT_OK
    if action == "show":
        d = tools.dead_letter(path, args.id)
        print(json.dumps(d.as_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    if action == "replay":
        if not args.all and not args.ids:
            print("edge-agent buffer dead-letters replay: give ids or --all", file=sys.stderr)
            return EXIT_FAILURE
        n = tools.replay(path, None if args.all else list(args.ids))
        print(f"replayed {n} dead letters into the outbox (same ids and eventIDs); the agent "
              "sends them next")
        return EXIT_OK
    # purge: only the dead letters, asking first (export them with `buffer export
    # --dead-letters` if they may be needed)
    dry = tools.purge(path, confirm=False, outbox=False, reads=False, dead_letters=True)
    if not args.yes:
        if not sys.stdin.isatty():
            print("edge-agent buffer dead-letters purge: not a terminal; pass --yes to purge "
                  "without asking", file=sys.stderr)
            return EXIT_FAILURE
        answer = input(f"Delete {dry.dead_letters} dead letters from {path} for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not confirmed; nothing deleted", file=sys.stderr)
            return EXIT_FAILURE
    done = tools.purge(path, confirm=True, outbox=False, reads=False, dead_letters=True)
    print(f"purged {done.dead_letters} dead letters")
    return EXIT_OK


def _purge(args: argparse.Namespace, gateway_id: str, path: Path, cfg: object) -> int:
    from agent.config import AgentConfig
    from agent.fieldtools.client import agent_running
    from agent.fieldtools.server import socket_candidates

    assert isinstance(cfg, AgentConfig)
    if agent_running(socket_candidates(cfg)) and not args.force:
        print("edge-agent buffer purge: the agent is running (its status socket answers); stop "
              "it first (systemctl stop edge-agent) or pass --force", file=sys.stderr)
        return EXIT_FAILURE
    everything = not args.dead_letters
    dry = tools.purge(path, confirm=False, outbox=everything, reads=everything,
                      dead_letters=True)
    what = (f"{dry.events} events, {dry.reads} reads and {dry.dead_letters} dead letters"
            if everything else f"{dry.dead_letters} dead letters")
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
    done = tools.purge(path, confirm=True, outbox=everything, reads=everything,
                       dead_letters=True)
    parts = [f"{done.events} events", f"{done.reads} reads"] if everything else []
    print("purged " + ", ".join([*parts, f"{done.dead_letters} dead letters"]))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    buf = sub.add_parser("buffer", help="inspect, export or purge the buffer file")
    bsub = buf.add_subparsers(dest="buffer_command", required=True, metavar="ACTION")
    stats = bsub.add_parser("stats", help="depth, oldest age, size, dropped, dead letters")
    stats.add_argument("--json", action="store_true")
    export = bsub.add_parser("export", help="pending events (or dead letters) as JSON lines")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--dead-letters", action="store_true", help="export the dead letters")
    export.add_argument("--documents", action="store_true",
                        help="frozen documents not yet delivered, as capture lines that "
                             "`edge-agent verify` reads (docs/provenance.md)")
    purge = bsub.add_parser("purge", help="delete what is buffered (asks first)")
    purge.add_argument("--dead-letters", action="store_true", help="only the dead letters")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.add_argument("--force", action="store_true", help="even while the agent runs")
    for p in (stats, export, purge):
        p.add_argument("-c", "--config", required=True)
        p.set_defaults(func=cmd_buffer)
    dead = bsub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    dsub = dead.add_subparsers(dest="dead_action", required=True, metavar="ACTION")
    dlist = dsub.add_parser("list", help="the oldest dead letters with their refusal reason")
    dlist.add_argument("--limit", type=int, default=100)
    dlist.add_argument("--json", action="store_true")
    show = dsub.add_parser("show", help="one dead letter with its payload")
    show.add_argument("id", type=int)
    replay = dsub.add_parser("replay", help="put dead letters back in the outbox")
    replay.add_argument("ids", type=int, nargs="*")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    dpurge = dsub.add_parser("purge", help="delete the dead letters (asks first)")
    dpurge.add_argument("--yes", action="store_true", help="do not ask")
    for p in (dlist, show, replay, dpurge):
        p.add_argument("-c", "--config", required=True)
        p.set_defaults(func=cmd_buffer)
