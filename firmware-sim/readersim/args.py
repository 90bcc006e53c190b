"""``reader-sim`` arguments: the parser and its value types (``readersim.cli`` runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_BAUD = {"r2000": 115200, "chafon": 57600, "thingmagic": 115200, "barcode": 9600,
                "llrp": 100_000_000}


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


def _clock_step(text: str) -> tuple[float, float]:
    try:
        at_s, step_s = (float(x) for x in text.split(":"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected AT_S:STEP_S: {exc}") from exc
    if at_s < 0:
        raise argparse.ArgumentTypeError("AT_S must be >= 0")
    return at_s, step_s


def _antenna_down(text: str) -> tuple[int, float, float]:
    try:
        antenna, at_s, for_s = text.split(":")
        out = int(antenna), float(at_s), float(for_s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ANT:AT_S:FOR_S: {exc}") from exc
    if out[0] < 1 or out[1] < 0 or out[2] <= 0:
        raise argparse.ArgumentTypeError("need ANT >= 1, AT_S >= 0, FOR_S > 0")
    return out


def _gpi_pulse(text: str) -> tuple[int, float, float, float]:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError("expected PORT:PERIOD_S:HIGH_S[:FIRST_S]")
    try:
        port = int(parts[0])
        period_s, high_s = float(parts[1]), float(parts[2])
        first_s = float(parts[3]) if len(parts) == 4 else 1.0
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected PORT:PERIOD_S:HIGH_S[:FIRST_S]: {exc}") from exc
    if port < 1 or not 0 < high_s < period_s or first_s < 0:
        raise argparse.ArgumentTypeError("need PORT >= 1, 0 < HIGH_S < PERIOD_S, FIRST_S >= 0")
    return port, period_s, high_s, first_s


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


def _temperature_at(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--temperature-at",
        type=_temperature_step,
        action="append",
        default=[],
        metavar="S:C",
        help="from S seconds after start on, report C °C (repeatable)",
    )


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
        "--tls-cert", type=Path, metavar="PEM",
        help="tcp: serve TLS with this certificate (chain) ... (LLRP over TLS, port 5085)",
    )
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="... and this private key")
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
    _temperature_at(g)
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

    tm = sub.add_parser("thingmagic", help="ThingMagic Mercury module (M6e Nano, M7e)")
    _common(tm, "thingmagic")
    _rfid(tm)
    g = tm.add_argument_group("thingmagic")
    g.add_argument(
        "--model",
        choices=["nano", "m6e", "m7e"],
        default="nano",
        help="hardware id in the version reply: M6e Nano (1 port, 27 dBm), M6e (4 ports, "
        "31.5 dBm) or M7e Pico (1 port, 30 dBm) (default %(default)s)",
    )
    g.add_argument("--firmware", default="01.09.00.02", help="firmware version AA.BB.CC.DD")
    g.add_argument("--temperature", type=int, default=33, help="°C reported by 0x72")
    _temperature_at(g)
    g.add_argument(
        "--streaming-at-start",
        action="store_true",
        help="start in the application, region set, already streaming (as an earlier "
        "process that died without stop-reading leaves the module)",
    )

    llrp = sub.add_parser("llrp", help="LLRP 1.0.1 fixed reader over TCP (Impinj, Zebra)")
    _common(llrp, "llrp")
    _rfid(llrp)
    g = llrp.add_argument_group("llrp")
    g.add_argument(
        "--flavour",
        choices=["plain", "impinj"],
        default="plain",
        help="plain LLRP (custom messages refused) or Impinj (PEN 25882: custom messages, "
        "ImpinjPeakRSSI in tag reports) (default %(default)s)",
    )
    g.add_argument(
        "--antennas",
        type=_int_list,
        default=(1, 2, 3, 4),
        metavar="LIST",
        help="connected antenna ports; AISpec antenna 0 = all of them (default 1,2,3,4)",
    )
    g.add_argument(
        "--ports",
        type=int,
        default=None,
        help="MaxNumberOfAntennaSupported (default 4, or the highest of --antennas)",
    )
    g.add_argument("--firmware", default="5.14.0.240", help="ReaderFirmwareVersion string")
    g.add_argument(
        "--gpi-pulse",
        type=_gpi_pulse,
        default=None,
        metavar="PORT:PERIOD:HIGH[:FIRST]",
        help="GPI PORT goes high FIRST s after each connection (default 1), for HIGH s of "
        "every PERIOD s (a photo-eye); GPI-triggered ROSpecs follow it",
    )
    g.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="the reader's clock runs S seconds ahead of this machine's (negative: behind)",
    )
    lf = llrp.add_argument_group("llrp faults")
    lf.add_argument(
        "--drop-after",
        type=_seconds,
        metavar="S",
        help="close each TCP connection S seconds after it opened",
    )
    lf.add_argument(
        "--antenna-down",
        type=_antenna_down,
        default=None,
        metavar="ANT:AT:FOR",
        help="antenna ANT is unplugged AT s after each connection for FOR s (AntennaEvents)",
    )
    lf.add_argument(
        "--clock-step",
        type=_clock_step,
        default=None,
        metavar="AT:STEP",
        help="the reader's clock jumps by STEP s (negative: back) AT s after each connection",
    )
    lf.add_argument(
        "--stale-rospec",
        action="store_true",
        help="ROSpec 99 already exists at connect (only DELETE_ROSPEC 0 clears it)",
    )
    lf.add_argument(
        "--refuse-custom",
        action="store_true",
        help="answer CUSTOM_MESSAGE with ERROR_MESSAGE 109 even with --flavour impinj",
    )
    lf.add_argument(
        "--busy",
        action="store_true",
        help="ConnectionAttemptEvent status 2 (a client connection exists), then close",
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

    hid = sub.add_parser(
        "hid", help="USB barcode scanner in keyboard-wedge mode: evdev records to a FIFO/file")
    hid.add_argument("--out", type=Path, required=True, metavar="PATH",
                     help="FIFO or file to write input_event records to (a missing path is "
                     "created as a FIFO with --fifo, else as a file)")
    hid.add_argument("--fifo", action="store_true", help="create --out as a FIFO if missing")
    hid.add_argument("--keymap", choices=["us", "de", "fr", "uk"], default="us",
                     help="keyboard layout the scanner types on (default %(default)s)")
    hid.add_argument("--record-size", type=int, choices=[16, 24], default=None,
                     help="input_event size: 24 (64-bit) or 16 (32-bit); default: this "
                     "machine's")
    hid.add_argument("--gs-substitute", default="ctrl+]", metavar="KEY",
                     help="how GS is typed: ctrl+], f1..f12 or one character "
                     "(default %(default)s)")
    hid.add_argument("--terminator", choices=["enter", "tab", "none"], default="enter",
                     help="key after each scan (default %(default)s)")
    hid.add_argument("--scan", "--code", dest="code", action="append", default=[],
                     metavar="TEXT", help="a code to scan, AIM identifier first, <GS> or "
                     "\\x1d for GS (repeatable; default: the barcode simulator's codes)")
    hid.add_argument("--every-s", "--interval", dest="interval", type=_seconds, default=None,
                     metavar="S", help="seconds from one scan to the next (default 1.0)")
    hid.add_argument("--first-s", type=_seconds, default=0.3, metavar="S",
                     help="delay before the first scan (default %(default)s)")
    hid.add_argument("--count", type=int, default=0,
                     help="stop after this many scans (0 = keep cycling; default)")
    hid.add_argument("--key-gap-ms", type=float, default=2.0,
                     help="time between two keys' timestamps (default %(default)s)")
    hid.add_argument("--no-aim", action="store_true", help="do not send AIM identifiers")
    hid.add_argument("--random-order", action="store_true", help="scan codes in random order")
    hid.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    hid.add_argument("--scenario", type=Path, metavar="FILE",
                     help="YAML scenario (its barcode: codes and interval_s are used)")
    hid.add_argument("--log-level", default="WARNING",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="stderr log level (default %(default)s)")
    return parser
