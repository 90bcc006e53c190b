"""probe() against tiny fake devices on a real pseudo-terminal (not the reader-sim simulator)."""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Iterator

import pytest

from agent.readers.codecs import a0
from agent.readers.link import LinkError
from agent.readers.probe import (
    CHAFON_BAUDS,
    R2000_BAUDS,
    ProbeResult,
    attempt_order,
    format_probe,
    probe,
)

# The requests probe sends, written out (not built with our encoders) ...
A0_GET_FIRMWARE_BROADCAST = bytes.fromhex("a0 03 ff 72 ec")  # A0+03+FF+72 = 0x214 -> check 0xEC
CHAFON_GET_INFO_BROADCAST = bytes.fromhex("04 ff 21 19 95")  # [V] reader-protocols.md §2.4
# ... and the golden replies from the doc.
A0_FIRMWARE_REPLY = bytes.fromhex("a0 05 01 72 01 09 de")  # §1.10 firmware v1.9, address 01
CHAFON_INFO_REPLY = bytes.fromhex("1100210000160c034e001e0a01000000e651")  # §2.5

FAST_S = 0.15  # per-attempt reply timeout in these tests


def test_request_literals_are_what_the_codecs_build() -> None:
    assert a0.checksum(A0_GET_FIRMWARE_BROADCAST[:-1]) == A0_GET_FIRMWARE_BROADCAST[-1]
    assert a0.encode(0xFF, 0x72) == A0_GET_FIRMWARE_BROADCAST


class FakeDevice:
    """A thread on the pty master: answers exact requests, or chatters on its own."""

    def __init__(
        self, fd: int, answers: dict[bytes, bytes], chatter: bytes = b"", every_s: float = 0.05
    ) -> None:
        self.fd = fd
        self.answers = answers
        self.chatter = chatter
        self.every_s = every_s
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-device", daemon=True)

    def __enter__(self) -> FakeDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        pending = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.every_s)
            if not ready:
                if self.chatter:
                    os.write(self.fd, self.chatter)
                continue
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO while no one holds the slave side open
                continue
            self.received += data
            pending += data
            for request, reply in self.answers.items():
                if request in pending:
                    os.write(self.fd, reply)
                    pending.clear()


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes pass untouched
    try:
        yield master, os.ttyname(slave)  # the slave stays open so the master never sees EIO
    finally:
        os.close(slave)
        os.close(master)


async def test_identifies_an_r2000_reader(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with FakeDevice(master, {A0_GET_FIRMWARE_BROADCAST: A0_FIRMWARE_REPLY}):
        results = await probe(path, timeout_s=FAST_S)
    assert results == [
        ProbeResult(port=path, protocol="r2000", baudrate=115200, address=0x01, firmware="1.9")
    ]
    assert results[0].line() == f"{path}: r2000 at 115200 baud, address 0x01, firmware 1.9"


async def test_identifies_a_chafon_reader(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with FakeDevice(master, {CHAFON_GET_INFO_BROADCAST: CHAFON_INFO_REPLY}) as dev:
        results = await probe(path, timeout_s=FAST_S)
    (r,) = results
    assert (r.protocol, r.baudrate, r.address, r.firmware, r.model) == (
        "chafon", 57600, 0x00, "0.22", "UHFReader288M",
    )
    assert "band eu 865.1-867.9 MHz" in r.detail
    assert "30 dBm" in r.detail
    # It first heard (and ignored) the R2000 request at 115200.
    assert bytes(dev.received).startswith(A0_GET_FIRMWARE_BROADCAST)
    assert r.line().startswith(f"{path}: chafon at 57600 baud, address 0x00, UHFReader288M")


async def test_a_silent_port_gives_nothing_answered(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with FakeDevice(master, {}) as dev:
        results = await probe(path, timeout_s=0.05)
    (r,) = results
    assert not r.found
    assert "nothing answered" in r.detail
    assert "r2000 at 115200/57600/38400/19200/9600 baud" in r.detail
    assert "chafon at 57600/115200/9600/19200/38400 baud" in r.detail
    assert A0_GET_FIRMWARE_BROADCAST in dev.received
    assert CHAFON_GET_INFO_BROADCAST in dev.received
    assert format_probe(results).startswith(f"{path}: nothing answered")


async def test_spontaneous_text_looks_like_a_barcode_scanner(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with FakeDevice(master, {}, chatter=b"]E09781492053743\r", every_s=0.02):
        results = await probe(path, bauds=[9600], timeout_s=0.1)
    (r,) = results
    assert not r.found
    assert r.baudrate == 9600
    assert "data seen at 9600 baud" in r.detail
    assert "maybe a barcode scanner" in r.detail


async def test_frames_without_a_reply_still_name_the_protocol(pty_pair: tuple[int, str]) -> None:
    # A reader busy in an inventory: valid 0x89 tag frames, no answer to 0x72.
    master, path = pty_pair
    tag = bytes.fromhex("a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf")
    with FakeDevice(master, {}, chatter=tag, every_s=0.02):
        results = await probe(path, protocols=["r2000"], bauds=[115200], timeout_s=0.1)
    (r,) = results
    assert (r.protocol, r.baudrate, r.address) == ("r2000", 115200, 0x01)
    assert "no reply to the probe" in r.detail


async def test_a_missing_port_is_a_link_error() -> None:
    with pytest.raises(LinkError):
        await probe("/dev/does-not-exist-tty", timeout_s=0.05)


async def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        await probe("/dev/null", protocols=["llrp"])


def test_attempt_order_tries_factory_rates_first() -> None:
    order = attempt_order()
    assert order[:2] == [("r2000", 115200), ("chafon", 57600)]
    assert sorted(b for p, b in order if p == "r2000") == sorted(R2000_BAUDS)
    assert sorted(b for p, b in order if p == "chafon") == sorted(CHAFON_BAUDS)
    assert attempt_order(["chafon"], [9600, 19200]) == [("chafon", 9600), ("chafon", 19200)]
