"""Which serial ports this machine has, and which one a configured reader means.

USB serial adapters enumerate as /dev/ttyUSB0, /dev/ttyUSB1, ... in whatever order the kernel
finds them, so a reader configured as /dev/ttyUSB0 can swap places with another after a reboot.
Stable names are /dev/serial/by-id/... symlinks (udev) or a USB match spec resolved here:

    usb:VID:PID[:SERIAL]    e.g. usb:10c4:ea60:0001  (hex ids; the serial as the device reports)

``resolve_port`` is a pure function over a list of PortInfo (``list_ports()`` by default), so the
supervisor can resolve the spec again on every reconnect.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serial.tools import list_ports as serial_list_ports

BY_ID_DIR = "/dev/serial/by-id"
USB_PREFIX = "usb:"


def usb_spec(vid: str | None, pid: str | None, serial_number: str | None) -> str | None:
    """``usb:VID:PID[:SERIAL]`` for a USB device (None when it is not one)."""
    if vid is None or pid is None:
        return None
    spec = f"{USB_PREFIX}{vid}:{pid}"
    return f"{spec}:{serial_number}" if serial_number else spec


class PortError(LookupError):
    """A port spec matched no port, or several: the message lists the candidates."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PortInfo:
    device: str  # /dev/ttyUSB0
    by_id: str | None = None  # /dev/serial/by-id/usb-Silicon_Labs_CP2102_..._0001-if00-port0
    vid: str | None = None  # USB vendor id, 4 lower-case hex digits
    pid: str | None = None  # USB product id
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    description: str | None = None
    location: str | None = None  # USB bus path such as 1-1.2:1.0

    @property
    def usb_spec(self) -> str | None:
        """The ``usb:VID:PID[:SERIAL]`` spec that finds this port again, for USB ports."""
        return usb_spec(self.vid, self.pid, self.serial_number)

    @property
    def label(self) -> str:
        text = self.description or self.product or self.manufacturer or ""
        return "" if text == "n/a" else text


@dataclass(frozen=True, slots=True)
class UsbMatch:
    vid: str
    pid: str
    serial_number: str | None

    def matches(self, port: PortInfo) -> bool:
        if port.vid != self.vid or port.pid != self.pid:
            return False
        if self.serial_number is None:
            return True
        return (port.serial_number or "").casefold() == self.serial_number.casefold()

    def __str__(self) -> str:
        spec = f"{USB_PREFIX}{self.vid}:{self.pid}"
        return f"{spec}:{self.serial_number}" if self.serial_number else spec


def _hex4(text: str, what: str, spec: str) -> str:
    t = text.strip().lower().removeprefix("0x")
    if not (1 <= len(t) <= 4) or any(c not in "0123456789abcdef" for c in t):
        raise ValueError(f"{spec!r}: {what} must be 1-4 hex digits, got {text!r}")
    return t.zfill(4)


def is_usb_spec(spec: str) -> bool:
    return spec[: len(USB_PREFIX)].lower() == USB_PREFIX


def parse_usb_spec(spec: str) -> UsbMatch:
    """``usb:VID:PID[:SERIAL]`` -> UsbMatch; ValueError if malformed (the serial may hold ':')."""
    if not is_usb_spec(spec):
        raise ValueError(f"{spec!r} is not a usb:VID:PID[:SERIAL] spec")
    parts = spec[len(USB_PREFIX) :].split(":", 2)
    if len(parts) < 2:
        raise ValueError(f"{spec!r}: expected usb:VID:PID[:SERIAL], e.g. usb:10c4:ea60:0001")
    vid = _hex4(parts[0], "VID", spec)
    pid = _hex4(parts[1], "PID", spec)
    serial = parts[2] if len(parts) == 3 and parts[2] else None
    return UsbMatch(vid, pid, serial)


def _describe(port: PortInfo) -> str:
    bits = [port.device]
    if port.serial_number:
        bits.append(f"serial {port.serial_number}")
    if port.location:
        bits.append(f"location {port.location}")
    if port.label:
        bits.append(port.label)
    return ", ".join(bits)


