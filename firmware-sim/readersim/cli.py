"""``reader-sim``: run a simulated reader on a pseudo-terminal or a TCP port.

    reader-sim r2000 --pty                      # prints /dev/pts/N first, then serves
    reader-sim r2000 --tcp 127.0.0.1:0          # prints tcp://127.0.0.1:PORT first
    reader-sim chafon --pty --model 288
    reader-sim barcode --pty --terminator crlf

stdout carries only the line protocol (first line = port; ``GONE <port>`` when the port
vanishes; ``PORT <port>`` when it is back); logs go to stderr. SIGTERM/SIGINT exit with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from readersim.barcode import DEFAULT_SCANS, BarcodeConfig, BarcodeDevice, parse_code
from readersim.chafon import ChafonConfig, ChafonDevice
from readersim.device import Clock, Device
from readersim.faults import (
    DeviceFaults,
    ErrorInjection,
    GarbageBurst,
    LineFaults,
    Window,
)
from readersim.population import Population, generated_tags
from readersim.r2000 import R2000Config, R2000Device
from readersim.scenario import Scenario, load_scenario
from readersim.server import DeviceFactory, ServeSpec, serve

log = logging.getLogger("readersim")

DEFAULT_BAUD = {"r2000": 115200, "chafon": 57600, "barcode": 9600}


def _int(text: str) -> int:
    """Decimal or 0x-prefixed integer."""
    return int(text, 0)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part, 0) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def _temperature_step(text: str) -> tuple[float, int]:
    at, _, temp = text.partition(":")
    try:
        return _seconds(at), int(temp)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SECONDS:CELSIUS, got {text!r}") from exc


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT (PORT 0 = any free port)")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _common(parser: argparse.ArgumentParser, device: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--pty", action="store_true", help="serve on a new pseudo-terminal (the default)"
    )
    where.add_argument(
        "--tcp", type=_host_port, metavar="HOST:PORT", help="serve over TCP instead (PORT 0 = any)"
    )
    parser.add_argument(
        "--link", type=Path, metavar="PATH", help="pty: keep a symlink at PATH to the current pty"
    )
    parser.add_argument(
        "--baud",
        type=int,
        default=DEFAULT_BAUD[device],
        help="line rate used to pace writes, 8N1 (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="YAML scenario: tags over time, read rates, faults (flags add to it)",
    )
    parser.add_argument("--saturate", action="store_true", help="stream as fast as the line allows")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (default %(default)s)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--garbage",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of a burst of line noise before a frame",
    )
    faults.add_argument(
        "--garbage-at",
        type=float,
        action="append",
        default=[],
        metavar="S",
        help="send a 64-byte garbage burst at S seconds (repeatable)",
    )
    faults.add_argument(
        "--split",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of splitting a frame across 2-3 writes",
    )
    faults.add_argument(
        "--drop-byte",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of dropping one byte of a frame",
    )
    faults.add_argument(
        "--bad-checksum",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of corrupting a frame's checksum",
    )
    faults.add_argument(
        "--bad-vectors",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of inserting a documented [BAD] frame before a frame",
    )
    faults.add_argument(
        "--vanish-after",
        type=_seconds,
        metavar="S",
        help="the port disappears S seconds after start ...",
    )
    faults.add_argument(
        "--vanish-for",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="... for S seconds, then comes back (default %(default)s)",
    )
    faults.add_argument(
        "--silent-after",
        type=_seconds,
        metavar="S",
        help="the device stops answering S seconds after start ...",
    )
    faults.add_argument(
        "--silent-for",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="... for S seconds (default %(default)s)",
    )
    faults.add_argument(
        "--error-code",
        type=_int,
        metavar="CODE",
        help="answer inventories with this error (0x11, 0x22, 0x36; chafon: status byte)",
    )
    faults.add_argument(
        "--error-rate",
        type=_probability,
        default=1.0,
        metavar="P",
        help="probability per inventory command (default %(default)s)",
    )
    faults.add_argument(
        "--error-after",
        type=_seconds,
        metavar="S",
        help="only inside a window starting S seconds after start ...",
    )
    faults.add_argument(
        "--error-for",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="... lasting S seconds (default %(default)s)",
    )


def _rfid(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tags")
    group.add_argument(
        "--tags",
        type=int,
        default=20,
        metavar="N",
        help="N distinct SGTIN-96 tags in the field (default %(default)s)",
    )
    group.add_argument(
        "--tag-antennas",
        type=_int_list,
        default=(1,),
        metavar="LIST",
        help="antennas the generated tags are spread over (default 1)",
    )
    group.add_argument(
        "--company-prefix",
        default="0614141",
        help="GS1 company prefix of generated tags (default %(default)s)",
    )
    group.add_argument(
        "--read-rate",
        type=float,
        default=None,
        metavar="R",
        help="radio reads per second, 0 = unlimited (default 200)",
    )
    group.add_argument(
        "--reads-per-round",
        type=int,
        default=1,
        metavar="K",
        help="times each tag is read per round (default %(default)s)",
    )
    group.add_argument(
        "--min-round-s",
        type=_seconds,
        default=None,
        metavar="S",
        help="shortest inventory round (default 0.04)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reader-sim",
        description="Simulated UHF RFID readers and barcode scanners on a pty or TCP port.",
    )
    sub = parser.add_subparsers(dest="device", required=True, metavar="DEVICE")

    r2000 = sub.add_parser("r2000", help='R2000 "A0" protocol reader')
    _common(r2000, "r2000")
    _rfid(r2000)
    g = r2000.add_argument_group("r2000")
    g.add_argument("--address", type=_int, default=0x01, help="reader address (default 0x01)")
    g.add_argument(
        "--antennas",
        type=_int_list,
        default=None,
        metavar="LIST",
        help="connected antenna ports (default 1,2,3,4)",
    )
    g.add_argument(
        "--ports",
        type=int,
        choices=[1, 4, 8, 16],
        default=None,
        help="antenna ports of the reader (default 4, or 8/16 if --antennas needs)",
    )
    g.add_argument("--firmware", default="1.9", help="firmware version MAJOR.MINOR")
    g.add_argument("--temperature", type=int, default=35, help="°C reported by 0x7B (default 35)")
    g.add_argument(
        "--temperature-at",
        type=_temperature_step,
        action="append",
        default=[],
        metavar="S:C",
        help="from S seconds after start on, report C °C (repeatable)",
    )
    g.add_argument(
        "--summary",
        choices=["v3", "v2.2"],
        default="v3",
        help="end-of-inventory summary format (default %(default)s)",
    )

    chafon = sub.add_parser("chafon", help="Chafon / UHFReader18 / UHFReader288 reader")
    _common(chafon, "chafon")
    _rfid(chafon)
    g = chafon.add_argument_group("chafon")
    g.add_argument("--address", type=_int, default=0x00, help="reader address (default 0x00)")
    g.add_argument(
        "--model",
        choices=["288", "18"],
        default="288",
        help="UHFReader288 (Ant + RSSI) or UHFReader18 frames (default %(default)s)",
    )
    g.add_argument(
        "--antennas",
        type=_int_list,
        default=(1,),
        metavar="LIST",
        help="connected antenna ports (default 1)",
    )
    g.add_argument(
        "--ports",
        type=int,
        choices=[1, 4, 8],
        default=None,
        help="antenna ports of the reader (default 4, or 8 if --antennas needs)",
    )
    g.add_argument(
        "--scan-mode",
        action="store_true",
        help="start in scan mode: push 0xEE frames without being asked",
    )
    g.add_argument(
        "--tags-per-frame",
        type=int,
        default=1,
        metavar="N",
        help="tags packed in one 0x01 answer frame (default %(default)s)",
    )
    g.add_argument(
        "--scan-time",
        type=int,
        default=10,
        metavar="N",
        help="inventory scan time in units of 100 ms (default %(default)s)",
    )

    barcode = sub.add_parser("barcode", help="barcode scanner in serial line mode")
    _common(barcode, "barcode")
    g = barcode.add_argument_group("barcode")
    g.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="TEXT",
        help="a code to scan, AIM identifier first, <GS> or \\x1d for GS "
        "(repeatable; default: GS1 DataMatrix, GS1-128 SSCC, EAN-13, Code 128)",
    )
    g.add_argument(
        "--terminator",
        choices=["cr", "crlf", "none"],
        default="crlf",
        help="suffix after each scan; none = timeout framing (default %(default)s)",
    )
    g.add_argument(
        "--interval",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds from one scan to the next (default 1.0)",
    )
    g.add_argument(
        "--quiet-gap",
        type=_seconds,
        default=0.15,
        metavar="S",
        help="silence after an unterminated scan (default %(default)s)",
    )
    g.add_argument("--random-order", action="store_true", help="scan codes in random order")
    g.add_argument("--no-aim", action="store_true", help="do not send AIM identifiers")
    return parser


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the server needs, built from the arguments (and a scenario file)."""

    spec: ServeSpec
    factory: DeviceFactory
    summary: str


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is None:
        return Scenario()
    scenario = load_scenario(args.scenario, seed=args.seed)
    if scenario.device not in (None, args.device):
        raise ValueError(f"{args.scenario}: scenario is for {scenario.device}, not {args.device}")
    return scenario


