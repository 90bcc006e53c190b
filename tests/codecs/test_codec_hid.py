"""HID keyboard-wedge decoder: hand-written key streams per layout (xkb us/de/fr/gb), both record
sizes, three ways (whole, byte by byte, wrapped in noise records), and garbage never raises."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.readers.codecs.barcode import Scan
from agent.readers.codecs.hid import (
    EV_KEY,
    EV_MSC,
    EV_SYN,
    KEY_AUTOREPEAT,
    KEYMAPS,
    InputEvent,
    KeyDecoder,
    RecordParser,
    native_record_size,
    pack_event,
    parse_gs_substitute,
)

SHIFT, CTRL, ALTGR, LALT, ENTER, TAB, F8, CAPS = 42, 29, 100, 56, 28, 15, 66, 58
RBRACE = 27
GS1 = "]C1010950600013435310ABC123\x1d17261231"
GS1_DATA = b"010950600013435310ABC123\x1d17261231"

# Hand-written from the layouts (not from the decoder's tables): char -> (modifiers, key code).
Table = dict[str, tuple[tuple[int, ...], int]]
DIGITS = {d: i + 2 for i, d in enumerate("1234567890")}
US: Table = {**{d: ((), c) for d, c in DIGITS.items()}, "]": ((), 27), "C": ((SHIFT,), 46),
      "A": ((SHIFT,), 30), "B": ((SHIFT,), 48), "\x1d": ((CTRL,), RBRACE)}
DE: Table = {**US, "]": ((ALTGR,), 10)}  # AltGr+9
FR: Table = {**{d: ((SHIFT,), c) for d, c in DIGITS.items()},  # AZERTY: digits need Shift
      "]": ((ALTGR,), 12), "C": ((SHIFT,), 46), "A": ((SHIFT,), 16), "B": ((SHIFT,), 48),
      "\x1d": ((CTRL,), RBRACE)}
UK = US
LAYOUTS: dict[str, Table] = {"us": US, "de": DE, "fr": FR, "uk": UK}


def ev(code: int, value: int, t: float = 0.0, type_: int = EV_KEY) -> InputEvent:
    return InputEvent(int(t), round((t % 1) * 1e6), type_, code, value)


def stroke(code: int, mods: tuple[int, ...] = (), t: float = 0.0) -> list[InputEvent]:
    """Press modifiers, the key, release in reverse; each key as the kernel reports it:
    MSC_SCAN, KEY, SYN_REPORT."""
    out: list[InputEvent] = []
    for c, v in [*((m, 1) for m in mods), (code, 1), (code, 0), *((m, 0) for m in mods[::-1])]:
        out += [ev(4, 0x70000 + c, t, EV_MSC), ev(c, v, t), ev(0, 0, t, EV_SYN)]
    return out


def typed(text: str, table: Table, *,
          end: int | None = ENTER, t0: float = 1000.0, step_s: float = 0.002) -> list[InputEvent]:
    out: list[InputEvent] = []
    t = t0
    for ch in text:
        mods, code = table[ch]
        out += stroke(code, mods, t)
        t += step_s
    if end is not None:
        out += stroke(end, (), t)
    return out


def pack(events: list[InputEvent], size: int) -> bytes:
    return b"".join(pack_event(e, size) for e in events)


def decode(data: bytes, *, how: str = "whole", **kw: object) -> tuple[list[Scan], KeyDecoder]:
    dec = KeyDecoder(**kw)  # type: ignore[arg-type]
    if how == "whole":
        scans = dec.feed(data)
    else:
        scans = [s for i in range(len(data)) for s in dec.feed(data[i:i + 1])]
    return scans, dec


@pytest.mark.parametrize("size", [16, 24])
@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("keymap", ["us", "de", "fr", "uk"])
def test_gs1_scan_decodes_exactly_in_every_layout(keymap: str, how: str, size: int) -> None:
    data = pack(typed(GS1, LAYOUTS[keymap]), size)
    scans, dec = decode(data, how=how, keymap=keymap, record_size=size)
    assert scans == [Scan(GS1_DATA, "]C1")]
    assert dec.hid.unknown_keys == 0
    assert dec.stats.frames == 1
    assert dec.pending == 0


@pytest.mark.parametrize("size", [16, 24])
def test_wrapped_in_noise_records(size: int) -> None:
    noise = [ev(0, 0, 5, EV_SYN), ev(0x11, 1, 5, 0x11), ev(4, 7, 5, EV_MSC),
             ev(46, KEY_AUTOREPEAT, 5), ev(59, 0), ev(0xFFFF, 9, 5, 0x7777)]
    events = noise + typed(GS1, US) + noise + typed("123", US) + noise
    scans, dec = decode(pack(events, size), record_size=size)
    assert scans == [Scan(GS1_DATA, "]C1"), Scan(b"123", None)]
    assert dec.hid.repeats_ignored == 3
    assert dec.stats.implausible == 3  # the event type 0x7777


def test_german_layout_details() -> None:
    # z and y swapped (QWERTZ), AltGr+q = @, Shift+7 = /, the # key next to Enter
    events = (stroke(21) + stroke(44) + stroke(16, (ALTGR,)) + stroke(8, (SHIFT,))
              + stroke(43) + stroke(ENTER))
    scans, _ = decode(pack(events, 24), keymap="de", record_size=24)
    assert scans == [Scan(b"zy@/#", None)]


def test_french_layout_details() -> None:
    # plain digit row types & é " ' ..., Shift gives the digits; AltGr+à = @; A is where Q is
    events = (stroke(2) + stroke(3) + stroke(2, (SHIFT,)) + stroke(11, (ALTGR,))
              + stroke(16) + stroke(30) + stroke(ENTER))
    scans, _ = decode(pack(events, 24), keymap="fr", record_size=24)
    assert scans == [Scan("&é1@aq".encode(), None)]


def test_uk_layout_details() -> None:
    # Shift+2 = ", Shift+3 = £, the # key (US backslash position), Shift+' = @
    events = (stroke(3, (SHIFT,)) + stroke(4, (SHIFT,)) + stroke(43) + stroke(40, (SHIFT,))
              + stroke(ENTER))
    scans, _ = decode(pack(events, 24), keymap="uk", record_size=24)
    assert scans == [Scan('"£#@'.encode(), None)]
    us, _ = decode(pack(events, 24), keymap="us", record_size=24)
    assert us == [Scan(b'@#\\"', None)]


def test_ctrl_left_alt_is_altgr_and_other_ctrl_keys_are_dropped() -> None:
    events = (stroke(16, (CTRL, LALT)) + stroke(30, (CTRL,)) + stroke(30, (LALT,))
              + stroke(1) + stroke(ENTER))
    scans, dec = decode(pack(events, 24), keymap="de", record_size=24)
    assert scans == [Scan(b"@", None)]
    assert dec.hid.unknown_keys == 3  # Ctrl+A, Alt+A, Esc


def test_caps_lock_inverts_letters_only() -> None:
    events = stroke(CAPS) + stroke(30) + stroke(30, (SHIFT,)) + stroke(2) + stroke(ENTER)
    scans, _ = decode(pack(events, 24), record_size=24)
    assert scans == [Scan(b"Aa1", None)]


@pytest.mark.parametrize(("spec", "gs_stroke"), [
    ("ctrl+]", stroke(RBRACE, (CTRL,))),
    ("f8", stroke(F8)),
    ("|", stroke(43, (SHIFT,))),  # us: Shift+\ = |
])
def test_gs_substitutes(spec: str, gs_stroke: list[InputEvent]) -> None:
    events = typed("]C11", US, end=None) + gs_stroke + typed("2", US)
    scans, _ = decode(pack(events, 24), record_size=24, gs_substitute=spec)
    assert scans == [Scan(b"1\x1d2", "]C1")]


def test_ctrl_on_the_keymaps_bracket_key_is_gs_too() -> None:
    # de: ']' is AltGr+9; a scanner set to German may send Ctrl+AltGr+9 for GS
    events = typed("1", DE, end=None) + stroke(10, (CTRL, ALTGR)) + typed("2", DE)
    scans, _ = decode(pack(events, 24), keymap="de", record_size=24)
    assert scans == [Scan(b"1\x1d2", None)]


def test_tab_terminator_and_enter_as_data() -> None:
    events = typed("12", US, end=ENTER) + stroke(TAB)
    scans, _ = decode(pack(events, 24), record_size=24, terminator="tab")
    assert scans == [Scan(b"12\r", None)]


def test_inter_key_gap_ends_a_scan_without_terminator() -> None:
    events = typed("12", US, end=None, t0=10.0) + typed("34", US, end=None, t0=11.0)
    dec = KeyDecoder(record_size=24, terminator="none", idle_s=0.1)
    assert dec.feed(pack(events, 24)) == [Scan(b"12", None)]  # the key timestamps show the gap
    assert dec.resync() == [Scan(b"34", None)]  # the line went quiet


def test_misaligned_stream_realigns_at_a_quiet_gap() -> None:
    dec = KeyDecoder(record_size=24)
    assert dec.feed(b"\x01\x02\x03\x04\x05") == []  # not a whole record
    assert dec.resync() == []
    assert dec.stats.bytes_discarded == 5
    assert dec.feed(pack(typed("12", US), 24)) == [Scan(b"12", None)]


def test_lost_enter_is_dropped_on_resync_without_timeout() -> None:
    dec = KeyDecoder(record_size=24)
    assert dec.feed(pack(typed("12", US, end=None), 24)) == []
    assert dec.pending
    assert dec.resync() == []
    assert dec.stats.partial_timeouts == 1


def test_oversize_scan_is_dropped() -> None:
    dec = KeyDecoder(record_size=24, max_len=4)
    data = pack(typed("1234567", US) + typed("12", US), 24)
    assert dec.feed(data) == [Scan(b"12", None)]
    assert dec.stats.oversize == 1


def test_record_sizes_and_native_choice() -> None:
    assert native_record_size() == (24 if struct.calcsize("l") == 8 else 16)
    e = InputEvent(1_700_000_000, 123456, EV_KEY, 30, 1)
    assert len(pack_event(e, 24)) == 24
    assert len(pack_event(e, 16)) == 16
    # golden layout (little-endian host): sec, usec, type, code, value
    assert pack_event(e, 16) == bytes.fromhex("00 f1 53 65  40 e2 01 00  01 00  1e 00  01 00 00 00")
    p = RecordParser(16)
    assert p.feed(pack_event(e, 16)[:10]) == []
    assert p.feed(pack_event(e, 16)[10:]) == [e]
    with pytest.raises(ValueError, match="16 or 24"):
        RecordParser(20)


def test_gs_substitute_parsing() -> None:
    assert parse_gs_substitute("ctrl+]").kind == "ctrl"
    assert parse_gs_substitute("F8").code == F8
    assert parse_gs_substitute("~").char == "~"
    for bad in ("ctrl+x", "", " ", "ab", "f13"):
        with pytest.raises(ValueError, match="gs_substitute"):
            parse_gs_substitute(bad)


def test_keymaps_cover_the_named_layouts() -> None:
    assert set(KEYMAPS) >= {"us", "de", "fr", "uk"}
    for km in KEYMAPS.values():
        assert km.plain[57] == " "


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), size=st.sampled_from([16, 24]),
       keymap=st.sampled_from(["us", "de", "fr", "uk"]), split=st.integers(1, 50))
def test_garbage_never_raises(data: bytes, size: int, keymap: str, split: int) -> None:
    dec = KeyDecoder(keymap, record_size=size, terminator="none", idle_s=0.05)
    for i in range(0, len(data), split):
        for scan in dec.feed(data[i:i + split]):
            assert scan.data
    dec.resync()
    assert dec.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x20), st.integers(0, 0x2FF), st.integers(-3, 3)),
                max_size=200))
def test_random_key_events_never_raise(events: list[tuple[int, int, int]]) -> None:
    dec = KeyDecoder("fr", record_size=24, gs_substitute="f8")
    dec.feed(pack([InputEvent(1, 0, t, c, v) for t, c, v in events], 24))
    dec.resync()