def resolve_port(spec: str, ports: Sequence[PortInfo] | None = None) -> str:
    """The device path to open for a configured ``port``.

    A path or pyserial URL (``/dev/serial/by-id/...``, ``/dev/ttyUSB0``, ``socket://host:port``)
    is returned as given. A ``usb:VID:PID[:SERIAL]`` spec must match exactly one port of ``ports``
    (default: ``list_ports()``); otherwise PortError names the candidates.
    """
    if not is_usb_spec(spec):
        return spec
    want = parse_usb_spec(spec)
    if ports is None:
        ports = list_ports()
    found = [p for p in ports if want.matches(p)]
    if len(found) == 1:
        return found[0].device
    if not found:
        usb = [p for p in ports if p.usb_spec]
        if not usb:
            raise PortError(f"no serial port matches {want}: no USB serial port is connected")
        listed = "; ".join(f"{p.usb_spec} ({_describe(p)})" for p in usb)
        raise PortError(f"no serial port matches {want}; USB serial ports present: {listed}")
    listed = "; ".join(_describe(p) for p in found)
    hint = (
        "add the serial number (usb:VID:PID:SERIAL)"
        if want.serial_number is None
        else "these adapters share a serial number: use their /dev/serial/by-id path"
    )
    raise PortError(f"{len(found)} serial ports match {want}: {listed}; {hint}")


def by_id_links(by_id_dir: str | os.PathLike[str] = BY_ID_DIR, *,
                prefer: Callable[[str], bool] | None = None) -> dict[str, str]:
    """Real device path -> its by-id symlink (empty if udev made none): the first in name
    order, or the one ``prefer`` picks when a device has several."""
    links: dict[str, str] = {}
    try:
        entries = sorted(Path(by_id_dir).iterdir())
    except OSError:
        return links
    for link in entries:
        try:
            target = os.path.realpath(link)
        except OSError:
            continue
        if target not in links or (prefer is not None and prefer(str(link))):
            links[target] = str(link)
    return links


def _default_comports() -> Iterable[Any]:
    return serial_list_ports.comports()


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def list_ports(
    *,
    by_id_dir: str | os.PathLike[str] = BY_ID_DIR,
    comports: Callable[[], Iterable[Any]] = _default_comports,
) -> list[PortInfo]:
    """Serial ports as pyserial sees them, with their by-id link and USB identity."""
    links = by_id_links(by_id_dir)
    out: list[PortInfo] = []
    for p in comports():
        device = str(p.device)
        vid = getattr(p, "vid", None)
        pid = getattr(p, "pid", None)
        out.append(
            PortInfo(
                device=device,
                by_id=links.get(os.path.realpath(device)),
                vid=f"{vid:04x}" if isinstance(vid, int) else None,
                pid=f"{pid:04x}" if isinstance(pid, int) else None,
                serial_number=_text(getattr(p, "serial_number", None)),
                manufacturer=_text(getattr(p, "manufacturer", None)),
                product=_text(getattr(p, "product", None)),
                description=_text(getattr(p, "description", None)),
                location=_text(getattr(p, "location", None)),
            )
        )
    out.sort(key=lambda p: p.device)
    return out


def format_ports(ports: Sequence[PortInfo]) -> str:
    """The ``edge-agent ports`` table: one port per line, then its stable names."""
    if not ports:
        return "no serial ports found"
    lines: list[str] = []
    for p in ports:
        lines.append(f"{p.device}  {p.label}".rstrip())
        if p.usb_spec:
            lines.append(f"    match:  {p.usb_spec}")
        if p.by_id:
            lines.append(f"    by-id:  {p.by_id}")
        extra = [
            f"{k} {val}"
            for k, val in (
                ("manufacturer", p.manufacturer),
                ("product", p.product),
                ("location", p.location),
            )
            if val
        ]
        if extra:
            lines.append("    " + ", ".join(extra))
    return "\n".join(lines)