def _device_faults(args: argparse.Namespace, scenario: Scenario) -> DeviceFaults:
    base = scenario.device_faults
    silent: tuple[Window, ...] = ()
    if args.silent_after is not None:
        silent = (Window(start_s=args.silent_after, duration_s=args.silent_for),)
    errors: tuple[ErrorInjection, ...] = ()
    if args.error_code is not None:
        if args.error_after is not None:
            window = Window(start_s=args.error_after, duration_s=args.error_for)
            errors = (ErrorInjection(code=args.error_code, windows=(window,)),)
        else:
            errors = (ErrorInjection(code=args.error_code, probability=args.error_rate),)
    return DeviceFaults(silent=base.silent + silent, errors=base.errors + errors)


def _line_faults(args: argparse.Namespace, scenario: Scenario) -> LineFaults:
    base = scenario.line_faults
    return LineFaults(
        garbage_probability=args.garbage or base.garbage_probability,
        garbage_max_bytes=base.garbage_max_bytes,
        split_probability=args.split or base.split_probability,
        split_gap_s=base.split_gap_s,
        drop_byte_probability=args.drop_byte or base.drop_byte_probability,
        bad_checksum_probability=args.bad_checksum or base.bad_checksum_probability,
        bad_vector_probability=args.bad_vectors or base.bad_vector_probability,
        bursts=base.bursts + tuple(GarbageBurst(at_s=t, size_bytes=64) for t in args.garbage_at),
    )


