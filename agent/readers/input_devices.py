"""Linux input devices (evdev) that may be keyboard-wedge barcode scanners, found in sysfs.

A USB scanner in HID keyboard mode appears as /dev/input/eventN, N in plug order, so the
configured port is a stable name (/dev/input/by-id/usb-...-event-kbd, a udev rule's
/dev/scanner-*) or a USB match spec resolved here on every connect:

    usb:VID:PID[:SERIAL]    e.g. usb:0c2e:0b61  (hex ids; the serial as the scanner reports it)

No udev library: each /sys/class/input/eventN names its input device (``device`` link) with
``name``, ``uniq`` (the USB serial for HID devices), ``id/vendor``, ``id/product`` and
``capabilities/key``; the USB device's ``serial`` is found by walking up from it. The sysfs and
/dev roots are parameters, so tests run against a fake tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.readers.ports import PortError, is_usb_spec, parse_usb_spec, usb_spec
from agent.readers.ports import by_id_links as serial_by_id_links

SYSFS_ROOT = "/sys"
DEV_INPUT = "/dev/input"

# USB vendor ids of barcode scanner makers (the usb.ids database), for `edge-agent ports`.
SCANNER_VENDORS: dict[str, str] = {
    "0c2e": "Honeywell (Metrologic/Hand Held Products)",
    "05e0": "Zebra (Symbol)",
    "05f9": "Datalogic",
    "1eab": "Newland",
}
# Keys every keyboard-wedge scanner needs (input-event-codes.h): 1, Q, A, Enter. All below
# bit 32, so the lowest word of capabilities/key holds them whatever the kernel's long size.
_KEYBOARD_KEYS = (2, 16, 28, 30)
_EVENT_RE = re.compile(r"^event(\d+)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class InputDevice:
    device: str  # /dev/input/event5
    name: str | None = None  # the kernel's device name, e.g. "Honeywell Imaging & Mobility 1900"
    vid: str | None = None  # 4 lower-case hex digits
    pid: str | None = None
    serial_number: str | None = None
    by_id: str | None = None  # /dev/input/by-id/usb-..._-event-kbd
    keyboard: bool = False  # reports the keys a keyboard-wedge scanner types
    usb_device: str | None = None  # sysfs path of the USB device (shared by its interfaces)

    @property
    def usb_spec(self) -> str | None:
        return usb_spec(self.vid, self.pid, self.serial_number)

    @property
    def vendor(self) -> str | None:
        return SCANNER_VENDORS.get(self.vid or "")

    @property
    def looks_like_scanner(self) -> bool:
        """A keyboard from a scanner maker, or one whose name says so."""
        if not self.keyboard:
            return False
        text = (self.name or "").lower() + " " + (self.by_id or "").lower()
        return self.vendor is not None or any(w in text for w in ("scanner", "barcode"))


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text or None


def _hex4(text: str | None) -> str | None:
    if text is None:
        return None
    t = text.lower().removeprefix("0x")
    return t.zfill(4) if re.fullmatch(r"[0-9a-f]{1,4}", t) else None


def has_keyboard_keys(bitmap: str | None) -> bool:
    """``capabilities/key``: hex words, most significant first (each a kernel long)."""
    if not bitmap:
        return False
    try:
        low = int(bitmap.split()[-1], 16)
    except ValueError:
        return False
    return all(low >> k & 1 for k in _KEYBOARD_KEYS)


def _usb_device(input_dir: Path) -> Path | None:
    """The USB device above this input device (it has idVendor), None if not USB."""
    try:
        here = input_dir.resolve()
    except OSError:
        return None
    return next((p for p in here.parents if (p / "idVendor").exists()), None)


def by_id_links(dev_input: str | os.PathLike[str] = DEV_INPUT) -> dict[str, str]:
    """/dev/input/eventN -> its by-id link (udev); the -event-kbd one when there are several."""
    return serial_by_id_links(Path(dev_input, "by-id"),
                              prefer=lambda link: link.endswith("-event-kbd"))


def list_input_devices(
    *, sysfs_root: str | os.PathLike[str] = SYSFS_ROOT,
    dev_input: str | os.PathLike[str] = DEV_INPUT,
) -> list[InputDevice]:
    """Every /dev/input/eventN sysfs knows, with its USB identity (sorted by N)."""
    root = Path(sysfs_root, "class", "input")
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    links = by_id_links(dev_input)
    found: list[tuple[int, InputDevice]] = []
    for entry in entries:
        m = _EVENT_RE.match(entry.name)
        if not m:
            continue
        dev = entry / "device"  # the inputM directory
        device = str(Path(dev_input, entry.name))
        uniq = _read(dev / "uniq")
        usb = _usb_device(dev)
        found.append((int(m.group(1)), InputDevice(
            device=device,
            name=_read(dev / "name"),
            vid=_hex4(_read(dev / "id" / "vendor")),
            pid=_hex4(_read(dev / "id" / "product")),
            serial_number=uniq or (_read(usb / "serial") if usb is not None else None),
            by_id=links.get(os.path.realpath(device)),
            keyboard=has_keyboard_keys(_read(dev / "capabilities" / "key")),
            usb_device=str(usb) if usb is not None else None,
        )))
    found.sort(key=lambda item: item[0])
    return [d for _, d in found]


def _describe(d: InputDevice) -> str:
    bits = [d.device]
    if d.serial_number:
        bits.append(f"serial {d.serial_number}")
    if d.name:
        bits.append(d.name)
    return ", ".join(bits)


def resolve_input_port(spec: str, devices: Sequence[InputDevice] | None = None, *,
                       sysfs_root: str | os.PathLike[str] = SYSFS_ROOT,
                       dev_input: str | os.PathLike[str] = DEV_INPUT) -> str:
    """The device to open for a hid reader's ``port``: a path is returned as given; a
    ``usb:VID:PID[:SERIAL]`` spec must match exactly one keyboard-capable input device
    (a scanner's other interfaces, such as consumer keys, are not keyboards); else PortError
    names the candidates."""
    if not is_usb_spec(spec):
        return spec
    want = parse_usb_spec(spec)
    if devices is None:
        devices = list_input_devices(sysfs_root=sysfs_root, dev_input=dev_input)
    same = [d for d in devices if d.vid == want.vid and d.pid == want.pid and (
        want.serial_number is None
        or (d.serial_number or "").casefold() == want.serial_number.casefold())]
    found = [d for d in same if d.keyboard] or same
    one_device = len({d.usb_device for d in found}) == 1 and found[0].usb_device is not None
    if len(found) > 1 and one_device:  # one scanner, several keyboard interfaces
        kbd = [d for d in found if (d.by_id or "").endswith("-event-kbd")]
        found = kbd if len(kbd) == 1 else found[:1]  # else the lowest eventN
    if len(found) == 1:
        return found[0].device
    if not found:
        usb = [d for d in devices if d.usb_spec and d.keyboard]
        if not usb:
            raise PortError(f"no input device matches {want}: no USB keyboard or scanner is "
                            "connected (`edge-agent ports` lists them)")
        listed = "; ".join(f"{d.usb_spec} ({_describe(d)})" for d in usb)
        raise PortError(f"no input device matches {want}; USB keyboards present: {listed}")
    listed = "; ".join(_describe(d) for d in found)
    hint = ("add the serial number (usb:VID:PID:SERIAL)" if want.serial_number is None
            else "use their /dev/input/by-id path or a udev rule's name")
    raise PortError(f"{len(found)} input devices match {want}: {listed}; {hint}")


def format_input_devices(devices: Sequence[InputDevice]) -> str:
    """The HID part of ``edge-agent ports``: keyboard-capable devices, scanners marked."""
    shown = [d for d in devices if d.keyboard and (d.by_id or d.usb_spec)]
    if not shown:
        return "no USB keyboard-wedge scanners found (input devices with keys)"
    lines: list[str] = []
    for d in shown:
        kind = (f"barcode scanner ({d.vendor})" if d.vendor else
                "barcode scanner" if d.looks_like_scanner else "keyboard (or a scanner)")
        lines.append(f"{d.device}  {d.name or '(no name)'}  [{kind}]")
        if d.usb_spec:
            lines.append(f"    match:  {d.usb_spec}")
        if d.by_id:
            lines.append(f"    by-id:  {d.by_id}")
    return "\n".join(lines)
