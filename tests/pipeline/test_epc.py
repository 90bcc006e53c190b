"""EPC decoding (TDS 1.13) and GS1 Digital Link conversion.

Golden vectors come from docs/gs1-epcis.md §1.8 / §1.9 (TDS Annex E.3 and the CBV event-hash
reference's dl_normaliser tests), not from our own encoder; epcpy is the oracle for generated
binaries.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from epcpy.utils.parsers import hex_to_tag_encodable
from hypothesis import example, given
from hypothesis import strategies as st

from agent.pipeline.digital_link import is_valid_gs1_check_digit
from agent.pipeline.epc import (
    EpcIdentity,
    canonical_digital_link,
    decode_cache_clear,
    decode_epc,
    gs1_check_digit,
    urn_to_digital_link,
)

RAW_URI = re.compile(r"urn:epc:raw:(0|[1-9][0-9]*)\.(x[0-9A-F]{2}\.)?x[0-9A-F]*")

# --- TDS 1.13 Annex E.3 (company prefix 0614141, filter 3) -----------------------------------
# (hex as on the tag / padded to 16-bit words, hex as printed unpadded, tag URI, pure identity
#  URN, E.3 GS1 element string, Digital Link)
E3 = [
    (
        "3074257BF7194E4000001A85",
        None,
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
        "urn:epc:id:sgtin:0614141.812345.6789",
        "(01) 80614141123458 (21) 6789",
        "https://id.gs1.org/01/80614141123458/21/6789",
    ),
    (
        "3674257BF6B7A659B2C2BF100000000000000000000000000000",
        "3674257BF6B7A659B2C2BF1000000000000000000000000000",
        "urn:epc:tag:sgtin-198:3.0614141.712345.32a%2Fb",
        "urn:epc:id:sgtin:0614141.712345.32a%2Fb",
        "(01) 70614141123451 (21) 32a/b",
        "https://id.gs1.org/01/70614141123451/21/32a%2Fb",
    ),
    (
        "3174257BF4499602D2000000",
        None,
        "urn:epc:tag:sscc-96:3.0614141.1234567890",
        "urn:epc:id:sscc:0614141.1234567890",
        "(00) 106141412345678908",
        "https://id.gs1.org/00/106141412345678908",
    ),
    (
        "3274257BF46072000000162E",
        None,
        "urn:epc:tag:sgln-96:3.0614141.12345.5678",
        "urn:epc:id:sgln:0614141.12345.5678",
        "(414) 0614141123452 (254) 5678",
        "https://id.gs1.org/414/0614141123452/254/5678",
    ),
    (
        "3974257BF46072CD9615F8800000000000000000000000000000",
        "3974257BF46072CD9615F880000000000000000000000000000",
        "urn:epc:tag:sgln-195:3.0614141.12345.32a%2Fb",
        "urn:epc:id:sgln:0614141.12345.32a%2Fb",
        "(414) 0614141123452 (254) 32a/b",
        "https://id.gs1.org/414/0614141123452/254/32a%2Fb",
    ),
    (
        "3374257BF40C0E400000162E",
        None,
        "urn:epc:tag:grai-96:3.0614141.12345.5678",
        "urn:epc:id:grai:0614141.12345.5678",
        "(8003) 006141411234525678",
        "https://id.gs1.org/8003/006141411234525678",
    ),
    (
        "3774257BF40C0E59B2C2BF1000000000000000000000",
        "3774257BF40C0E59B2C2BF100000000000000000000",
        "urn:epc:tag:grai-170:3.0614141.12345.32a%2Fb",
        "urn:epc:id:grai:0614141.12345.32a%2Fb",
        "(8003) 0061414112345232a/b",
        "https://id.gs1.org/8003/0061414112345232a%2Fb",
    ),
    (
        "3474257BF40000000000162E",
        None,
        "urn:epc:tag:giai-96:3.0614141.5678",
        "urn:epc:id:giai:0614141.5678",
        "(8004) 06141415678",
        "https://id.gs1.org/8004/06141415678",
    ),
    (
        "3874257BF59B2C2BF10000000000000000000000000000000000",
        "3874257BF59B2C2BF1000000000000000000000000000000000",
        "urn:epc:tag:giai-202:3.0614141.32a%2Fb",
        "urn:epc:id:giai:0614141.32a%2Fb",
        "(8004) 061414132a/b",
        "https://id.gs1.org/8004/061414132a%2Fb",
    ),
    (
        "350007AB70425D4000000586",
        None,
        "urn:epc:tag:gid-96:31415.271828.1414",
        "urn:epc:id:gid:31415.271828.1414",
        None,
        None,
    ),
]
E3_HEX_FORMS = [
    pytest.param(form, *row[2:], id=f"{row[2].split(':')[3]}-{len(form)}")
    for row in E3
    for form in (row[0], row[1])
    if form is not None
]


@pytest.mark.parametrize(("hex_", "tag_uri", "uri", "element_string", "dl"), E3_HEX_FORMS)
def test_e3_vectors(
    hex_: str, tag_uri: str, uri: str, element_string: str | None, dl: str | None
) -> None:
    decode_cache_clear()
    d = decode_epc(hex_)
    assert d.uri == uri
    assert d.tag_uri == tag_uri
    assert d.scheme == tag_uri.split(":")[3]
    assert d.raw_reason is None
    assert not d.is_raw
    assert d.filter_value == (None if d.scheme == "gid-96" else 3)
    assert d.hex == hex_
    assert d.digital_link == dl
    expected_es = None if element_string is None else element_string.replace(" ", "")
    assert d.element_string == expected_es
    assert urn_to_digital_link(uri) == dl  # the URN path and the binary path agree
    assert hex_to_tag_encodable(hex_).epc_uri == uri  # and the oracle agrees
    assert decode_epc(hex_.lower()) == d
    assert decode_epc(f"  {hex_.lower()}\n") == d


def test_e3_gs1_keys() -> None:
    sgtin = decode_epc("3074257BF7194E4000001A85")
    assert (sgtin.gtin, sgtin.serial) == ("80614141123458", "6789")
    sgtin198 = decode_epc(E3[1][0])
    assert (sgtin198.gtin, sgtin198.serial) == ("70614141123451", "32a/b")
    assert decode_epc(E3[2][0]).sscc == "106141412345678908"
    sgln = decode_epc(E3[3][0])
    assert (sgln.gln, sgln.gln_extension) == ("0614141123452", "5678")
    assert decode_epc(E3[4][0]).gln_extension == "32a/b"
    grai = decode_epc(E3[6][0])
    assert (grai.grai, grai.serial) == ("0061414112345232a/b", "32a/b")
    assert decode_epc(E3[5][0]).grai == "006141411234525678"
    assert decode_epc(E3[8][0]).giai == "061414132a/b"
    gid = decode_epc(E3[9][0])
    assert (gid.gtin, gid.sscc, gid.gln, gid.grai, gid.giai, gid.filter_value) == (None,) * 6
    for key in ("80614141123458", "70614141123451", "106141412345678908", "0614141123452"):
        assert is_valid_gs1_check_digit(key)


def test_sgln_extension_zero_means_no_extension() -> None:
    # SGLN-96 for urn:epc:id:sgln:0614141.12345.0 (TDS §6.3.3: extension 0 = none)
    bits = (0x32 << 88) | (3 << 85) | (5 << 82) | (614141 << 58) | (12345 << 41)
    d = decode_epc(f"{bits:024X}")
    assert d.uri == "urn:epc:id:sgln:0614141.12345.0"
    assert d.gln_extension is None
    assert d.element_string == "(414)0614141123452"
    assert d.digital_link == "https://id.gs1.org/414/0614141123452"


# --- Negative vectors (docs/gs1-epcis.md §1.8) and other things that must stay raw ----------


@pytest.mark.parametrize(
    ("hex_", "reason"),
    [
        ("E2801160600002054CC2094D", "unknown header 0xE2"),
        ("307C00000000000000000001", "invalid partition 7 (sgtin-96)"),
        ("3077FFFFFC00004000000001", "company prefix overflows 10^7 (sgtin-96)"),
        ("3074257BF7FFFFC000000001", "item reference overflows 10^6 (sgtin-96)"),
        ("3074257BF7194E4000001A", "truncated"),
        ("3074257BF7194E4000001A8", "truncated"),  # odd length: 92 bits
        ("3674257BF6B7A659B2C2BF10000000000000000000000000", "truncated"),  # 192 < 198 bits
        ("30", "truncated"),
        ("3", "truncated: no complete header"),
        ("000000000000000000000000", "unprogrammed tag"),
        ("2D74257BF4499602D2000000", "scheme GSRN-96 (header 0x2D) not supported"),
        ("3C74257BF400C0E680003039", "scheme CPI-96"),
        ("4274257BF7194E4000001A85", "unknown header 0x42"),
        ("FF74257BF7194E4000001A85", "unknown header 0xFF"),
        ("F774257BF7194E4000001A85", "TDS 2.x '+' scheme SGTIN+"),
        ("F974257BF7194E4000001A85", "TDS 2.x '+' scheme SSCC+"),
        ("FD74257BF7194E4000001A85", "TDS 2.x '++' scheme SGTIN++"),
        ("E674257BF7194E4000001A85", "TDS 2.x '++' scheme CPI++"),
        ("3174257BF4499602D2000001", "non-zero reserved bits after the serial reference (sscc-96)"),
        # SGLN-96 partition 0 has a 1-bit, 0-digit location reference: it must be 0 (§14.4.3)
        (f"{(0x32 << 88) | (1 << 41):024X}", "location reference overflows 10^0 (sgln-96)"),
        # GRAI-96 partition 0: 4-bit, 0-digit asset type
        (f"{(0x33 << 88) | (1 << 38) | 1234:024X}", "asset type overflows 10^0 (grai-96)"),
    ],
)
def test_not_decodable_gives_raw_uri(hex_: str, reason: str) -> None:
    d = decode_epc(hex_)
    assert d.raw_reason is not None
    assert d.raw_reason.startswith(reason)
    assert d.uri == f"urn:epc:raw:{4 * len(hex_)}.x{hex_}"
    assert RAW_URI.fullmatch(d.uri)
    assert d.hex == hex_
    assert (d.scheme, d.tag_uri, d.filter_value, d.gtin, d.digital_link, d.element_string) == (
        None,
    ) * 6


@pytest.mark.parametrize(
    ("hex_", "scheme", "urn", "dl"),
    [
        # docs/gs1-epcis.md §1.8 "other E.3 rows": recognised, left raw, URN side still works
        (
            "2D74257BF4499602D2000000",
            "GSRN-96",
            "urn:epc:id:gsrn:0614141.1234567890",
            "https://id.gs1.org/8018/061414112345678902",
        ),
        ("2E74257BF4499602D2000000", "GSRNP-96", None, None),
        (
            "2C74257BF46072000000162E",
            "GDTI-96",
            "urn:epc:id:gdti:0614141.12345.5678",
            "https://id.gs1.org/253/06141411234525678",
        ),
        (
            "3C74257BF400C0E680003039",
            "CPI-96",
            "urn:epc:id:cpi:0614141.98765.12345",
            "https://id.gs1.org/8010/061414198765/8011/12345",
        ),
        (
            "3F74F4E4E612640000019907",
            "SGCN-96",
            "urn:epc:id:sgcn:4012345.67890.04711",
            "https://id.gs1.org/255/401234567890104711",
        ),
        ("2F320434147455900000162E", "USDoD-96", "urn:epc:id:usdod:CAGEY.5678", None),
    ],
)
def test_other_e3_rows_are_recognised_but_raw(
    hex_: str, scheme: str, urn: str | None, dl: str | None
) -> None:
    d = decode_epc(hex_)
    assert d.uri == f"urn:epc:raw:96.x{hex_}"
    assert d.raw_reason == f"scheme {scheme} (header 0x{hex_[:2]}) not supported"
    if urn is not None:
        assert hex_to_tag_encodable(hex_).epc_uri == urn  # what a decoder would give
        assert urn_to_digital_link(urn) == dl


def test_negative_vectors_are_rejected_by_the_oracle_too() -> None:
    for hex_ in (
        "E2801160600002054CC2094D",
        "307C00000000000000000001",
        "3077FFFFFC00004000000001",
    ):
        with pytest.raises(Exception):  # noqa: B017  (epcpy raises several types)
            hex_to_tag_encodable(hex_)


def test_every_plus_header_is_named() -> None:
    for header in [*range(0xE6, 0xF0), *range(0xF0, 0xFE)]:
        d = decode_epc(f"{header:02X}" + "00" * 11)
        assert d.raw_reason is not None
        assert "TDS 2.x" in d.raw_reason, hex(header)
        assert ("'++'" in d.raw_reason) == (header in range(0xE6, 0xF0) or header >= 0xFC)


@pytest.mark.parametrize(
    ("serial_codes", "reason"),
    [
        ([0x33, 0x01], "invalid character 0x01 in serial"),  # not a Table A-1 character
        ([0x33, 0x40], "invalid character 0x40 in serial"),  # '@' is not in Table A-1
        ([0x33, 0x00, 0x34], "non-zero bits after the end of serial"),
        ([], "empty serial"),
    ],
)
def test_sgtin198_string_rules(serial_codes: list[int], reason: str) -> None:
    """TDS §14.4.2: Table A-1 characters, then only zeros, at least one character."""
    serial = 0
    for i, code in enumerate(serial_codes):
        serial |= code << (133 - 7 * i)
    bits = (0x36 << 190) | (3 << 187) | (5 << 184) | (614141 << 160) | (712345 << 140) | serial
    d = decode_epc(f"{bits << 10:052X}")
    assert d.raw_reason == f"{reason} (sgtin-198)"


def test_giai202_asset_reference_length_limit() -> None:
    """TDS Table 14-15: partition 0 allows at most 18 characters in 148 bits."""
    ref = 0
    for i in range(19):
        ref |= ord("A") << (141 - 7 * i)
    bits = (0x38 << 194) | (0 << 188) | (1 << 148) | ref
    d = decode_epc(f"{bits << 6:052X}")
    assert d.raw_reason == "asset reference longer than 18 characters (giai-202)"
    ok = decode_epc(f"{(bits & ~(0x7F << (141 - 7 * 18))) << 6:052X}")
    assert ok.uri == "urn:epc:id:giai:000000000001." + "A" * 18


def test_trailing_words_after_a_96_bit_epc_are_padding() -> None:
    """TDS §14.4 step 3: bits beyond the scheme's length are dropped."""
    d = decode_epc("3074257BF7194E4000001A850000")
    assert d.uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert d.hex == "3074257BF7194E4000001A850000"
    assert decode_epc("3074257BF7194E4000001A85E2801160").uri == d.uri


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty EPC"),
        ("   ", "empty EPC"),
        ("zz", "not hexadecimal"),
        ("30 74 25 7B", "not hexadecimal"),
        ("0x3074257BF7194E4000001A85", "not hexadecimal"),
        ("30_74257BF7194E4000001A85", "not hexadecimal"),
        ("-3074257BF7194E4000001A85", "not hexadecimal"),
        ("３０７４", "not hexadecimal"),  # full-width digits
        ("\ufb00", "not hexadecimal"),  # 'ﬀ'.upper() == 'FF'
    ],
)
def test_garbage_never_raises(value: str, reason: str) -> None:
    d = decode_epc(value)
    assert d.uri == "urn:epc:raw:0.x"
    assert d.raw_reason == reason