def _spec(args: argparse.Namespace, scenario: Scenario) -> ServeSpec:
    vanish: tuple[Window, ...] = scenario.vanish
    if args.vanish_after is not None:
        vanish += (Window(start_s=args.vanish_after, duration_s=args.vanish_for),)
    host, port = args.tcp if args.tcp else ("127.0.0.1", 0)
    return ServeSpec(
        transport="tcp" if args.tcp else "pty",
        host=host,
        port=port,
        link=args.link,
        line_faults=_line_faults(args, scenario),
        vanish=vanish,
        seed=args.seed,
    )


def _read_rate(args: argparse.Namespace, scenario: Scenario) -> float:
    if args.saturate:
        return float("inf")
    rate = args.read_rate if args.read_rate is not None else scenario.read_rate_per_s
    if rate is None:
        return 200.0
    return float("inf") if rate == 0 else float(rate)


def _min_round_s(args: argparse.Namespace, scenario: Scenario) -> float:
    if args.saturate:
        return 0.0
    if args.min_round_s is not None:
        return float(args.min_round_s)
    return 0.04 if scenario.min_round_s is None else scenario.min_round_s


def _population(args: argparse.Namespace, scenario: Scenario) -> Population:
    if scenario.tags is not None:
        return Population(scenario.tags, cycle_s=scenario.cycle_s)
    tags = generated_tags(
        args.tags,
        seed=args.seed,
        antennas=args.tag_antennas,
        company_prefix=args.company_prefix,
        reads_per_round=args.reads_per_round,
    )
    return Population(tags, cycle_s=scenario.cycle_s)


