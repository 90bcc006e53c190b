"""``reader-sim`` over real pseudo-terminals and TCP, driven with pyserial."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from tests.support.sim_support import SimProcess, decode_a0_tag, h, read_a0_frames

FIRMWARE_REQ = h("a0 03 01 72 ea")
FIRMWARE_REPLY = h("a0 05 01 72 01 09 de")
INVENTORY_89 = h("a0 04 01 89 01 d1")


@pytest.fixture
def procs() -> Iterator[list[SimProcess]]:
    started: list[SimProcess] = []
    yield started
    for p in started:
        p.stop(signal.SIGKILL)


def start(procs: list[SimProcess], *args: str) -> tuple[SimProcess, str]:
    sim = SimProcess(*args)
    procs.append(sim)
    return sim, sim.line()


def inventory(port: serial.Serial) -> list[bytes]:
    """Send 0x89 and read frames up to and including the summary."""
    port.write(INVENTORY_89)
    frames: list[bytes] = []
    while not frames or frames[-1][1] != 0x0A:
        frames += read_a0_frames(port, 1)
    return frames


def test_pty_prints_path_first_and_serves_firmware_and_inventory(
    procs: list[SimProcess],
) -> None:
    sim, path = start(procs, "r2000", "--pty", "--tags", "3")
    assert path.startswith("/dev/")
    assert os.path.exists(path)
    with serial.Serial(path, 115200, timeout=0.5) as port:
        port.write(FIRMWARE_REQ)
        assert port.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
        frames = inventory(port)
    tags = [decode_a0_tag(f) for f in frames[:-1]]
    assert len(tags) == 3
    assert len({t.epc for t in tags}) == 3
    assert {t.pc for t in tags} == {0x3000}
    assert {t.antenna for t in tags} == {1}
    assert frames[-1][:4] == h("a0 0a 01 89")
    assert int.from_bytes(frames[-1][7:11], "big") == 3
    # The port survives the client closing and reopening it.
    with serial.Serial(path, 115200, timeout=0.5) as port:
        port.write(FIRMWARE_REQ)
        assert port.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
    code, err = sim.stop()
    assert code == 0
    assert "Traceback" not in err


def test_sigint_also_exits_zero(procs: list[SimProcess]) -> None:
    sim, _ = start(procs, "r2000", "--tcp", "127.0.0.1:0")
    code, err = sim.stop(signal.SIGINT)
    assert code == 0
    assert "Traceback" not in err


def test_tcp_mode_one_device_per_connection(procs: list[SimProcess]) -> None:
    sim, url = start(procs, "r2000", "--tcp", "127.0.0.1:0", "--tags", "2")
    assert url.startswith("tcp://127.0.0.1:")
    port_no = int(url.rsplit(":", 1)[1])
    assert port_no > 0
    a = serial.serial_for_url(f"socket://127.0.0.1:{port_no}", timeout=0.5)
    b = serial.serial_for_url(f"socket://127.0.0.1:{port_no}", timeout=0.5)
    try:
        a.write(FIRMWARE_REQ)
        assert a.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
        a.write(h("a0 04 01 74 01 e6"))
        assert a.read(6) == h("a0 04 01 74 10 d7")
        b.write(h("a0 03 01 75 e7"))
        assert b.read(6) == h("a0 04 01 75 00 e6")  # b's reader still has antenna 1
        assert len(inventory(b)) == 3
        assert inventory(a) == [h("a0 0a 01 89 01 00 00 00 00 00 00 cb")]  # no tags on ant 2
    finally:
        a.close()
        b.close()
    assert sim.stop()[0] == 0


def _measure(port: serial.Serial, seconds: float) -> tuple[float, float]:
    """Bytes/s and tag frames/s over ``seconds`` of a saturated stream."""
    read_a0_frames(port, 5)  # the stream is running
    port.reset_input_buffer()
    start_s = time.monotonic()
    data = b""
    while (elapsed := time.monotonic() - start_s) < seconds:
        data += port.read(max(1, port.in_waiting))
    frames = read_a0_frames_from_bytes(data)
    tag_frames = sum(1 for f in frames if f[1] == 0x13)
    return len(data) / elapsed, tag_frames / elapsed


def read_a0_frames_from_bytes(data: bytes) -> list[bytes]:
    frames = []
    i = data.find(b"\xa0")
    while 0 <= i < len(data) - 1:
        n = data[i + 1] + 2
        frame = data[i : i + n]
        if len(frame) == n and sum(frame) & 0xFF == 0:
            frames.append(frame)
            i += n
        else:
            i = data.find(b"\xa0", i + 1)
    return frames


def test_saturated_pty_runs_at_the_line_rate(procs: list[SimProcess]) -> None:
    _, path = start(procs, "r2000", "--pty", "--saturate", "--tags", "20")
    with serial.Serial(path, 115200, timeout=0.05) as port:
        port.write(FIRMWARE_REQ)
        bytes_per_s, tags_per_s = _measure(port, 1.2)
    # 115200 baud 8N1 = 11520 B/s; rounds of 20 x 21-byte tag frames + a 12-byte summary.
    assert 11520 * 0.75 < bytes_per_s < 11520 * 1.25
    expected = 11520 * 20 / (20 * 21 + 12)  # ~533 tag frames/s (549 without summaries)
    assert expected * 0.75 < tags_per_s < expected * 1.25


def test_saturated_tcp_follows_the_baud_option(procs: list[SimProcess]) -> None:
    _, url = start(procs, "r2000", "--tcp", "127.0.0.1:0", "--saturate", "--baud", "38400")
    port = serial.serial_for_url(url.replace("tcp://", "socket://"), timeout=0.05)
    try:
        port.write(FIRMWARE_REQ)
        bytes_per_s, _ = _measure(port, 1.0)
    finally:
        port.close()
    assert 3840 * 0.75 < bytes_per_s < 3840 * 1.25


def poke_until_error(port: serial.Serial) -> Exception | None:
    """Write and read until the port fails, as a client of an unplugged adapter would."""
    try:
        for _ in range(20):
            port.write(FIRMWARE_REQ)
            port.read(1)
    except serial.SerialException as exc:
        return exc
    return None


def test_pty_vanishes_and_comes_back(procs: list[SimProcess], tmp_path: Path) -> None:
    link = tmp_path / "reader0"
    sim, path = start(
        procs,
        "r2000",
        "--pty",
        "--link",
        str(link),
        "--vanish-after",
        "0.8",
        "--vanish-for",
        "0.5",
    )
    assert os.readlink(link) == path
    with serial.Serial(str(link), 115200, timeout=0.2) as port:
        port.write(FIRMWARE_REQ)
        assert port.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
        assert sim.line(timeout_s=5) == f"GONE {path}"
        assert isinstance(poke_until_error(port), serial.SerialException)  # EIO / hangup
    assert not link.exists()
    again = sim.line(timeout_s=5)
    assert again.startswith("PORT /dev/")
    new_path = again.removeprefix("PORT ")
    assert os.readlink(link) == new_path
    with serial.Serial(new_path, 115200, timeout=0.5) as port:
        port.write(FIRMWARE_REQ)
        assert port.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
    assert sim.stop()[0] == 0
    assert not link.exists()


def test_tcp_vanishes_and_listens_again_on_the_same_port(procs: list[SimProcess]) -> None:
    # Plain sockets here: pyserial's socket:// close() leaks the socket once the peer hung up
    # (its shutdown() raises ENOTCONN and the close() after it is skipped).
    sim, url = start(
        procs, "r2000", "--tcp", "127.0.0.1:0", "--vanish-after", "0.6", "--vanish-for", "0.5"
    )
    host, port_text = url.removeprefix("tcp://").rsplit(":", 1)
    address = (host, int(port_text))
    with socket.create_connection(address, timeout=2) as conn:
        conn.sendall(FIRMWARE_REQ)
        assert conn.recv(64) == FIRMWARE_REPLY
        assert sim.line(timeout_s=5) == f"GONE {url}"
        assert conn.recv(64) == b""  # the server closed the connection
        with pytest.raises(ConnectionRefusedError):  # and nobody listens
            socket.create_connection(address, timeout=1).close()
    assert sim.line(timeout_s=5) == f"PORT {url}"
    port = serial.serial_for_url(url.replace("tcp://", "socket://"), timeout=0.5)
    try:
        port.write(FIRMWARE_REQ)
        assert port.read(len(FIRMWARE_REPLY)) == FIRMWARE_REPLY
    finally:
        port.close()
    assert sim.stop()[0] == 0