@pytest.mark.parametrize("value", [None, b"3074257BF7194E4000001A85", 3074, ["30"]])
def test_non_string_input_never_raises(value: Any) -> None:
    d = decode_epc(value)
    assert d.is_raw
    assert d.uri == "urn:epc:raw:0.x"


def test_very_long_input_is_decoded_but_not_cached() -> None:
    decode_cache_clear()
    long_hex = "3074257BF7194E4000001A85" + "0" * 1000
    d = decode_epc(long_hex)
    assert d.uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert decode_epc(long_hex) is not d
    assert decode_epc("3074257BF7194E4000001A85") is decode_epc("3074257BF7194E4000001A85")


# --- Gen2 PC word (TDS §15.1.1, §15.2.1) --------------------------------------------------------

SGTIN96 = "3074257BF7194E4000001A85"
PC_96_BITS = 6 << 11  # 0x3000: six words after the PC


def test_pc_length_ignores_trailing_fasttid() -> None:
    fast_tid = "E2801160200074CF085909AD"
    d = decode_epc(SGTIN96 + fast_tid, PC_96_BITS)
    assert d.uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert d.hex == SGTIN96
    # Without the PC the same hex is 192 bits with an SGTIN-96 header: still decoded (§14.4).
    assert decode_epc(SGTIN96 + fast_tid).uri == d.uri


