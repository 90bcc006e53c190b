"""USB barcode scanners in keyboard-wedge (HID) mode: Linux evdev records -> scans.

Source: docs/readers.md "USB keyboard-wedge scanners (HID)"; the record is the kernel's
``struct input_event`` (include/uapi/linux/input.h), the key codes are
include/uapi/linux/input-event-codes.h. Pure: bytes in, frozen dataclasses out; never raises
on noise (a record it cannot use is counted, not fatal).

    # 64-bit process:  [sec:8 long][usec:8 long][type:2][code:2][value:4 s32]   24 bytes
    # 32-bit process:  [sec:4][usec:4][type:2][code:2][value:4 s32]             16 bytes

Which size: the kernel writes the record layout of the *reading process's* ABI (evdev's
``input_event_size()``: a compat, i.e. 32-bit, task gets the 16-byte form even on a 64-bit
kernel). A 32-bit userspace built with 64-bit ``time_t`` (``_TIME_BITS=64``) does not change
it: the header then uses ``__kernel_ulong_t`` seconds, still 4 bytes. So the size follows from
this Python process's C ``long``: ``struct.calcsize("l")`` 8 -> 24 bytes, 4 -> 16 bytes
(``native_record_size()``). Config ``record_size: 16 | 24`` overrides it (files recorded on
another machine, an unusual libc).

The kernel only ever returns whole records; a FIFO or file written by something else could
lose alignment: then ``resync()`` (the line went quiet) drops the partial record and the next
record starts aligned again.

A scanner in keyboard mode "types" each character: Shift / AltGr presses plus the key at the
position that character has on the keyboard layout the scanner was set up for (its "keyboard
country"). So the decoder needs the same layout (``keymap``). Enter (or Tab) ends the scan;
GS (0x1D, the FNC1 separator of GS1 element strings, reader-protocols.md §4.3) has no key of
its own: scanners send it as Ctrl+] (the ASCII control-key rule: ']' is 0x5D, 0x5D & 0x1F =
0x1D), as a function key, or replace it by a printable character; ``gs_substitute`` names
which, and the decoder maps it back to 0x1D. The finished text then goes through the serial
scanner's framer (codecs/barcode.py: AIM identifier split off, GS kept), so a HID scan and a
serial scan of the same code become the same read.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from agent.config.values import parse_gs_substitute as config_gs_substitute
from agent.readers.codecs.barcode import DEFAULT_MAX_LEN, BarcodeFramer, Scan
from agent.readers.codecs.base import DecoderStats

# input-event-codes.h: event types
EV_SYN = 0x00
EV_KEY = 0x01
EV_MSC = 0x04
EV_LED = 0x11
EV_REP = 0x14
EV_MAX = 0x1F
# EV_KEY values
KEY_RELEASE = 0
KEY_PRESS = 1
KEY_AUTOREPEAT = 2

# input-event-codes.h: the keys a scanner uses
KEY_ESC = 1
KEY_BACKSPACE = 14
KEY_TAB = 15
KEY_LEFTBRACE = 26
KEY_RIGHTBRACE = 27
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_GRAVE = 41
KEY_LEFTSHIFT = 42
KEY_BACKSLASH = 43
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_F1 = 59  # F1..F10 = 59..68
KEY_F11 = 87
KEY_F12 = 88
KEY_102ND = 86  # the extra key left of Z on ISO (105-key) keyboards: < > on de/fr, \ | on uk
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100  # AltGr on European layouts

ROW_E = (KEY_GRAVE, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)  # ` 1 2 ... 0 - =
ROW_D = tuple(range(16, 28))  # Q W E R T Y U I O P [ ]
ROW_C = tuple(range(30, 41))  # A S D F G H J K L ; '
ROW_B = tuple(range(44, 54))  # Z X C V B N M , . /
KEYPAD: Mapping[int, str] = MappingProxyType({
    71: "7", 72: "8", 73: "9", 75: "4", 76: "5", 77: "6", 79: "1", 80: "2", 81: "3",
    82: "0", 83: ".", 55: "*", 74: "-", 78: "+", 98: "/",
})  # NumLock assumed on: scanners type digits on the keypad in some "keypad emulation" modes
FUNCTION_KEYS: Mapping[str, int] = MappingProxyType(
    {**{f"f{n}": KEY_F1 + n - 1 for n in range(1, 11)}, "f11": KEY_F11, "f12": KEY_F12})

SHIFTS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
CTRLS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL})
MODIFIERS = SHIFTS | CTRLS | {KEY_LEFTALT, KEY_RIGHTALT}

GS = "\x1d"


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One ``struct input_event``."""

    sec: int
    usec: int
    type: int
    code: int
    value: int

    @property
    def time_s(self) -> float:
        return self.sec + self.usec / 1e6


