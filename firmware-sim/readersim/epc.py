"""EPC encoding for simulated tags: SGTIN-96 (GS1 Tag Data Standard §14.5.1) and the PC word."""

from __future__ import annotations

SGTIN96_HEADER = 0x30

# partition -> (company prefix bits, company prefix digits, item reference bits)
_SGTIN_PARTITIONS: dict[int, tuple[int, int, int]] = {
    0: (40, 12, 4),
    1: (37, 11, 7),
    2: (34, 10, 10),
    3: (30, 9, 14),
    4: (27, 8, 17),
    5: (24, 7, 20),
    6: (20, 6, 24),
}


def sgtin96(
    company_prefix: str, item_reference: str, serial: int, *, filter_value: int = 1
) -> bytes:
    """Encode an SGTIN-96 EPC (12 bytes).

    ``company_prefix`` (6-12 digits) picks the partition; ``item_reference`` holds the indicator
    digit followed by the item reference, 13 - len(company_prefix) digits in all.
    """
    if not company_prefix.isdigit() or not item_reference.isdigit():
        raise ValueError("company prefix and item reference must be digits")
    partition = next(
        (p for p, (_, digits, _) in _SGTIN_PARTITIONS.items() if digits == len(company_prefix)),
        None,
    )
    if partition is None:
        raise ValueError(f"company prefix must have 6-12 digits, got {len(company_prefix)}")
    cp_bits, cp_digits, item_bits = _SGTIN_PARTITIONS[partition]
    if len(item_reference) != 13 - cp_digits:
        raise ValueError(f"item reference must have {13 - cp_digits} digits for this prefix")
    if not 0 <= serial < 1 << 38:
        raise ValueError("SGTIN-96 serial must fit in 38 bits")
    if not 0 <= filter_value <= 7:
        raise ValueError("filter value must be 0-7")
    value = SGTIN96_HEADER
    value = (value << 3) | filter_value
    value = (value << 3) | partition
    value = (value << cp_bits) | int(company_prefix)
    value = (value << item_bits) | int(item_reference)
    value = (value << 38) | serial
    return value.to_bytes(12, "big")


def pc_word(epc: bytes) -> int:
    """Gen2 Protocol-Control word for an EPC: length in 16-bit words in bits 15..11."""
    if len(epc) % 2 or not 0 < len(epc) <= 62:
        raise ValueError("EPC length must be an even number of bytes, 2..62")
    return (len(epc) // 2) << 11
