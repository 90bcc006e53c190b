"""doctor's checks of a keyboard-wedge scanner's port: found, readable, with the fix named."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from agent.fieldtools.doctor import hid_port_checks
from agent.readers.ports import PortError


def test_readable_device_passes(tmp_path: Path) -> None:
    dev = tmp_path / "event5"
    dev.write_bytes(b"")
    checks = hid_port_checks("reader scan1", str(dev))
    assert [(c.name, c.status) for c in checks] == [
        ("reader scan1 port", "PASS"), ("reader scan1 access", "PASS")]


def test_usb_spec_is_resolved_first(tmp_path: Path) -> None:
    dev = tmp_path / "event7"
    dev.write_bytes(b"")
    checks = hid_port_checks("reader scan1", "usb:0c2e:0b61", resolve=lambda _: str(dev))
    assert checks[0].status == "PASS"
    assert checks[0].detail == f"usb:0c2e:0b61 -> {dev}"

    def missing(spec: str) -> str:
        raise PortError(f"no input device matches {spec}")

    bad = hid_port_checks("reader scan1", "usb:0c2e:0b61", resolve=missing)
    assert [(c.status, c.detail) for c in bad] == [
        ("FAIL", "no input device matches usb:0c2e:0b61")]
    assert "edge-agent ports" in bad[0].hint


def test_missing_device_fails_with_hint(tmp_path: Path) -> None:
    checks = hid_port_checks("reader scan1", str(tmp_path / "nope"))
    assert checks[0].status == "FAIL"
    assert "/dev/input/by-id" in checks[0].hint


def test_permission_denied_names_the_input_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "event5"
    dev.write_bytes(b"")

    def denied(*_: object, **__: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("agent.fieldtools.doctor.os.open", denied)
    checks = hid_port_checks("reader scan1", str(dev))
    assert checks[-1].status == "FAIL"
    assert checks[-1].detail == f"permission denied opening {dev}"
    assert checks[-1].hint.startswith("the agent's user must be in group 'input' "
                                      "(sudo usermod -aG input edge-agent")