RECORD_FORMATS: Mapping[int, struct.Struct] = MappingProxyType({
    # '=': native byte order (the kernel writes host order), no alignment padding
    24: struct.Struct("=qqHHi"),
    16: struct.Struct("=IIHHi"),  # seconds unsigned since the y2038 change (valid to 2106)
})


def native_record_size() -> int:
    """The record size the kernel gives this process (see the module docstring)."""
    return 24 if struct.calcsize("l") == 8 else 16


def pack_event(ev: InputEvent, record_size: int) -> bytes:
    """The bytes of one record (tests and the simulator's independent encoder cross-check)."""
    return RECORD_FORMATS[record_size].pack(ev.sec, ev.usec, ev.type, ev.code, ev.value)


@dataclass(frozen=True, slots=True)
class Keymap:
    """What each key types on one layout: without modifier, with Shift, with AltGr."""

    name: str
    plain: Mapping[int, str]
    shift: Mapping[int, str]
    altgr: Mapping[int, str]

    def char(self, code: int, *, shift: bool, altgr: bool) -> str | None:
        if altgr:
            return self.altgr.get(code)
        table = self.shift if shift else self.plain
        if code in table:
            return table[code]
        return KEYPAD.get(code)


def _layout(
    name: str,
    rows: tuple[tuple[tuple[int, ...], str, str], ...],
    altgr: dict[int, str],
) -> Keymap:
    plain: dict[int, str] = {KEY_SPACE: " "}
    shift: dict[int, str] = {KEY_SPACE: " "}
    for codes, normal, shifted in rows:
        assert len(codes) == len(normal) == len(shifted), name
        for code, a, b in zip(codes, normal, shifted, strict=True):
            if a != "\0":
                plain[code] = a
            if b != "\0":
                shift[code] = b
    return Keymap(name, MappingProxyType(plain), MappingProxyType(shift),
                  MappingProxyType(altgr))


# From the xkb symbol files (us, de, fr, gb), base levels 1-3. Dead keys (de ^ and ´, fr ^ and
# ¨) are taken as their plain character: a scanner types them as single keystrokes. "\0" =
# nothing on that level.
KEYMAPS: Mapping[str, Keymap] = MappingProxyType({
    "us": _layout("us", (
        (ROW_E, "`1234567890-=", "~!@#$%^&*()_+"),
        (ROW_D, "qwertyuiop[]", "QWERTYUIOP{}"),
        ((KEY_BACKSLASH,), "\\", "|"),
        (ROW_C, "asdfghjkl;'", 'ASDFGHJKL:"'),
        (ROW_B, "zxcvbnm,./", "ZXCVBNM<>?"),
        ((KEY_102ND,), "<", ">"),
    ), {}),
    "de": _layout("de", (
        (ROW_E, "^1234567890ß´", '°!"§$%&/()=?`'),
        (ROW_D, "qwertzuiopü+", "QWERTZUIOPÜ*"),
        ((KEY_BACKSLASH,), "#", "'"),
        (ROW_C, "asdfghjklöä", "ASDFGHJKLÖÄ"),
        (ROW_B, "yxcvbnm,.-", "YXCVBNM;:_"),
        ((KEY_102ND,), "<", ">"),
    ), {3: "²", 4: "³", 8: "{", 9: "[", 10: "]", 11: "}", 12: "\\", 16: "@", 18: "€",
        27: "~", 50: "µ", KEY_102ND: "|"}),
    "fr": _layout("fr", (
        (ROW_E, "²&é\"'(-è_çà)=", "\x001234567890°+"),
        (ROW_D, "azertyuiop^$", "AZERTYUIOP¨£"),
        ((KEY_BACKSLASH,), "*", "µ"),
        (ROW_C, "qsdfghjklmù", "QSDFGHJKLM%"),
        (ROW_B, "wxcvbn,;:!", "WXCVBN?./§"),
        ((KEY_102ND,), "<", ">"),
    ), {3: "~", 4: "#", 5: "{", 6: "[", 7: "|", 8: "`", 9: "\\", 10: "^", 11: "@", 12: "]",
        13: "}", 18: "€", 27: "¤"}),
    "uk": _layout("uk", (
        (ROW_E, "`1234567890-=", '¬!"£$%^&*()_+'),
        (ROW_D, "qwertyuiop[]", "QWERTYUIOP{}"),
        ((KEY_BACKSLASH,), "#", "~"),
        (ROW_C, "asdfghjkl;'", "ASDFGHJKL:@"),
        (ROW_B, "zxcvbnm,./", "ZXCVBNM<>?"),
        ((KEY_102ND,), "\\", "|"),
    ), {KEY_GRAVE: "¦", 5: "€"}),
})
KEYMAP_NAMES: tuple[str, ...] = tuple(KEYMAPS)