def test_pc_length_shorter_than_the_scheme_is_truncated() -> None:
    d = decode_epc(SGTIN96, 4 << 11)  # PC says 64 bits
    assert d.uri == "urn:epc:raw:64.x3074257BF7194E40"
    assert d.raw_reason == "truncated: sgtin-96 needs 96 bits, got 64"


def test_pc_length_longer_than_the_data() -> None:
    d = decode_epc(SGTIN96, 7 << 11)
    assert d.uri == f"urn:epc:raw:96.x{SGTIN96}"
    assert d.raw_reason == "truncated: PC length is 112 bits, only 96 read"


def test_pc_toggle_bit_gives_raw_uri_with_afi() -> None:
    """TDS Figure 12-1: urn:epc:raw:[umi=1][xpc=x0004]:64.x31.x0123456890ABCDEF (sans controls)."""
    d = decode_epc("0123456890ABCDEF", (4 << 11) | 0x0400 | 0x0200 | 0x0100 | 0x31)
    assert d.uri == "urn:epc:raw:64.x31.x0123456890ABCDEF"
    assert d.afi == 0x31
    assert d.raw_reason == "toggle bit set (ISO AFI 0x31)"
    # A toggle-1 bank is never run through the EPC decoder, even if it looks like an SGTIN.
    iso = decode_epc(SGTIN96, PC_96_BITS | 0x0100 | 0xA1)
    assert iso.uri == f"urn:epc:raw:96.xA1.x{SGTIN96}"
    assert iso.scheme is None
    assert iso.gtin is None
    truncated = decode_epc("0123", (4 << 11) | 0x0100 | 0x31)
    assert truncated.uri == "urn:epc:raw:16.x31.x0123"