def _r2000_plan(args: argparse.Namespace) -> Plan:
    scenario = _scenario(args)
    antennas = args.antennas or (1, 2, 3, 4)
    ports = args.ports or (4 if max(antennas) <= 4 else 8 if max(antennas) <= 8 else 16)
    major, _, minor = args.firmware.partition(".")
    config = R2000Config(
        address=args.address,
        firmware=(int(major), int(minor or 0)),
        ports=ports,
        connected_antennas=frozenset(antennas),
        baud=args.baud,
        summary_version=args.summary,
        read_rate_per_s=_read_rate(args, scenario),
        min_round_s=_min_round_s(args, scenario),
        saturate=args.saturate,
        temperature_c=args.temperature,
        temperature_steps=tuple(args.temperature_at),
    )
    population = _population(args, scenario)
    faults = _device_faults(args, scenario)

    def factory(clock: Clock, rng: random.Random, epoch_s: float) -> Device:
        return R2000Device(config, population, clock=clock, rng=rng, faults=faults, epoch_s=epoch_s)

    summary = (
        f"r2000 reader: address 0x{config.address:02X}, {ports} ports, antennas "
        f"{sorted(config.connected_antennas)}, {len(population.tags)} tags, {config.baud} baud"
    )
    return Plan(_spec(args, scenario), factory, summary)


def _chafon_plan(args: argparse.Namespace) -> Plan:
    scenario = _scenario(args)
    antennas = args.antennas
    ports = args.ports or (4 if max(antennas) <= 4 else 8)
    config = ChafonConfig(
        model=args.model,
        address=args.address,
        baud=args.baud,
        ports=ports,
        connected_antennas=frozenset(antennas),
        tags_per_frame=args.tags_per_frame,
        scan_time_100ms=args.scan_time,
        read_rate_per_s=_read_rate(args, scenario),
        min_round_s=_min_round_s(args, scenario),
        scan_mode=args.scan_mode,
        saturate=args.saturate,
    )
    population = _population(args, scenario)
    faults = _device_faults(args, scenario)

    def factory(clock: Clock, rng: random.Random, epoch_s: float) -> Device:
        return ChafonDevice(
            config, population, clock=clock, rng=rng, faults=faults, epoch_s=epoch_s
        )

    summary = (
        f"chafon UHFReader{config.model}: address 0x{config.address:02X}, antennas "
        f"{sorted(config.connected_antennas)}, {len(population.tags)} tags, {config.baud} baud"
    )
    return Plan(_spec(args, scenario), factory, summary)


def _barcode_plan(args: argparse.Namespace) -> Plan:
    scenario = _scenario(args)
    scans = tuple(parse_code(text) for text in args.code) or scenario.barcode_codes
    interval_s = args.interval if args.interval is not None else scenario.barcode_interval_s
    config = BarcodeConfig(
        scans=scans or DEFAULT_SCANS,
        terminator=args.terminator,
        send_aim=not args.no_aim,
        interval_s=1.0 if interval_s is None else interval_s,
        quiet_gap_s=args.quiet_gap,
        order="random" if args.random_order else "cycle",
        baud=args.baud,
        saturate=args.saturate,
    )
    faults = _device_faults(args, scenario)

    def factory(clock: Clock, rng: random.Random, epoch_s: float) -> Device:
        return BarcodeDevice(config, clock=clock, rng=rng, faults=faults, epoch_s=epoch_s)

    summary = (
        f"barcode scanner: {len(config.scans)} codes every {config.interval_s} s, {args.baud} baud"
    )
    return Plan(_spec(args, scenario), factory, summary)


def build_plan(args: argparse.Namespace) -> Plan:
    if args.device == "r2000":
        return _r2000_plan(args)
    if args.device == "chafon":
        return _chafon_plan(args)
    if args.device == "barcode":
        return _barcode_plan(args)
    raise ValueError(f"unknown device {args.device!r}")


def _announce(line: str) -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:
        log.warning("stdout is closed; could not announce %r", line)


async def _run(plan: Plan) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    failed = False
    try:
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(serve(plan.spec, plan.factory, _announce), name="sim-serve")
            stopping = tg.create_task(stop.wait(), name="sim-stop")
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            serving.cancel()
            stopping.cancel()
    except* OSError as group:
        for exc in group.exceptions:
            log.error("cannot serve: %s", exc)  # noqa: TRY400 - an expected failure, no trace
        failed = True
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    if failed:
        return 1
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        plan = build_plan(args)
    except (ValueError, OSError) as exc:
        print(f"reader-sim: error: {exc}", file=sys.stderr)
        return 2
    log.info("%s", plan.summary)
    return asyncio.run(_run(plan))