@dataclass(frozen=True, slots=True)
class GsSubstitute:
    """How the scanner types GS: ``ctrl``: Ctrl + the key of ']' (on the US position, or
    wherever the keymap has ']'); ``key``: a function key; ``char``: a printable character
    (which then cannot occur in data); ``none``: GS is never typed."""

    kind: Literal["ctrl", "key", "char", "none"]
    code: int | None = None  # kind key: the key code
    char: str | None = None  # kind char


def parse_gs_substitute(spec: str) -> GsSubstitute:
    """``ctrl+]`` | ``f1``..``f12`` | ``none`` | one printable character; ValueError else
    (the same rule the config checks: agent.config.values.parse_gs_substitute)."""
    kind, arg = config_gs_substitute(spec)
    if kind == "key":
        assert arg is not None
        return GsSubstitute("key", code=FUNCTION_KEYS[arg])
    if kind == "char":
        return GsSubstitute("char", char=arg)
    return GsSubstitute("ctrl" if kind == "ctrl" else "none")


TERMINATOR_KEYS: Mapping[str, bytes | None] = MappingProxyType(
    {"enter": b"\r", "tab": b"\t", "none": None})


@dataclass(slots=True)
class HidStats(DecoderStats):
    """DecoderStats plus what only a keyboard stream has. ``bytes_in`` counts record bytes."""

    records: int = 0
    key_presses: int = 0
    unknown_keys: int = 0  # presses the keymap has no character for (counted, dropped)
    repeats_ignored: int = 0  # kernel autorepeat (value 2): a scanner never holds a key

    def as_dict(self) -> dict[str, int]:
        out = DecoderStats.as_dict(self)
        out.update(records=self.records, key_presses=self.key_presses,
                   unknown_keys=self.unknown_keys, repeats_ignored=self.repeats_ignored)
        return out


