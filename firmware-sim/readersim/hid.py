"""A USB barcode scanner in keyboard-wedge (HID) mode, as Linux evdev records.

The scanner "types" each character of ``[AIM ID]data`` on the keyboard layout it is set up
for: Shift / AltGr, the key, releases, each as the kernel reports a key (EV_MSC MSC_SCAN,
EV_KEY, EV_SYN SYN_REPORT), then the terminator key (Enter). GS (0x1D) has no key: it is sent
as Ctrl+] (on the US position of ']'), a function key, or a printable substitute character.

The layouts here are written independently of the agent's decoder (agent/readers/codecs/hid.py)
from the xkb symbol files, so a table error shared by both cannot hide. Pure: ``Typist`` turns
scans into bytes; ``readersim.cli`` writes them to a FIFO or a file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from readersim.barcode import Scan

EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
MSC_SCAN = 4
KEY_TAB, KEY_ENTER, KEY_LEFTCTRL, KEY_LEFTSHIFT, KEY_RIGHTALT = 15, 28, 29, 42, 100
KEY_RIGHTBRACE = 27
KEY_F1 = 59
FUNCTION_KEYS = {**{f"f{n}": KEY_F1 + n - 1 for n in range(1, 11)}, "f11": 87, "f12": 88}
RECORD = {24: struct.Struct("=qqHHi"), 16: struct.Struct("=IIHHi")}
GS = "\x1d"

# key code -> (plain, shift, altgr); "" = nothing on that level
_E = [41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
_D = list(range(16, 28))
_C = list(range(30, 41))
_B = list(range(44, 54))


def _levels(*rows: tuple[list[int], str, str, str]) -> dict[int, tuple[str, str, str]]:
    out: dict[int, tuple[str, str, str]] = {57: (" ", " ", "")}
    for codes, plain, shift, altgr in rows:
        for i, code in enumerate(codes):
            def at(s: str, i: int = i) -> str:
                return "" if i >= len(s) or s[i] == "\0" else s[i]
            out[code] = (at(plain), at(shift), at(altgr))
    return out


# "\0" = nothing on that level of that key (position i = the i-th key of the row)
LAYOUTS: dict[str, dict[int, tuple[str, str, str]]] = {
    "us": _levels(
        (_E, "`1234567890-=", "~!@#$%^&*()_+", ""),
        (_D, "qwertyuiop[]", "QWERTYUIOP{}", ""),
        ([43], "\\", "|", ""),
        (_C, "asdfghjkl;'", 'ASDFGHJKL:"', ""),
        (_B, "zxcvbnm,./", "ZXCVBNM<>?", ""),
    ),
    "de": _levels(
        (_E, "^1234567890ß´", '°!"§$%&/()=?`', "\0\0²³\0\0\0{[]}\\"),
        (_D, "qwertzuiopü+", "QWERTZUIOPÜ*", "@\0€\0\0\0\0\0\0\0\0~"),
        ([43], "#", "'", ""),
        (_C, "asdfghjklöä", "ASDFGHJKLÖÄ", ""),
        (_B, "yxcvbnm,.-", "YXCVBNM;:_", "\0\0\0\0\0\0µ"),
        ([86], "<", ">", "|"),
    ),
    "fr": _levels(
        (_E, "²&é\"'(-è_çà)=", "\x001234567890°+", "\0\0~#{[|`\\^@]}"),
        (_D, "azertyuiop^$", "AZERTYUIOP¨£", "\0\0€\0\0\0\0\0\0\0\0¤"),
        ([43], "*", "µ", ""),
        (_C, "qsdfghjklmù", "QSDFGHJKLM%", ""),
        (_B, "wxcvbn,;:!", "WXCVBN?./§", ""),
        ([86], "<", ">", ""),
    ),
    "uk": _levels(
        (_E, "`1234567890-=", '¬!"£$%^&*()_+', "¦\0\0\0€"),
        (_D, "qwertyuiop[]", "QWERTYUIOP{}", ""),
        ([43], "#", "~", ""),
        (_C, "asdfghjkl;'", "ASDFGHJKL:@", ""),
        (_B, "zxcvbnm,./", "ZXCVBNM<>?", ""),
        ([86], "\\", "|", ""),
    ),
}


def _strokes(layout: dict[int, tuple[str, str, str]]) -> dict[str, tuple[tuple[int, ...], int]]:
    """char -> (modifier keys, key): the plainest way to type it."""
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    for level, mods in ((0, ()), (1, (KEY_LEFTSHIFT,)), (2, (KEY_RIGHTALT,))):
        for code, chars in sorted(layout.items()):
            ch = chars[level]
            if ch and ch not in out:
                out[ch] = (mods, code)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class HidConfig:
    keymap: str = "us"
    record_size: Literal[16, 24] = 24
    gs_substitute: str = "ctrl+]"  # ctrl+] | f1..f12 | one character
    terminator: Literal["enter", "tab", "none"] = "enter"
    send_aim: bool = True
    key_gap_s: float = 0.002  # between two keys' timestamps

    def __post_init__(self) -> None:
        if self.keymap not in LAYOUTS:
            raise ValueError(f"keymap must be one of {', '.join(LAYOUTS)}")
        if self.record_size not in RECORD:
            raise ValueError("record size must be 16 or 24")
        gs = self.gs_substitute.lower()
        if gs != "ctrl+]" and gs not in FUNCTION_KEYS and len(self.gs_substitute) != 1:
            raise ValueError("gs substitute must be ctrl+], f1..f12 or one character")


class Typist:
    """Scans -> the input_event records a keyboard-wedge scanner makes the kernel report."""

    def __init__(self, config: HidConfig) -> None:
        self.config = config
        self._keys = _strokes(LAYOUTS[config.keymap])
        gs = config.gs_substitute
        if gs.lower() == "ctrl+]":
            self._gs: tuple[tuple[int, ...], int] = ((KEY_LEFTCTRL,), KEY_RIGHTBRACE)
        elif gs.lower() in FUNCTION_KEYS:
            self._gs = ((), FUNCTION_KEYS[gs.lower()])
        else:
            self._gs = self._key(gs)

    def _key(self, ch: str) -> tuple[tuple[int, ...], int]:
        try:
            return self._keys[ch]
        except KeyError:
            raise ValueError(f"{ch!r} cannot be typed on the {self.config.keymap} "
                             "layout") from None

    def text(self, scan: Scan) -> str:
        aim = scan.aim if self.config.send_aim else ""
        return aim + scan.data.decode("latin-1")

    def check(self, scan: Scan) -> None:
        """ValueError if a character of the scan has no key on this layout."""
        for ch in self.text(scan):
            if ch != GS:
                self._key(ch)

    def records(self, scan: Scan, t0_s: float) -> bytes:
        fmt = RECORD[self.config.record_size]
        out = bytearray()
        t = t0_s

        def emit(type_: int, code: int, value: int) -> None:
            sec = int(t)
            fields = (sec, int((t - sec) * 1e6), type_, code, value)
            out.extend(fmt.pack(*fields))

        def press(mods: tuple[int, ...], code: int) -> None:
            nonlocal t
            for c, v in [*((m, 1) for m in mods), (code, 1), (code, 0),
                         *((m, 0) for m in reversed(mods))]:
                emit(EV_MSC, MSC_SCAN, 0x70000 + c)  # the HID usage, as the kernel reports
                emit(EV_KEY, c, v)
                emit(EV_SYN, 0, 0)
            t += self.config.key_gap_s

        for ch in self.text(scan):
            press(*(self._gs if ch == GS else self._key(ch)))
        term = {"enter": KEY_ENTER, "tab": KEY_TAB}.get(self.config.terminator)
        if term is not None:
            press((), term)
        return bytes(out)