def test_pc_umi_xi_and_attribute_bits_do_not_matter_when_toggle_is_zero() -> None:
    for pc in (PC_96_BITS, PC_96_BITS | 0x0400, PC_96_BITS | 0x0200, PC_96_BITS | 0x00FF):
        assert decode_epc(SGTIN96, pc).uri == "urn:epc:id:sgtin:0614141.812345.6789"


def test_pc_zero_length() -> None:
    d = decode_epc(SGTIN96, 0x0000)
    assert d.uri == "urn:epc:raw:0.x"
    assert d.raw_reason == "empty EPC"


@pytest.mark.parametrize("pc", [-1, 0x10000, True, "3000", 12.0])
def test_invalid_pc_never_raises(pc: Any) -> None:
    d = decode_epc(SGTIN96, pc)
    assert d.is_raw
    assert d.raw_reason is not None
    assert d.raw_reason.startswith("invalid PC word")


# --- Value type ---------------------------------------------------------------------------------


def test_identity_is_frozen_slotted_and_cached() -> None:
    decode_cache_clear()
    d = decode_epc(SGTIN96)
    assert decode_epc(SGTIN96) is d
    assert not hasattr(d, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.uri = "x"  # type: ignore[misc]
    assert hash(d) == hash(decode_epc(SGTIN96.lower()))
    assert isinstance(d, EpcIdentity)


# --- Property tests -----------------------------------------------------------------------------


@given(data=st.binary(max_size=70), pc=st.none() | st.integers(0, 0xFFFF))
@example(data=bytes.fromhex(SGTIN96), pc=None)
@example(data=bytes.fromhex("E2801160600002054CC2094D"), pc=PC_96_BITS)
def test_arbitrary_bytes_never_raise(data: bytes, pc: int | None) -> None:
    d = decode_epc(data.hex(), pc)
    assert d.uri.startswith(("urn:epc:raw:", "urn:epc:id:"))
    if d.is_raw:
        assert RAW_URI.fullmatch(d.uri), d.uri
        assert d.scheme is None
    else:
        assert d.raw_reason is None
        assert d.scheme is not None
        assert d.digital_link == urn_to_digital_link(d.uri)


@given(st.text(max_size=60), st.none() | st.integers())
def test_arbitrary_text_never_raises(text: str, pc: int | None) -> None:
    d = decode_epc(text, pc)
    assert d.uri.startswith(("urn:epc:raw:", "urn:epc:id:"))


def _partitioned(draw: st.DrawFn, table: list[tuple[int, int, int, int]]) -> tuple[int, ...]:
    p = draw(st.integers(0, 6))
    cp_bits, cp_digits, other_bits, other_digits = table[p]
    cp = draw(st.integers(0, 10**cp_digits - 1))
    other_max = 10**other_digits - 1 if other_digits else 0
    other = draw(st.integers(0, other_max))
    return p, cp_bits, cp, other_bits, other


SGTIN_T = [(40, 12, 4, 1), (37, 11, 7, 2), (34, 10, 10, 3), (30, 9, 14, 4), (27, 8, 17, 5)]
SGTIN_T += [(24, 7, 20, 6), (20, 6, 24, 7)]
SSCC_T = [(40, 12, 18, 5), (37, 11, 21, 6), (34, 10, 24, 7), (30, 9, 28, 8), (27, 8, 31, 9)]
SSCC_T += [(24, 7, 34, 10), (20, 6, 38, 11)]
SGLN_T = [(40, 12, 1, 0), (37, 11, 4, 1), (34, 10, 7, 2), (30, 9, 11, 3), (27, 8, 14, 4)]
SGLN_T += [(24, 7, 17, 5), (20, 6, 21, 6)]
GRAI_T = [(40, 12, 4, 0), (37, 11, 7, 1), (34, 10, 10, 2), (30, 9, 14, 3), (27, 8, 17, 4)]
GRAI_T += [(24, 7, 20, 5), (20, 6, 24, 6)]
GIAI96_T = [(40, 12, 42, 13), (37, 11, 45, 14), (34, 10, 48, 15), (30, 9, 52, 16)]
GIAI96_T += [(27, 8, 55, 17), (24, 7, 58, 18), (20, 6, 62, 19)]


@st.composite
def valid_96_bit_epcs(draw: st.DrawFn) -> str:
    """Valid binaries for the six 96-bit schemes, built from the TDS §14.5 coding tables."""
    header = draw(st.sampled_from([0x30, 0x31, 0x32, 0x33, 0x34, 0x35]))
    filt = draw(st.integers(0, 7))
    if header == 0x35:  # GID-96
        fields = (
            draw(st.integers(0, 2**28 - 1)),
            draw(st.integers(0, 2**24 - 1)),
            draw(st.integers(0, 2**36 - 1)),
        )
        return f"{(0x35 << 88) | (fields[0] << 60) | (fields[1] << 36) | fields[2]:024X}"
    if header == 0x34:  # GIAI-96, unpadded asset reference
        p = draw(st.integers(0, 6))
        _cp_bits, cp_digits, ref_bits, _ = GIAI96_T[p]
        cp = draw(st.integers(0, 10**cp_digits - 1))
        ref = draw(st.integers(0, 2**ref_bits - 1))
        bits = (header << 88) | (filt << 85) | (p << 82) | (cp << ref_bits) | ref
        return f"{bits:024X}"
    table, tail_bits = {0x30: (SGTIN_T, 38), 0x31: (SSCC_T, 24), 0x32: (SGLN_T, 41)}.get(
        header, (GRAI_T, 38)
    )
    p, _cp_bits, cp, other_bits, other = _partitioned(draw, table)
    tail = 0 if header == 0x31 else draw(st.integers(0, 2**tail_bits - 1))
    bits = (header << 88) | (filt << 85) | (p << 82)
    bits |= (cp << (other_bits + tail_bits)) | (other << tail_bits) | tail
    return f"{bits:024X}"


@given(valid_96_bit_epcs())
def test_96_bit_schemes_agree_with_epcpy(hex_: str) -> None:
    d = decode_epc(hex_)
    assert d.raw_reason is None
    assert d.uri == hex_to_tag_encodable(hex_).epc_uri
    assert d.digital_link == urn_to_digital_link(d.uri)
    assert d.tag_uri is not None
    assert d.tag_uri.split(":", 4)[4].endswith(d.uri.split(":", 4)[4])


# Characters whose URI form epcpy 0.1.8 gets wrong in some positions ('%3C..' style escapes
# followed by letters); the TDS rules are covered by the E.3 vectors and test_string_schemes.
SAFE_A1 = "!'()*+,-.0123456789;=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@st.composite
def valid_string_epcs(draw: st.DrawFn) -> tuple[str, str]:
    """SGTIN-198 / SGLN-195 / GRAI-170 / GIAI-202 binaries plus the expected string field."""
    header = draw(st.sampled_from([0x36, 0x39, 0x37, 0x38]))
    filt = draw(st.integers(0, 7))
    if header == 0x38:  # GIAI-202: string partition table
        p = draw(st.integers(0, 6))
        _cp_bits, cp_digits, ref_bits, max_chars = [
            (40, 12, 148, 18),
            (37, 11, 151, 19),
            (34, 10, 154, 20),
            (30, 9, 158, 21),
            (27, 8, 161, 22),
            (24, 7, 164, 23),
            (20, 6, 168, 24),
        ][p]
        text = draw(st.text(SAFE_A1, min_size=1, max_size=max_chars))
        cp = draw(st.integers(0, 10**cp_digits - 1))
        string = 0
        for i, c in enumerate(text):
            string |= ord(c) << (ref_bits - 7 - 7 * i)
        bits = (header << 194) | (filt << 191) | (p << 188) | (cp << ref_bits) | string
        return f"{bits << 6:052X}", text
    nbits, table, max_chars = {
        0x36: (198, SGTIN_T, 20),
        0x39: (195, SGLN_T, 20),
        0x37: (170, GRAI_T, 16),
    }[header]
    string_bits = nbits - 8 - 3 - 3 - (44 if header != 0x39 else 41)
    p, _cp_bits, cp, other_bits, other = _partitioned(draw, table)
    text = draw(st.text(SAFE_A1, min_size=1, max_size=max_chars))
    string = 0
    for i, c in enumerate(text):
        string |= ord(c) << (string_bits - 7 - 7 * i)
    bits = (header << (nbits - 8)) | (filt << (nbits - 11)) | (p << (nbits - 14))
    bits |= (cp << (other_bits + string_bits)) | (other << string_bits) | string
    padded = (nbits + 15) // 16 * 16
    return f"{bits << (padded - nbits):0{padded // 4}X}", text


@given(valid_string_epcs())
def test_string_schemes_agree_with_epcpy(case: tuple[str, str]) -> None:
    hex_, text = case
    d = decode_epc(hex_)
    assert d.raw_reason is None
    assert d.uri == hex_to_tag_encodable(hex_).epc_uri
    assert d.uri.endswith("." + text)
    assert d.digital_link == urn_to_digital_link(d.uri)


@given(st.text("!\"%&'()*+,-./0123456789:;<=>?ABCXYZ_abcxyz", min_size=1, max_size=20))
def test_sgtin198_serial_escaping_round_trip(serial: str) -> None:
    """Table A-1: '"', '%', '&', '/', '<', '>', '?' are %-escaped in the URN; the rest literal."""
    string = 0
    for i, c in enumerate(serial):
        string |= ord(c) << (133 - 7 * i)
    bits = (0x36 << 190) | (1 << 187) | (5 << 184) | (614141 << 160) | (812345 << 140) | string
    d = decode_epc(f"{bits << 10:052X}")
    escaped = "".join(f"%{ord(c):02X}" if c in '"%&/<>?' else c for c in serial)
    assert d.uri == f"urn:epc:id:sgtin:0614141.812345.{escaped}"
    assert d.serial == serial
    assert d.element_string == f"(01)80614141123458(21){serial}"


def test_epcpy_is_more_lenient_than_tds() -> None:
    """Documented differences: TDS §14.4 step 5 / §14.4.3 reject these, epcpy 0.1.8 accepts."""
    sscc_with_reserved_bits = "3174257BF4499602D2000001"
    assert hex_to_tag_encodable(sscc_with_reserved_bits).epc_uri.startswith("urn:epc:id:sscc:")
    assert decode_epc(sscc_with_reserved_bits).is_raw


# --- GS1 check digit, URN -> Digital Link (docs/gs1-epcis.md §1.9) -----------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("8061414112345", 8),  # GTIN-14 80614141123458
        ("10614141234567890", 8),  # SSCC 106141412345678908
        ("061414112345", 2),  # GLN 0614141123452
        ("400638133393", 1),  # GTIN-13 4006381333931
        ("9638507", 4),  # GTIN-8 96385074
        ("0", 0),
    ],
)
def test_gs1_check_digit(body: str, check: int) -> None:
    assert gs1_check_digit(body) == check
    assert is_valid_gs1_check_digit(body + str(check))
    assert not is_valid_gs1_check_digit(body + str((check + 1) % 10))


