"""Port listing and usb:VID:PID[:SERIAL] resolution (pure over fake PortInfo lists)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.readers.ports import (
    PortError,
    PortInfo,
    UsbMatch,
    by_id_links,
    format_ports,
    list_ports,
    parse_usb_spec,
    resolve_port,
)

CP2102_A = PortInfo(
    device="/dev/ttyUSB0",
    by_id="/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0",
    vid="10c4",
    pid="ea60",
    serial_number="0001",
    manufacturer="Silicon Labs",
    product="CP2102 USB to UART Bridge Controller",
    description="CP2102 USB to UART Bridge Controller",
    location="1-1.2:1.0",
)
CP2102_B = PortInfo(
    device="/dev/ttyUSB1", vid="10c4", pid="ea60", serial_number="0002", location="1-1.3:1.0"
)
FTDI = PortInfo(device="/dev/ttyUSB2", vid="0403", pid="6001", serial_number="A50285BI")
ONBOARD = PortInfo(device="/dev/ttyS0", description="n/a")
PORTS = [CP2102_A, CP2102_B, FTDI, ONBOARD]


def test_paths_and_urls_pass_through() -> None:
    for spec in ("/dev/ttyUSB0", CP2102_A.by_id or "", "socket://10.0.0.5:4001", "/dev/pts/3"):
        assert resolve_port(spec, PORTS) == spec


def test_usb_spec_finds_the_device_whatever_the_enumeration_order() -> None:
    assert resolve_port("usb:10c4:ea60:0001", PORTS) == "/dev/ttyUSB0"
    assert resolve_port("usb:10c4:ea60:0002", PORTS) == "/dev/ttyUSB1"
    # After a reboot the two adapters swapped names: the spec follows the serial number.
    swapped = [
        PortInfo(device="/dev/ttyUSB1", vid="10c4", pid="ea60", serial_number="0001"),
        PortInfo(device="/dev/ttyUSB0", vid="10c4", pid="ea60", serial_number="0002"),
    ]
    assert resolve_port("usb:10c4:ea60:0001", swapped) == "/dev/ttyUSB1"


def test_usb_spec_without_serial_when_unique_and_case_insensitive() -> None:
    assert resolve_port("usb:0403:6001", PORTS) == "/dev/ttyUSB2"
    assert resolve_port("USB:0x403:0x6001:a50285bi", PORTS) == "/dev/ttyUSB2"


def test_no_match_lists_the_usb_candidates() -> None:
    with pytest.raises(PortError) as info:
        resolve_port("usb:1a86:7523", PORTS)
    msg = str(info.value)
    assert "no serial port matches usb:1a86:7523" in msg
    assert "usb:10c4:ea60:0001 (/dev/ttyUSB0" in msg
    assert "usb:0403:6001:A50285BI" in msg
    assert "/dev/ttyS0" not in msg
    with pytest.raises(PortError, match="no USB serial port is connected"):
        resolve_port("usb:1a86:7523", [ONBOARD])


def test_several_matches_are_an_error_that_names_them() -> None:
    with pytest.raises(PortError) as info:
        resolve_port("usb:10c4:ea60", PORTS)
    msg = str(info.value)
    assert msg.startswith("2 serial ports match usb:10c4:ea60:")
    assert "/dev/ttyUSB0, serial 0001, location 1-1.2:1.0" in msg
    assert "/dev/ttyUSB1, serial 0002" in msg
    assert "add the serial number" in msg
    twin = PortInfo(device="/dev/ttyUSB7", vid="10c4", pid="ea60", serial_number="0001")
    twins = [CP2102_A, twin]
    with pytest.raises(PortError, match="by-id"):
        resolve_port("usb:10c4:ea60:0001", twins)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("usb:10c4:ea60", UsbMatch("10c4", "ea60", None)),
        ("usb:10C4:EA60:0001", UsbMatch("10c4", "ea60", "0001")),
        ("usb:403:6001:", UsbMatch("0403", "6001", None)),
        ("usb:0403:6001:AB:CD", UsbMatch("0403", "6001", "AB:CD")),
    ],
)
def test_parse_usb_spec(spec: str, match: UsbMatch) -> None:
    assert parse_usb_spec(spec) == match


@pytest.mark.parametrize("spec", ["usb:", "usb:10c4", "usb:xyz:ea60", "usb:10c45:ea60", "/dev/x"])
def test_parse_usb_spec_rejects_malformed(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_usb_spec(spec)


def test_usb_spec_property_round_trips() -> None:
    for p in PORTS:
        if p.usb_spec is not None:
            assert resolve_port(p.usb_spec, [p]) == p.device
    assert ONBOARD.usb_spec is None


def test_by_id_links_and_list_ports_with_fake_comports(tmp_path: Path) -> None:
    dev = tmp_path / "ttyUSB0"
    dev.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    link = by_id / "usb-Silicon_Labs_CP2102_0001-if00-port0"
    link.symlink_to(dev)
    assert by_id_links(by_id) == {os.path.realpath(dev): str(link)}
    assert by_id_links(tmp_path / "missing") == {}

    fake = [
        SimpleNamespace(
            device=str(dev), vid=0x10C4, pid=0xEA60, serial_number="0001",
            manufacturer="Silicon Labs", product="CP2102", description="CP2102 UART",
            location="1-1.2:1.0",
        ),
        SimpleNamespace(
            device="/dev/ttyS0", vid=None, pid=None, serial_number=None, manufacturer=None,
            product=None, description="n/a", location=None,
        ),
    ]
    ports = list_ports(by_id_dir=by_id, comports=lambda: fake)
    assert sorted(ports, key=lambda p: p.device != "/dev/ttyS0") == [
        PortInfo(device="/dev/ttyS0", description="n/a"),
        PortInfo(
            device=str(dev), by_id=str(link), vid="10c4", pid="ea60", serial_number="0001",
            manufacturer="Silicon Labs", product="CP2102", description="CP2102 UART",
            location="1-1.2:1.0",
        ),
    ]
    assert resolve_port("usb:10c4:ea60:0001", ports) == str(dev)


def test_list_ports_runs_on_this_machine() -> None:
    ports = list_ports()
    assert all(isinstance(p, PortInfo) for p in ports)
    format_ports(ports)


def test_format_ports() -> None:
    text = format_ports([CP2102_A, ONBOARD])
    assert text.splitlines() == [
        "/dev/ttyUSB0  CP2102 USB to UART Bridge Controller",
        "    match:  usb:10c4:ea60:0001",
        f"    by-id:  {CP2102_A.by_id}",
        "    manufacturer Silicon Labs, product CP2102 USB to UART Bridge Controller, "
        "location 1-1.2:1.0",
        "/dev/ttyS0",
    ]
    assert format_ports([]) == "no serial ports found"
