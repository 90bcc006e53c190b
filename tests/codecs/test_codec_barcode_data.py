"""Barcode interpretation with biip against reader-protocols.md §4.3/§4.4."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.barcode_data import BarcodeData, digital_link, interpret, interpret_scan
from agent.readers.codecs.barcode import CRLF, BarcodeFramer

# §4.3: the wire bytes of a GS1 DataMatrix scan, GS between (10) and (21), CR LF suffix.
DATAMATRIX_WIRE = b"]d2" + b"0109506000134352" + b"17201231" + b"10ABC123" + b"\x1d" + b"21SN0001"
DATAMATRIX_WIRE += b"\r\n"


def test_datamatrix_with_gs_end_to_end() -> None:
    (scan,) = BarcodeFramer(CRLF).feed(DATAMATRIX_WIRE)
    d = interpret_scan(scan)
    assert d == BarcodeData(
        text="0109506000134352" "17201231" "10ABC123\x1d21SN0001",
        symbology="]d2",
        is_gs1=True,
        gtin="09506000134352",
        lot="ABC123",
        expiry=date(2020, 12, 31),
        serial="SN0001",
        digital_link="https://id.gs1.org/01/09506000134352/21/SN0001",
        hri="(01)09506000134352(17)201231(10)ABC123(21)SN0001",
    )


def test_gs1_128_gtin_and_date() -> None:
    d = interpret(b"010590123412345715210526", "]C1")
    assert d.is_gs1
    assert d.gtin == "05901234123457"
    assert d.hri == "(01)05901234123457(15)210526"
    assert d.digital_link == "https://id.gs1.org/01/05901234123457"
    assert (d.lot, d.serial, d.expiry) == (None, None, None)


def test_gs1_128_lot_with_gs_gives_a_class_level_link() -> None:
    d = interpret(b"0107032069804988100329\x1d15210526", "]C1")
    assert d.hri == "(01)07032069804988(10)0329(15)210526"
    assert d.lot == "0329"
    assert d.digital_link == "https://id.gs1.org/01/07032069804988/10/0329"


def test_gs1_qr() -> None:
    d = interpret(b"0112345678901231" b"10LOT7\x1d17250101", "]Q3")
    assert d.hri == "(01)12345678901231(10)LOT7(17)250101"
    assert (d.gtin, d.lot, d.expiry) == ("12345678901231", "LOT7", date(2025, 1, 1))
    assert d.digital_link == "https://id.gs1.org/01/12345678901231/10/LOT7"
    assert d.error is None


def test_sscc() -> None:
    d = interpret(b"00106141411234567897", "]C1")
    assert d.is_gs1
    assert d.sscc == "106141411234567897"
    assert d.gtin is None
    assert d.digital_link == "https://id.gs1.org/00/106141411234567897"
    assert d.hri == "(00)106141411234567897"


def test_ean13() -> None:
    d = interpret(b"9781492053743", "]E0")
    assert d.is_gs1
    assert d.gtin == "09781492053743"
    assert d.hri == "(01)09781492053743"
    assert d.digital_link == "https://id.gs1.org/01/09781492053743"


def test_plain_code128_passes_through_even_when_it_looks_like_gs1() -> None:
    plain = BarcodeData(text="ABC-123", symbology="]C0", is_gs1=False)
    assert interpret(b"ABC-123", "]C0") == plain
    # ]C0 says "no FNC1": these digits are not a GS1 element string.
    d = interpret(b"0112345678901231", "]C0")
    assert not d.is_gs1
    assert d.gtin is None


def test_no_aim_prefix() -> None:
    d = interpret(b"HELLO WORLD")
    assert (d.text, d.symbology, d.is_gs1, d.error) == ("HELLO WORLD", None, False, None)
    # Without an identifier biip tries the GS1 parsers (§4.4): ambiguous, but useful.
    d = interpret(b"010950600013435217201231")
    assert d.is_gs1
    assert d.gtin == "09506000134352"
    assert d.expiry == date(2020, 12, 31)


def test_digital_link_in_a_plain_qr() -> None:
    d = interpret(b"https://id.gs1.org/01/09506000134352/21/SN%2F1?17=201231", "]Q1")
    assert d.is_gs1
    assert (d.gtin, d.serial, d.expiry) == ("09506000134352", "SN/1", date(2020, 12, 31))
    assert d.digital_link == "https://id.gs1.org/01/09506000134352/21/SN%2F1"
    d = interpret(b"https://example.com/hello", "]Q1")
    assert (d.is_gs1, d.error) == (False, None)


def test_bad_gs1_data_is_reported_not_raised() -> None:
    d = interpret(b"1234567890123", "]E0")  # wrong check digit
    assert not d.is_gs1
    assert d.error is not None
    assert "check digit" in d.error
    d = interpret(b"garbage", "]d2")
    assert not d.is_gs1
    assert d.error is not None
    assert d.digital_link is None


def test_text_is_utf8_or_latin1() -> None:
    assert interpret("Grüße".encode(), "]Q1").text == "Grüße"
    assert interpret(b"Gr\xfc\xdfe", "]Q1").text == "Grüße"


def test_digital_link_builder() -> None:
    assert digital_link(gtin="09506000134352", serial="A/1 2") == (
        "https://id.gs1.org/01/09506000134352/21/A%2F1%202"
    )
    assert digital_link(gtin="09506000134352", lot="L1", serial="S1") == (
        "https://id.gs1.org/01/09506000134352/21/S1"
    )
    assert digital_link(gtin="09506000134352", lot="L1") == (
        "https://id.gs1.org/01/09506000134352/10/L1"
    )
    assert digital_link(sscc="106141411234567897", gtin="09506000134352") == (
        "https://id.gs1.org/00/106141411234567897"
    )
    assert digital_link() is None


SYMBOLOGIES = st.sampled_from(
    [None, "]C1", "]d2", "]Q3", "]E0", "]E4", "]I1", "]e0", "]J1", "]C0", "]Q1", "]X0", "]Y9"]
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | st.text(max_size=80), SYMBOLOGIES)
def test_interpret_never_raises(data: bytes | str, symbology: str | None) -> None:
    d = interpret(data, symbology)
    assert d.symbology == symbology
    if not d.is_gs1:
        assert d.digital_link is None


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789]\x1d()%Qd2C1E0hts:/", max_size=60))
def test_interpret_never_raises_on_near_gs1_text(text: str) -> None:
    interpret(text)
    interpret(text, "]d2")


def test_preload_imports_biip_before_the_first_scan() -> None:
    """Issue 12: the first scan paid biip's import (150-250 ms) on the event loop. In a fresh
    interpreter: importing the module does not load biip (RFID-only gateways), preload does."""
    import subprocess
    import sys

    code = ("import sys; from agent.pipeline import barcode_data; "
            "assert 'biip' not in sys.modules; barcode_data.preload(); "
            "assert 'biip' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_the_fast_non_gs1_path_agrees_with_biip(text: str) -> None:
    """Issue 12: texts that cannot start a GS1 form skip biip; biip must agree they are not."""
    import biip

    from agent.pipeline.barcode_data import interpret

    got = interpret(text, None)
    if text.lstrip()[:1] in "0123456789(]\x1d" or "://" in text:
        return  # the slow path
    assert not got.is_gs1
    try:
        result = biip.parse(text)
    except Exception:  # biip may refuse outright: equally "not GS1"
        return
    assert result.gs1_message is None
    assert result.gtin is None
    assert result.sscc is None
    assert result.gs1_digital_link_uri is None
