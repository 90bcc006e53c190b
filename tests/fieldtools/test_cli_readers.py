"""`edge-agent ports` and `edge-agent probe` as the technician runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reader_support import sim

ROOT = Path(__file__).resolve().parents[2]


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "firmware-sim"), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60,
        env=env, check=False,
    )


def test_ports_lists_and_exits_0() -> None:
    done = _agent("ports")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # a table, or "no serial ports found"
    assert "USB keyboard-wedge scanners (driver: hid):" in done.stdout  # then the input devices
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (("r2000", "--address", "0x03", "--firmware", "3.7"),
         "r2000 at 115200 baud, address 0x03, firmware 3.7"),
        (("chafon",), "chafon at 57600 baud, address 0x00, UHFReader288M, firmware 0.22"),
        # (a pty has no baud rate, so the first rate tried answers: no rate test here)
        (("chafon", "--model", "18", "--address", "0x2A"),
         "chafon at 57600 baud, address 0x2A, UHFReader18, firmware 0.22"),
    ],
    ids=["r2000", "chafon-288", "chafon-18"],
)
def test_probe_identifies_each_simulated_reader(
    tmp_path: Path, device: tuple[str, ...], expected: str
) -> None:
    with sim(tmp_path, device[0], "--pty", *device[1:]) as s:
        done = _agent("probe", s.port, "--timeout-s", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{s.port}: {expected}" in done.stdout


def test_probe_reports_a_barcode_scanner_as_data_seen(tmp_path: Path) -> None:
    with sim(tmp_path, "barcode", "--pty", "--interval", "0.1") as s:
        done = _agent("probe", s.port, "--baud", "9600", "--timeout-s", "0.3")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "data seen at 9600 baud" in done.stdout
    assert "maybe a barcode scanner" in done.stdout


def test_probe_restricted_to_the_wrong_protocol_finds_nothing(tmp_path: Path) -> None:
    with sim(tmp_path, "r2000", "--pty") as s:
        done = _agent("probe", s.port, "--protocol", "chafon", "--baud", "57600",
                      "--timeout-s", "0.3")
    assert done.returncode == 1
    assert "nothing answered (tried chafon at 57600 baud)" in done.stdout


@pytest.mark.parametrize("port", ["/dev/does-not-exist", "usb:1234:5678"])
def test_probe_port_error_exits_2(port: str) -> None:
    done = _agent("probe", port, "--timeout-s", "0.1")
    assert done.returncode == 2
    assert done.stderr.startswith("port error: ")
    assert "Traceback" not in done.stderr
