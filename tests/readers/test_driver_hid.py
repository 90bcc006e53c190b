"""hid driver: reader-sim hid -> FIFO / file -> supervisor -> BarcodeReads; the sim's layouts
(written independently) against the decoder's; the input link's failures."""

from __future__ import annotations

import asyncio
import errno
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest
from readersim.barcode import DEFAULT_SCANS, Scan
from readersim.hid import HidConfig, Typist

from agent.config import HidReaderConfig
from agent.model import BarcodeRead
from agent.readers.codecs.barcode import Scan as AgentScan
from agent.readers.codecs.hid import KeyDecoder
from agent.readers.input_devices import resolve_input_port
from agent.readers.link import InputLink, Link, LinkError
from tests.readers.test_hid_devices import add_device
from tests.support.reader_support import Run, reader_config, sim

EXPECTED = {(s.aim, s.data) for s in DEFAULT_SCANS}
GS1 = Scan("]C1", b"010950600013435310ABC123\x1d17261231")
SIM_PATH = Path(__file__).resolve().parents[2] / "firmware-sim"


def _scans(run: Run) -> list[BarcodeRead]:
    return [r for r in run.reads if isinstance(r, BarcodeRead)]


@pytest.mark.parametrize("keymap", ["us", "de", "fr", "uk"])
@pytest.mark.parametrize("gs", ["ctrl+]", "f8", "~"])
def test_simulator_and_decoder_agree_on_every_printable_character(keymap: str, gs: str) -> None:
    typist = Typist(HidConfig(keymap=keymap, gs_substitute=gs, record_size=16))
    text = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c" and c != gs)
    extra = {"us": "x", "de": "°§µäöüÄÖÜß", "fr": "£µ§°éèçàù", "uk": "£¬¦"}[keymap]
    scans = [*DEFAULT_SCANS, GS1, Scan("", text.encode()), Scan("", extra.encode("latin-1"))]
    dec = KeyDecoder(keymap, record_size=16, gs_substitute=gs)
    got: list[AgentScan] = []
    for scan in scans:
        try:
            typist.check(scan)
        except ValueError:
            continue  # a character this layout has no key for (e.g. £ on de)
        got += dec.feed(typist.records(scan, 1_765_000_000.0))
    typeable = [s for s in scans if _typeable(typist, s)]
    assert [(s.symbology or "", s.data) for s in got] == [
        (s.aim, s.data.decode("latin-1").encode()) for s in typeable]
    assert dec.hid.unknown_keys == 0
    assert len(typeable) >= len(DEFAULT_SCANS) + 2


def _typeable(typist: Typist, scan: Scan) -> bool:
    try:
        typist.check(scan)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("keymap", "size"), [("de", 24), ("fr", 16), ("uk", 24)])
async def test_scans_from_a_fifo(tmp_path: Path, keymap: str, size: int) -> None:
    fifo = tmp_path / "scanner"
    with sim(tmp_path, "hid", "--out", str(fifo), "--fifo", "--keymap", keymap,
             "--record-size", str(size), "--every-s", "0.1") as s:
        cfg = reader_config(driver="hid", port=s.port, keymap=keymap, record_size=size)
        async with Run(cfg) as run:
            await run.wait_reads(len(DEFAULT_SCANS), timeout_s=15)
    scans = _scans(run)
    assert {(r.symbology, r.data) for r in scans} == EXPECTED
    assert any(b"\x1d" in r.data for r in scans)
    assert run.status.model == "keyboard-wedge scanner"
    assert run.status.connects == 1
    assert run.status.decoder["unknown_keys"] == 0


async def test_gs1_scan_from_a_file_with_a_printable_gs_substitute(tmp_path: Path) -> None:
    out = tmp_path / "recording.bin"
    with sim(tmp_path, "hid", "--out", str(out), "--keymap", "uk", "--gs-substitute", "|",
             "--scan", "]C1010950600013435310ABC123<GS>17261231", "--count", "1",
             "--first-s", "0") as s:
        cfg = reader_config(driver="hid", port=s.port, keymap="uk", gs_substitute="|")
        async with Run(cfg) as run:
            await run.wait_reads(1, timeout_s=10)
    assert [(r.symbology, r.data) for r in _scans(run)] == [(GS1.aim, GS1.data)]