class RecordParser:
    """Bytes -> InputEvent, keeping a partial record (a FIFO may split one) for the next feed."""

    __slots__ = ("_buf", "_fmt", "record_size")

    def __init__(self, record_size: int) -> None:
        if record_size not in RECORD_FORMATS:
            raise ValueError(f"record_size must be 16 or 24, got {record_size}")
        self.record_size = record_size
        self._fmt = RECORD_FORMATS[record_size]
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[InputEvent]:
        buf = self._buf
        buf += data
        size = self.record_size
        whole = len(buf) - len(buf) % size
        out = [InputEvent(*fields) for fields in self._fmt.iter_unpack(bytes(buf[:whole]))]
        del buf[:whole]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)

    def clear(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        return n


class KeyDecoder:
    """Key events -> characters -> scans (FrameSession's FrameDecoder protocol).

    Modifier state is kept per connection; autorepeat is ignored; Ctrl+Left-Alt counts as
    AltGr (what some scanners send for it); Caps Lock toggles letter case. A scan ends at the
    terminator key, or when the key timestamps show a gap of ``idle_s`` (``inter_key_timeout_ms``)
    , or when the line stays quiet that long (FrameSession calls resync()).
    """

    __slots__ = ("_altgr", "_caps", "_ctrl", "_framer", "_lalt", "_parser", "_shift", "gs",
                 "hid", "keymap", "stats", "terminator")

    def __init__(
        self,
        keymap: str = "us",
        *,
        record_size: int | None = None,
        terminator: Literal["enter", "tab", "none"] = "enter",
        idle_s: float | None = None,
        gs_substitute: str = "ctrl+]",
        max_len: int = DEFAULT_MAX_LEN,
        aim: bool = True,
    ) -> None:
        if keymap not in KEYMAPS:
            raise ValueError(f"keymap {keymap!r}: expected one of {', '.join(KEYMAPS)}")
        self.keymap = KEYMAPS[keymap]
        self.gs = parse_gs_substitute(gs_substitute)
        self.terminator = terminator
        self._parser = RecordParser(record_size or native_record_size())
        self._framer = BarcodeFramer(TERMINATOR_KEYS[terminator], idle_s=idle_s,
                                     max_len=max_len, aim=aim)
        # The same object twice: ``stats`` as every decoder has it (FrameDecoder, status),
        # ``hid`` with its keyboard counters typed.
        self.hid = HidStats()
        self.stats: DecoderStats = self.hid
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._lalt = False
        self._altgr = False
        self._caps = False

    @property
    def record_size(self) -> int:
        return self._parser.record_size

    @property
    def pending(self) -> int:
        return self._framer.pending + self._parser.pending

    def feed(self, data: bytes) -> list[Scan]:
        self.stats.bytes_in += len(data)
        out: list[Scan] = []
        for ev in self._parser.feed(data):
            self.hid.records += 1
            out += self._event(ev)
        self._sync_stats()
        return out

    def resync(self) -> list[Scan]:
        """The line went quiet: a partial record is noise; pending characters are a scan
        when timeout framing is on (else dropped and counted, see BarcodeFramer.resync)."""
        self.stats.bytes_discarded += self._parser.clear()
        out = self._framer.resync()
        self._sync_stats()
        return out

    def _sync_stats(self) -> None:
        f = self._framer.stats
        s = self.hid
        s.frames = f.frames
        s.oversize = f.oversize
        s.partial_timeouts = f.partial_timeouts

    def _event(self, ev: InputEvent) -> list[Scan]:
        if ev.type > EV_MAX:
            self.stats.implausible += 1
            return []
        if ev.type != EV_KEY:
            return []  # EV_SYN, EV_MSC (scan codes), EV_LED, EV_REP: nothing to type
        code = ev.code
        if ev.value == KEY_AUTOREPEAT:
            self.hid.repeats_ignored += 1
            return []
        if ev.value not in (KEY_PRESS, KEY_RELEASE):
            self.stats.implausible += 1
            return []
        pressed = ev.value == KEY_PRESS
        if code in MODIFIERS:
            self._modifier(code, pressed)
            return []
        if not pressed:
            return []
        self.hid.key_presses += 1
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return []
        text = self._typed(code)
        if text is None:
            self.hid.unknown_keys += 1
            return []
        return self._framer.feed(text.encode("utf-8"), ev.time_s or None)

    def _modifier(self, code: int, pressed: bool) -> None:
        if code in SHIFTS:
            (self._shift.add if pressed else self._shift.discard)(code)
        elif code in CTRLS:
            (self._ctrl.add if pressed else self._ctrl.discard)(code)
        elif code == KEY_LEFTALT:
            self._lalt = pressed
        else:
            self._altgr = pressed

    def _typed(self, code: int) -> str | None:
        """What a press of ``code`` types now, GS substitute and terminator included."""
        if code in (KEY_ENTER, KEY_KPENTER):
            return "\r"
        if code == KEY_TAB:
            return "\t"
        gs = self.gs
        if gs.kind == "key" and code == gs.code:
            return GS
        ctrl = bool(self._ctrl)
        fake_altgr = ctrl and self._lalt  # Ctrl+Left-Alt = AltGr (the Windows rule)
        char = self.keymap.char(code, shift=bool(self._shift),
                                altgr=self._altgr or fake_altgr)
        if ctrl and not fake_altgr:
            if gs.kind == "ctrl" and (code == KEY_RIGHTBRACE or char == "]"):
                return GS
            return None  # another control key: nothing a barcode holds
        if self._lalt and not fake_altgr:
            return None  # Alt+key: a menu shortcut, not text
        if char is None:
            return None
        if self._caps and char.isalpha():
            swapped = char.swapcase()
            char = swapped if len(swapped) == 1 else char
        if gs.kind == "char" and char == gs.char:
            return GS
        return char