@pytest.mark.parametrize("bad", ["", "12a", "１２", " 12"])
def test_gs1_check_digit_rejects_non_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        gs1_check_digit(bad)
    assert not is_valid_gs1_check_digit(bad)


URN_TO_DL = [
    # docs/gs1-epcis.md §1.9 (from the reference's tests/dl_normaliser_test.py)
    ("urn:epc:id:sgtin:4012345.011111.98%22", "https://id.gs1.org/01/04012345111118/21/98%22"),
    ("urn:epc:id:sgtin:415056789012.0.987654", "https://id.gs1.org/01/04150567890128/21/987654"),
    (
        "urn:epc:id:sgtin:0614141.812345.6789%2F%26%25%22!%3F()",
        "https://id.gs1.org/01/80614141123458/21/6789%2F%26%25%22%21%3F%28%29",
    ),
    ("urn:epc:id:sscc:4012345.3111111111", "https://id.gs1.org/00/340123451111111111"),
    ("urn:epc:id:sscc:4012345.0000000011", "https://id.gs1.org/00/040123450000000115"),
    ("urn:epc:id:sgln:4012345.00005.122", "https://id.gs1.org/414/4012345000054/254/122"),
    ("urn:epc:id:sgln:4012345.00005.0", "https://id.gs1.org/414/4012345000054"),
    ("urn:epc:id:grai:4012345.00022.334455", "https://id.gs1.org/8003/04012345000221334455"),
    ("urn:epc:id:giai:4012345.ABC345", "https://id.gs1.org/8004/4012345ABC345"),
    ("urn:epc:class:lgtin:4012345.012345.Lot987", "https://id.gs1.org/01/04012345123456/10/Lot987"),
    # E.3 identities
    ("urn:epc:id:sgtin:0614141.812345.6789", "https://id.gs1.org/01/80614141123458/21/6789"),
    ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
    ("urn:epc:id:sgln:0614141.12345.5678", "https://id.gs1.org/414/0614141123452/254/5678"),
    ("urn:epc:id:grai:0614141.12345.5678", "https://id.gs1.org/8003/006141411234525678"),
    ("urn:epc:id:giai:0614141.5678", "https://id.gs1.org/8004/06141415678"),
    # serials with ':' and '.' (TDS Table A-1; epcpy vector)
    (
        "urn:epc:id:sgtin:50712192365.88..%25:.13%26",
        "https://id.gs1.org/01/85071219236581/21/.%25%3A.13%26",
    ),
    # the rest of the reference's URN vectors
    ("urn:epc:id:gsrn:4012345.0000006765", "https://id.gs1.org/8018/401234500000067657"),
    ("urn:epc:id:gsrnp:4012345.0000000007", "https://id.gs1.org/8017/401234500000000074"),
    ("urn:epc:id:gdti:4012345.00009.PO-4711", "https://id.gs1.org/253/4012345000092PO-4711"),
    ("urn:epc:id:gdti:987659999999..9", "https://id.gs1.org/253/98765999999929"),
    (
        "urn:epc:id:cpi:0614141.11111111111111-A%23%2F.1234",
        "https://id.gs1.org/8010/061414111111111111111-A%23%2F/8011/1234",
    ),
    ("urn:epc:id:ginc:0614141.xyz47%2F11", "https://id.gs1.org/401/0614141xyz47%2F11"),
    ("urn:epc:id:gsin:4012345.222333444", "https://id.gs1.org/402/40123452223334442"),
    (
        "urn:epc:id:itip:4012345.011111.01.02.987",
        "https://id.gs1.org/8006/040123451111180102/21/987",
    ),
    (
        "urn:epc:id:upui:1234567.098765.51qIgY)%3C%26Jp3*j7SDB",
        "https://id.gs1.org/01/01234567987651/235/51qIgY%29%3C%26Jp3%2Aj7SDB",
    ),
    ("urn:epc:id:pgln:4000001.00000", "https://id.gs1.org/417/4000001000005"),
    ("urn:epc:id:pgln:999999999999.", "https://id.gs1.org/417/9999999999994"),
    ("urn:epc:idpat:sgtin:4012345.012345.*", "https://id.gs1.org/01/04012345123456"),
    ("urn:epc:idpat:grai:4012345.99999.*", "https://id.gs1.org/8003/04012345999990"),
    ("urn:epc:idpat:gdti:4012345.11111.*", "https://id.gs1.org/253/4012345111118"),
    ("urn:epc:idpat:sgcn:4012345.22222.*", "https://id.gs1.org/255/4012345222227"),
    ("urn:epc:idpat:cpi:4012345.AB12.*", "https://id.gs1.org/8010/4012345AB12"),
    ("urn:epc:idpat:itip:4012345.012345.01.02.*", "https://id.gs1.org/8006/040123451234560102"),
    ("urn:epc:idpat:upui:4012345.012345.*", "https://id.gs1.org/01/04012345123456"),
]


