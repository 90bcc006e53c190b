"""A real virtual keyboard (uinput) read through the hid driver: EVIOCGRAB, the kernel's own
records, and the unplug (device destroyed -> ENODEV -> reconnect). Needs a writable
/dev/uinput (the uinput module, root or the uinput group); skipped otherwise."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest
from readersim.barcode import Scan
from readersim.hid import HidConfig, Typist

from agent.model import BarcodeRead
from agent.readers.codecs.hid import native_record_size
from tests.support.reader_support import Run, reader_config

UINPUT = "/dev/uinput"
# include/uapi/linux/uinput.h
UI_SET_EVBIT = 0x40045564  # _IOW('U', 100, int)
UI_SET_KEYBIT = 0x40045565  # _IOW('U', 101, int)
UI_DEV_SETUP = 0x405C5503  # _IOW('U', 3, struct uinput_setup): input_id + name[80] + u32
UI_DEV_CREATE = 0x5501  # _IO('U', 1)
UI_DEV_DESTROY = 0x5502  # _IO('U', 2)
UI_GET_SYSNAME_64 = 0x8040552C  # _IOC(_IOC_READ, 'U', 44, 64)
EV_KEY = 1

pytestmark = pytest.mark.skipif(
    not os.access(UINPUT, os.W_OK),
    reason=f"{UINPUT} is missing or not writable (modprobe uinput; run as root or in the "
           "uinput group): no real virtual keyboard can be created here")

GS1 = Scan("]C1", b"010950600013435310ABC123\x1d17261231")


class VirtualKeyboard:
    def __init__(self) -> None:
        self.fd = os.open(UINPUT, os.O_WRONLY | os.O_NONBLOCK)
        fcntl.ioctl(self.fd, UI_SET_EVBIT, EV_KEY)
        for code in range(1, 128):
            fcntl.ioctl(self.fd, UI_SET_KEYBIT, code)
        setup = struct.pack("=HHHH80sI", 3, 0x0C2E, 0x0B61, 1, b"TEA test scanner", 0)
        fcntl.ioctl(self.fd, UI_DEV_SETUP, setup)
        fcntl.ioctl(self.fd, UI_DEV_CREATE)
        sysname = fcntl.ioctl(self.fd, UI_GET_SYSNAME_64, bytes(64)).split(b"\0")[0].decode()
        base = Path("/sys/devices/virtual/input", sysname)
        self.device = "/dev/input/" + next(p.name for p in base.iterdir()
                                           if p.name.startswith("event"))

    def write(self, records: bytes) -> None:
        os.write(self.fd, records)

    def destroy(self) -> None:
        if self.fd >= 0:
            fcntl.ioctl(self.fd, UI_DEV_DESTROY)
            os.close(self.fd)
            self.fd = -1


async def test_virtual_keyboard_through_the_driver() -> None:
    kbd = VirtualKeyboard()
    typist = Typist(HidConfig(keymap="us", record_size=native_record_size()))  # type: ignore[arg-type]
    try:
        cfg = reader_config(driver="hid", port=kbd.device)
        async with Run(cfg) as run:
            await run.wait_for(lambda r: r.status.state == "connected", 10, "connected")
            kbd.write(typist.records(GS1, 0.0))  # the kernel stamps its own time
            await run.wait_reads(1, timeout_s=10)
            kbd.destroy()  # unplug
            await run.wait_for(lambda r: r.status.disconnects == 1, 10, "the unplug")
    finally:
        kbd.destroy()
    read = run.reads[0]
    assert isinstance(read, BarcodeRead)
    assert (read.symbology, read.data) == (GS1.aim, GS1.data)
    assert run.status.model == "keyboard-wedge scanner (TEA test scanner)"