async def test_usb_spec_is_resolved_on_every_connect(tmp_path: Path) -> None:
    """The scanner is not plugged in (PortError, retried), then appears as event9: the same
    usb: spec finds it, and the reads arrive."""
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    typist = Typist(HidConfig(keymap="us", record_size=24))

    async def resolve(spec: str) -> str:
        return await asyncio.to_thread(resolve_input_port, spec, sysfs_root=sysfs,
                                       dev_input=dev)

    cfg = reader_config(driver="hid", port="usb:0c2e:0b61", record_size=24)
    async with Run(cfg, resolve_input=resolve) as run:
        await run.wait_for(lambda r: r.status.last_error is not None, 10, "a failed connect")
        assert "no input device matches usb:0c2e:0b61" in (run.status.last_error or "")
        add_device(sysfs, dev, 9, vid="0c2e", pid="0b61", name="Honeywell 1900")
        (dev / "event9").write_bytes(typist.records(GS1, 1_765_000_000.0))
        await run.wait_reads(1, timeout_s=10)
    status, reads = run.status, run.reads
    assert status.device == str(dev / "event9")
    assert isinstance(reads[0], BarcodeRead)
    assert (reads[0].symbology, reads[0].data) == (GS1.aim, GS1.data)


async def test_unplug_is_a_link_error_and_the_supervisor_reconnects(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ENODEV from read() (what a vanished evdev device answers) ends the connection."""
    out = tmp_path / "rec.bin"
    out.write_bytes(Typist(HidConfig(record_size=24)).records(DEFAULT_SCANS[1], 1.0e9))
    opened: list[InputLink] = []

    async def open_input(cfg: HidReaderConfig, device: str) -> Link:
        link = await InputLink.open(device, grab=cfg.grab)
        opened.append(link)
        if len(opened) == 1:
            async def gone() -> bytes:
                raise LinkError(f"{device}: {os.strerror(errno.ENODEV)} (scanner unplugged?)")
            link.read = gone  # type: ignore[method-assign]
        return link

    cfg = reader_config(driver="hid", port=str(out), record_size=24)
    async with Run(cfg, open_input=open_input) as run:
        await run.wait_reads(1, timeout_s=10)
    status = run.status
    assert len(opened) == 2
    assert status.disconnects == 1
    assert "No such device (scanner unplugged?); reconnecting" in caplog.text


async def test_read_errors_become_link_errors(tmp_path: Path) -> None:
    # a directory fd fails read() with EISDIR, as a vanished device fails with ENODEV
    link = InputLink(str(tmp_path), os.open(tmp_path, os.O_RDONLY), "char")
    with pytest.raises(LinkError, match="scanner unplugged"):
        await link.read()
    await link.aclose()
    with pytest.raises(LinkError, match="closed"):
        await link.read()
    with pytest.raises(LinkError, match="takes no commands"):
        await link.write(b"x")


async def test_permission_denied_names_the_input_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "event0"
    dev.write_bytes(b"")

    def denied(*_: object, **__: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("agent.readers.link.os.open", denied)
    with pytest.raises(LinkError, match=r"group 'input' \(sudo usermod -aG input edge-agent"):
        await InputLink.open(str(dev))


async def test_open_failures(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match="no such device"):
        await InputLink.open(str(tmp_path / "missing"))
    with pytest.raises(LinkError, match="not an input device, FIFO or file"):
        await InputLink.open(str(tmp_path))
    # a character device that is not evdev: EVIOCGNAME fails with ENOTTY
    with pytest.raises(LinkError, match=r"/dev/null: not an input \(evdev\) device"):
        await InputLink.open("/dev/null")


def test_simulator_takes_a_barcode_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "codes.yaml"
    scenario.write_text('device: hid\nbarcode:\n  codes: ["]C0ABC-123", '
                        '"]d2010950600013435210LOT<GS>21SN1"]\n  interval_s: 0.01\n')
    out = tmp_path / "rec.bin"
    done = subprocess.run(
        [sys.executable, "-m", "readersim", "hid", "--out", str(out), "--scenario",
         str(scenario), "--count", "2", "--first-s", "0", "--record-size", "16", "--keymap",
         "fr", "--gs-substitute", "f8"],
        env={**os.environ, "PYTHONPATH": str(SIM_PATH)}, capture_output=True, text=True,
        timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(out), "SCAN 1", "SCAN 2"]
    dec = KeyDecoder("fr", record_size=16, gs_substitute="f8")
    assert dec.feed(out.read_bytes()) == [
        AgentScan(b"ABC-123", "]C0"), AgentScan(b"010950600013435210LOT\x1d21SN1", "]d2")]


def test_simulator_refuses_a_code_the_layout_cannot_type(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "readersim", "hid", "--out", str(tmp_path / "x"), "--keymap",
         "de", "--scan", "]C0£1"],
        env={**os.environ, "PYTHONPATH": str(SIM_PATH)}, capture_output=True, text=True,
        timeout=30, check=False)
    assert done.returncode == 2
    assert "'£' cannot be typed on the de layout" in done.stderr