@pytest.mark.parametrize(("urn", "dl"), URN_TO_DL)
def test_urn_to_digital_link(urn: str, dl: str) -> None:
    assert urn_to_digital_link(urn) == dl
    assert canonical_digital_link(urn) == dl
    assert canonical_digital_link(dl) == dl or "%" in dl  # '%' is outside the canonical set


def test_digital_link_escaping_is_not_urllib_quote() -> None:
    """docs §1.9: ';' and '=' stay literal, ':' '!' '(' ')' '*' '+' ',' are escaped."""
    dl = urn_to_digital_link("urn:epc:id:sgtin:0614141.812345.a;='-_.:!()*+,")
    assert dl == "https://id.gs1.org/01/80614141123458/21/a;='-_.%3A%21%28%29%2A%2B%2C"


@pytest.mark.parametrize(
    "urn",
    [
        "urn:epc:id:gid:31415.271828.1414",  # no GS1 key
        "urn:epc:raw:96.x3074257BF7194E4000001A85",
        "urn:epc:id:sgtin:0614141.812345",  # no serial
        "urn:epc:id:sgtin:0614141.81234.6789",  # 12 digits, not 13
        "urn:epc:id:sgtin:06141.8123456.6789",  # company prefix too short
        "urn:epc:id:sgtin:0614141.812345.123456789012345678901",  # serial > 20 characters
        "urn:epc:id:sgtin:0614141.812345.a%40b",  # '@' is not a Table A-1 character
        "urn:epc:id:sgtin:0614141.812345.a%4",  # broken escape
        "urn:epc:id:sgtin:0614141.812345.a/b",  # '/' must be escaped in a URN
        "urn:epc:id:sgtin:0614141.812345.",  # empty serial
        "urn:epc:id:sscc:0614141.123456789",  # 16 digits
        "urn:epc:id:sgtin:O614141.812345.1",  # letter O
        "urn:epc:id:sgtin:٠٦١٤١٤١.812345.1",  # non-ASCII digits
        "urn:epc:id:giai:0614141.12345678901234567890123456",  # > 30 characters in total
        "urn:epc:id:foo:0614141.812345.1",
        "urn:epc:idpat:sgtin:4012345.012345.1",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
        "https://id.gs1.org/01/80614141123458/21/6789",  # already a Digital Link
        "",
        "urn:epc:",
    ],
)
def test_urn_to_digital_link_rejects(urn: str) -> None:
    assert urn_to_digital_link(urn) is None


