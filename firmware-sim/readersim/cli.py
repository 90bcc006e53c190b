"""``reader-sim``: run a simulated reader on a pseudo-terminal or a TCP port.

    reader-sim r2000 --pty                      # prints /dev/pts/N first, then serves
    reader-sim r2000 --tcp 127.0.0.1:0          # prints tcp://127.0.0.1:PORT first
    reader-sim chafon --pty --model 288
    reader-sim thingmagic --pty --streaming-at-start
    reader-sim barcode --pty --terminator crlf
    reader-sim llrp --tcp 127.0.0.1:0           # LLRP 1.0.1 reader, TCP only
    reader-sim hid --out /tmp/kbd --fifo --keymap de   # keyboard-wedge scanner: evdev records

stdout carries only the line protocol (first line = port; ``GONE <port>`` when the port
vanishes; ``PORT <port>`` when it is back); logs go to stderr. SIGTERM/SIGINT exit with 0.
``hid`` writes to a FIFO or a file instead (first line: its path; ``SCAN <n>`` per scan).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from readersim.args import build_parser as build_parser  # re-exported: tests, scripts
from readersim.barcode import DEFAULT_SCANS, BarcodeConfig, BarcodeDevice, parse_code
from readersim.barcode import Scan as BarcodeScan
from readersim.chafon import ChafonConfig, ChafonDevice
from readersim.device import Clock, Device
from readersim.faults import (
    DeviceFaults,
    ErrorInjection,
    GarbageBurst,
    LineFaults,
    Window,
)
from readersim.hid import HidConfig, Typist
from readersim.llrp import LLRPConfig, LLRPDevice
from readersim.population import Population, generated_tags
from readersim.r2000 import R2000Config, R2000Device
from readersim.scenario import Scenario, load_scenario
from readersim.server import DeviceFactory, ServeSpec, serve
from readersim.thingmagic import ThingMagicConfig, ThingMagicDevice

log = logging.getLogger("readersim")


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
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
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


def _tag_reader(device: Callable[..., Device], config: Any, population: Population,
                faults: DeviceFaults) -> DeviceFactory:
    """The factory of a simulated tag reader (one per connection the server accepts)."""

    def factory(clock: Clock, rng: random.Random, epoch_s: float) -> Device:
        return device(config, population, clock=clock, rng=rng, faults=faults, epoch_s=epoch_s)

    return factory


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

    factory = _tag_reader(R2000Device, config, population, faults)

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

    factory = _tag_reader(ChafonDevice, config, population, faults)

    summary = (
        f"chafon UHFReader{config.model}: address 0x{config.address:02X}, antennas "
        f"{sorted(config.connected_antennas)}, {len(population.tags)} tags, {config.baud} baud"
    )
    return Plan(_spec(args, scenario), factory, summary)


# --model -> (hardware version, antenna ports, maximum read power in centi-dBm)
_TM_MODELS = {"nano": ("30 00 00 01", 1, 2700), "m6e": ("18 00 00 01", 4, 3150),
              "m7e": ("38 00 00 01", 1, 3000)}


def _thingmagic_plan(args: argparse.Namespace) -> Plan:
    scenario = _scenario(args)
    hardware, ports, max_centi = _TM_MODELS[args.model]
    config = ThingMagicConfig(
        hardware=bytes.fromhex(hardware),
        firmware=bytes(int(part, 16) for part in args.firmware.split(".")),
        ports=ports,
        baud=args.baud,
        read_rate_per_s=_read_rate(args, scenario),
        min_round_s=_min_round_s(args, scenario),
        max_power_centi_dbm=max_centi,
        temperature_c=args.temperature,
        temperature_steps=tuple(args.temperature_at),
        streaming_at_start=args.streaming_at_start,
        saturate=args.saturate,
    )
    population = _population(args, scenario)
    faults = _device_faults(args, scenario)

    factory = _tag_reader(ThingMagicDevice, config, population, faults)

    summary = (
        f"thingmagic {args.model}: {ports} port(s), {len(population.tags)} tags, {config.baud} "
        f"baud{', streaming at start' if config.streaming_at_start else ''}"
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


def _llrp_plan(args: argparse.Namespace) -> Plan:
    if args.pty:
        raise ValueError("llrp is served over TCP only (--tcp HOST:PORT)")
    if args.tcp is None:
        args.tcp = ("127.0.0.1", 0)
    scenario = _scenario(args)
    antennas = args.antennas
    config = LLRPConfig(
        flavour=args.flavour,
        ports=args.ports or max(4, *antennas),
        connected_antennas=frozenset(antennas),
        read_rate_per_s=_read_rate(args, scenario),
        firmware=args.firmware,
        baud=args.baud,
        drop_after_s=args.drop_after,
        stale_rospec=args.stale_rospec,
        refuse_custom=args.refuse_custom,
        busy=args.busy,
        gpi_pulse=args.gpi_pulse,
        antenna_down=args.antenna_down,
        clock_step=args.clock_step,
    )
    population = _population(args, scenario)
    faults = _device_faults(args, scenario)

    def factory(clock: Clock, rng: random.Random, epoch_s: float) -> Device:
        # wall time at the epoch, on the reader's clock (which may be off ours)
        utc = time.time() - (clock() - epoch_s) + args.clock_offset
        cfg = dataclasses.replace(config, utc_at_epoch_s=utc)
        return LLRPDevice(cfg, population, clock=clock, rng=rng, faults=faults, epoch_s=epoch_s)

    summary = (
        f"llrp reader ({config.flavour}): {config.ports} ports, antennas "
        f"{sorted(config.connected_antennas)}, {len(population.tags)} tags"
    )
    return Plan(_spec(args, scenario), factory, summary)


def build_plan(args: argparse.Namespace) -> Plan:
    if args.device == "r2000":
        return _r2000_plan(args)
    if args.device == "chafon":
        return _chafon_plan(args)
    if args.device == "thingmagic":
        return _thingmagic_plan(args)
    if args.device == "barcode":
        return _barcode_plan(args)
    if args.device == "llrp":
        return _llrp_plan(args)
    raise ValueError(f"unknown device {args.device!r}")


def _hid_typist(args: argparse.Namespace) -> tuple[Typist, tuple[BarcodeScan, ...], float]:
    scenario = Scenario()
    if args.scenario is not None:
        scenario = load_scenario(args.scenario, seed=args.seed)
        if scenario.device not in (None, "barcode", "hid"):
            raise ValueError(f"{args.scenario}: scenario is for {scenario.device}, not hid")
    scans = (tuple(parse_code(text) for text in args.code) or scenario.barcode_codes
             or DEFAULT_SCANS)
    interval_s = args.interval if args.interval is not None else scenario.barcode_interval_s
    size: Literal[16, 24] = 24 if struct.calcsize("l") == 8 else 16  # this machine's
    if args.record_size in (16, 24):
        size = args.record_size
    typist = Typist(HidConfig(keymap=args.keymap, record_size=size,
                              gs_substitute=args.gs_substitute, terminator=args.terminator,
                              send_aim=not args.no_aim, key_gap_s=args.key_gap_ms / 1000))
    for scan in scans:
        typist.check(scan)
    return typist, scans, 1.0 if interval_s is None else interval_s


def _open_out(path: str, fifo: bool) -> int:
    """A FIFO is opened read-write: that never blocks and never fails with EPIPE while the
    agent is between two connections (the kernel keeps what was written for the next reader).
    """
    if fifo and not os.path.exists(path):
        os.mkfifo(path)
    if os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode):
        return os.open(path, os.O_RDWR)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def _run_hid(args: argparse.Namespace, typist: Typist, scans: tuple[BarcodeScan, ...],
                   interval_s: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(args.seed)  # noqa: S311 - a simulation
    fd = _open_out(str(args.out), args.fifo)
    try:
        _announce(str(args.out))
        wait_s = args.first_s
        n = 0
        while args.count <= 0 or n < args.count:
            try:
                async with asyncio.timeout(wait_s):
                    await stop.wait()
                break
            except TimeoutError:
                pass
            scan = rng.choice(scans) if args.random_order else scans[n % len(scans)]
            data = typist.records(scan, time.time())
            await asyncio.to_thread(os.write, fd, data)
            n += 1
            _announce(f"SCAN {n}")
            wait_s = interval_s
        log.info("stopped after %d scans", n)
    finally:
        os.close(fd)
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


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
    if args.device == "hid":
        try:
            typist, scans, interval_s = _hid_typist(args)
        except (ValueError, OSError) as exc:
            print(f"reader-sim: error: {exc}", file=sys.stderr)
            return 2
        log.info("hid scanner: %d codes every %s s, keymap %s, %d-byte records, to %s",
                 len(scans), interval_s, args.keymap, typist.config.record_size, args.out)
        try:
            return asyncio.run(_run_hid(args, typist, scans, interval_s))
        except OSError as exc:
            print(f"reader-sim: error: {args.out}: {exc}", file=sys.stderr)
            return 1
    try:
        plan = build_plan(args)
    except (ValueError, OSError) as exc:
        print(f"reader-sim: error: {exc}", file=sys.stderr)
        return 2
    log.info("%s", plan.summary)
    return asyncio.run(_run(plan))
