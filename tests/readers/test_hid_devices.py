"""usb:VID:PID[:SERIAL] -> /dev/input/eventN against a fake sysfs tree shaped like the real one
(/sys/class/input/eventN -> ../../devices/.../inputM/eventN, eventN/device -> inputM)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.readers.input_devices import (
    format_input_devices,
    has_keyboard_keys,
    list_input_devices,
    resolve_input_port,
)
from agent.readers.ports import PortError

# capabilities/key of a real USB keyboard (64-bit kernel): the lowest word has ESC..KP keys
KBD_KEYS = "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe"
CONSUMER_KEYS = "3f000303ff 0 0 483ffff17aff32d bfd4444600000000 1 130c730b17c000 0"


def add_device(sys: Path, dev: Path, n: int, *, vid: str, pid: str, name: str,
               usb_serial: str | None = None, uniq: str = "", keys: str = KBD_KEYS,
               by_id: str | None = None, interface: int = 0, usb_port: int | None = None) -> None:
    usb = sys / "devices/pci0000:00/0000:00:14.0/usb1" / f"1-{usb_port or n}"
    usb.mkdir(parents=True, exist_ok=True)
    (usb / "idVendor").write_text(vid + "\n")
    (usb / "idProduct").write_text(pid + "\n")
    if usb_serial is not None:
        (usb / "serial").write_text(usb_serial + "\n")
    inp = usb / f"1-1:1.{interface}" / f"0003:{vid.upper()}:{pid.upper()}.000{n}/input/input{n}"
    (inp / "id").mkdir(parents=True)
    (inp / "capabilities").mkdir()
    (inp / "name").write_text(name + "\n")
    (inp / "uniq").write_text(uniq + "\n")
    (inp / "id" / "vendor").write_text(vid + "\n")
    (inp / "id" / "product").write_text(pid + "\n")
    (inp / "capabilities" / "key").write_text(keys + "\n")
    ev = inp / f"event{n}"
    ev.mkdir()
    (ev / "device").symlink_to(inp)
    cls = sys / "class/input"
    cls.mkdir(parents=True, exist_ok=True)
    (cls / f"event{n}").symlink_to(os.path.relpath(ev, cls))
    dev.mkdir(exist_ok=True)
    (dev / f"event{n}").write_bytes(b"")  # stands in for the char device
    if by_id:
        (dev / "by-id").mkdir(exist_ok=True)
        (dev / "by-id" / by_id).symlink_to(f"../event{n}")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    sys, dev = tmp_path / "sys", tmp_path / "dev-input"
    add_device(sys, dev, 3, vid="046d", pid="c31c", name="Logitech USB Keyboard")
    add_device(sys, dev, 5, vid="0c2e", pid="0b61", name="Honeywell Imaging 1900",
               usb_serial="17011B0123", by_id="usb-Honeywell_Imaging_1900_17011B0123-event-kbd")
    # the same scanner's consumer-control interface: keys, but no keyboard ones
    add_device(sys, dev, 6, vid="0c2e", pid="0b61", name="Honeywell Imaging 1900 Consumer",
               usb_serial="17011B0123", keys=CONSUMER_KEYS, interface=1, usb_port=5)
    add_device(sys, dev, 11, vid="05e0", pid="1200", name="Symbol Bar Code Scanner",
               uniq="S/N:A1", by_id="usb-Symbol_Bar_Code_Scanner-event-kbd")
    add_device(sys, dev, 12, vid="05e0", pid="1200", name="Symbol Bar Code Scanner",
               uniq="S/N:A2")
    return sys, dev


def resolve(spec: str, tree: tuple[Path, Path]) -> str:
    return resolve_input_port(spec, sysfs_root=tree[0], dev_input=tree[1])


def test_list_reads_identity_serials_and_by_id(tree: tuple[Path, Path]) -> None:
    devs = {Path(d.device).name: d for d in list_input_devices(sysfs_root=tree[0],
                                                               dev_input=tree[1])}
    assert list(devs) == ["event3", "event5", "event6", "event11", "event12"]  # numeric order
    hw = devs["event5"]
    assert (hw.vid, hw.pid, hw.serial_number, hw.keyboard) == ("0c2e", "0b61", "17011B0123",
                                                               True)
    assert (hw.by_id or "").endswith("-event-kbd")
    assert hw.looks_like_scanner
    assert "Honeywell" in (hw.vendor or "")
    assert not devs["event6"].keyboard
    assert devs["event11"].serial_number == "S/N:A1"  # uniq first
    assert not devs["event3"].looks_like_scanner


def test_usb_spec_resolves_to_the_keyboard_interface(tree: tuple[Path, Path]) -> None:
    assert resolve("usb:0c2e:0b61", tree) == str(tree[1] / "event5")
    assert resolve("usb:0C2E:B61:17011b0123", tree) == str(tree[1] / "event5")
    assert resolve("usb:05e0:1200:S/N:A2", tree) == str(tree[1] / "event12")
    assert resolve("/dev/input/by-id/x-event-kbd", tree) == "/dev/input/by-id/x-event-kbd"


def test_two_identical_scanners_need_the_serial(tree: tuple[Path, Path]) -> None:
    with pytest.raises(PortError, match=r"2 input devices match usb:05e0:1200: .*add the serial"):
        resolve("usb:05e0:1200", tree)


def test_no_match_lists_what_is_there(tree: tuple[Path, Path]) -> None:
    with pytest.raises(PortError, match=r"no input device matches usb:1eab:0001; USB keyboards "
                       r"present: usb:046d:c31c .*usb:0c2e:0b61:17011B0123"):
        resolve("usb:1eab:0001", tree)
    with pytest.raises(PortError, match="no USB keyboard or scanner is connected"):
        resolve_input_port("usb:1eab:0001", sysfs_root=tree[0] / "nothing", dev_input=tree[1])
    with pytest.raises(ValueError, match="VID"):
        resolve("usb:xyz:1", tree)


def test_replug_moves_the_event_number_and_the_spec_follows(tree: tuple[Path, Path]) -> None:
    sys, dev = tree
    assert resolve("usb:0c2e:0b61", tree).endswith("event5")
    (sys / "class/input/event5").unlink()
    (sys / "class/input/event6").unlink()
    add_device(sys, dev, 7, vid="0c2e", pid="0b61", name="Honeywell Imaging 1900",
               usb_serial="17011B0123")
    assert resolve("usb:0c2e:0b61", tree).endswith("event7")


def test_ports_listing_marks_scanners(tree: tuple[Path, Path]) -> None:
    text = format_input_devices(list_input_devices(sysfs_root=tree[0], dev_input=tree[1]))
    assert "event5  Honeywell Imaging 1900  [barcode scanner (Honeywell" in text
    assert "match:  usb:0c2e:0b61:17011B0123" in text
    assert "by-id:  " + str(tree[1] / "by-id/usb-Symbol_Bar_Code_Scanner-event-kbd") in text
    assert "event3  Logitech USB Keyboard  [keyboard (or a scanner)]" in text
    assert "event6" not in text  # no keyboard keys
    assert format_input_devices([]).startswith("no USB keyboard-wedge scanners")


def test_keyboard_bitmap() -> None:
    assert has_keyboard_keys(KBD_KEYS)
    assert has_keyboard_keys("fffffffe")  # 32-bit kernel: one word
    assert not has_keyboard_keys(CONSUMER_KEYS)
    assert not has_keyboard_keys("")
    assert not has_keyboard_keys("zz")
    assert not has_keyboard_keys(None)