def test_urn_to_digital_link_never_raises_on_non_strings() -> None:
    for value in (None, 42, b"urn:epc:id:sgtin:0614141.812345.6789", ["x"]):
        assert urn_to_digital_link(value) is None  # type: ignore[arg-type]
        assert canonical_digital_link(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # from the reference's tests/dl_normaliser_test.py
        ("https://id.gs1.org/gtin/09780345418913", "https://id.gs1.org/01/09780345418913"),
        (
            "https://example.com/gtin/09780345418913/21/765tz?abc=211121",
            "https://id.gs1.org/01/09780345418913/21/765tz",
        ),
        ("http://example.de/gtin-8/01/97803111", "https://id.gs1.org/01/00000097803111"),
        ("http://us-company-with-UPC.com/01/001122334455", "https://id.gs1.org/01/00001122334455"),
        (
            "https://ean-13.de/gtin/4012345123456/ser/ABC524",
            "https://id.gs1.org/01/04012345123456/21/ABC524",
        ),
        ("http://id.gs1.org/gtin/9780345418913", "https://id.gs1.org/01/09780345418913"),
        (
            "https://id.gs1.org/gtin/9780345418913/cpv/344/lot/1223/ser/765tz",
            "https://id.gs1.org/01/09780345418913/21/765tz",
        ),
        ("https://id.gs1.org/gtin/9780345418913/cpv/344", "https://id.gs1.org/01/09780345418913"),
        (
            "http://example.de/01/040123451234/cpv/344/lot/ABD",
            "https://id.gs1.org/01/00040123451234/10/ABD",
        ),
        (
            "https://id.gs1.org/01/9780345418913/22/344/10/1223/21/765tz",
            "https://id.gs1.org/01/09780345418913/21/765tz",
        ),
        (
            "https://fashion-corp.com/8006/040123451234560102/10/Lot-123/21/ser987",
            "https://id.gs1.org/8006/040123451234560102/21/ser987",
        ),
        (
            "https://gs1.test.example.org/01/9780345418913/10/1223",
            "https://id.gs1.org/01/09780345418913/10/1223",
        ),
        ("https://example.co.uk/party/4226350800008", "https://id.gs1.org/417/4226350800008"),
        (
            "https://id.gs1.org/414/4280000000002/254/12",
            "https://id.gs1.org/414/4280000000002/254/12",
        ),
        (
            "https://id.gs1.org/8010/0628165987/8011/9876",
            "https://id.gs1.org/8010/0628165987/8011/9876",
        ),
        ("https://id.gs1.de/00/040123451111111110", "https://id.gs1.org/00/040123451111111110"),
        ("http://example.org/123/4012345ABC987/456/4711", None),
        ("http://id.gs1.org/99/9780345418913", None),
        ("http://id.gs1.org/01/9780345418913/99/utfgf", None),
        ("http://example.de/abc/9780345418913", None),
        ("http://example.de/01/97803", None),
        ("https://id.gs1.org/8006/04012345123456/22/ABCD/10/XYZ", None),
        ("42", None),
        ("Hello World!", None),
    ],
)
def test_canonical_digital_link(uri: str, expected: str | None) -> None:
    assert canonical_digital_link(uri) == expected


@given(st.text(max_size=80))
def test_digital_link_functions_never_raise(text: str) -> None:
    for value in (text, "urn:epc:id:sgtin:" + text, "https://id.gs1.org/01/" + text):
        urn_to_digital_link(value)
        result = canonical_digital_link(value)
        assert result is None or result.startswith("https://id.gs1.org/")
