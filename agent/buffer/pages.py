"""Read table rows straight from SQLite's page images, without SQLite's B-tree (salvage).

When the B-tree above the leaves is damaged (a truncated file, garbage over interior pages,
an unreadable ``sqlite_sequence``), SQLite refuses whole ranges although most leaf pages are
intact. This module walks every page of the file, and every frame of its WAL, and decodes the
table-leaf pages it finds (format: https://www.sqlite.org/fileformat2.html, §1.6 B-tree pages,
§2.1 records, §4 the WAL). Pure: bytes in, tuples out; never raises on damaged input.

* The latest image of a page wins: the WAL's last frame for it, else the main file's page.
  WAL frames are read whatever their checksum: a damaged frame costs that page only, where
  SQLite stops replaying the WAL at the first bad frame (and drops every later commit).
* Pages on the freelist (header offset 32) are skipped: they hold rows deleted long ago.
* Checking which table a row belongs to is the caller's job (by its shape).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"SQLite format 3\x00"
WAL_MAGICS = (0x377F0682, 0x377F0683)
LEAF_TABLE = 0x0D
DEFAULT_PAGE_SIZE = 4096
_MAX_OVERFLOW_PAGES = 4096  # a payload never spans more (1 MiB cells at most here)

Value = int | float | str | bytes | None
Buffer = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class RawRow:
    rowid: int
    values: tuple[Value, ...]
    page: int  # where it was found (diagnostics)


@dataclass(frozen=True, slots=True)
class WalCheck:
    frames: int  # frames with the file's salt
    valid: int  # frames SQLite will replay (checksum chain intact up to the last commit)
    damaged: bool  # a frame with the right salt failed its checksum and later frames exist


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """§2.1 varint: 1-9 bytes, big-endian, high bit = more; returns (value, next pos)."""
    value = 0
    for i in range(8):
        if pos + i >= len(buf):
            raise IndexError("varint past the end")
        b = buf[pos + i]
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos + i + 1
    if pos + 8 >= len(buf):
        raise IndexError("varint past the end")
    return (value << 8) | buf[pos + 8], pos + 9


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def decode_record(payload: bytes) -> tuple[Value, ...] | None:
    """§2.1 record format; None if it does not parse exactly."""
    try:
        header_len, pos = _varint(payload, 0)
        if header_len > len(payload) or header_len < 1:
            return None
        types: list[int] = []
        while pos < header_len:
            t, pos = _varint(payload, pos)
            types.append(t)
        if pos != header_len:
            return None
        body = header_len
        out: list[Value] = []
        for t in types:
            if t == 0:
                out.append(None)
            elif 1 <= t <= 6:
                size = (1, 2, 3, 4, 6, 8)[t - 1]
                out.append(_signed(payload[body : body + size]))
                body += size
            elif t == 7:
                out.append(struct.unpack(">d", payload[body : body + 8])[0])
                body += 8
            elif t in (8, 9):
                out.append(t - 8)
            elif t >= 12:
                size = (t - 12) // 2
                raw = payload[body : body + size]
                if len(raw) != size:
                    return None
                if t % 2:
                    out.append(raw.decode("utf-8"))
                else:
                    out.append(bytes(raw))
                body += size
            else:
                return None  # 10, 11: reserved
            if body > len(payload):
                return None
        return tuple(out) if body == len(payload) else None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None


class PageImages:
    """The latest image of every page of a database file and its WAL.

    ``db`` and ``wal`` may be ``mmap`` objects: pages are sliced out when they are decoded, so a
    large file is not held in memory twice.
    """

    def __init__(self, db: Buffer, wal: Buffer = b"") -> None:
        self._db = db
        self._wal = wal
        self.page_size = DEFAULT_PAGE_SIZE
        self.reserved = 0
        if len(db) >= 100 and db[:16] == MAGIC:
            size = int.from_bytes(db[16:18], "big")
            size = 65536 if size == 1 else size
            if size >= 512 and size & (size - 1) == 0:
                self.page_size = size
            self.reserved = db[20]
        ps = self.page_size
        # page number -> (0 = main file / 1 = WAL, offset of the image)
        self._where: dict[int, tuple[int, int]] = {
            i // ps + 1: (0, i) for i in range(0, len(db) - ps + 1, ps)
        }
        self.wal_frames = 0
        if self._wal_page_size(wal) == ps:
            for pgno, off in self._wal_frames(wal):
                self._where[pgno] = (1, off)  # later frames supersede earlier ones
                self.wal_frames += 1
        self.free = self._freelist()

    def page(self, pgno: int) -> bytes | None:
        where = self._where.get(pgno)
        if where is None:
            return None
        src, off = where
        return bytes((self._wal if src else self._db)[off : off + self.page_size])

    @property
    def page_count(self) -> int:
        return len(self._where)

    @staticmethod
    def _wal_page_size(wal: Buffer) -> int | None:
        if len(wal) < 32 or int.from_bytes(wal[0:4], "big") not in WAL_MAGICS:
            return None
        return int.from_bytes(wal[8:12], "big")

    def _wal_frames(self, wal: Buffer) -> Iterator[tuple[int, int]]:
        salt = wal[16:24]
        ps = self.page_size
        for off in range(32, len(wal) - 24 - ps + 1, 24 + ps):
            if wal[off + 8 : off + 16] != salt:
                continue  # a frame of an earlier WAL generation, or garbage
            pgno = int.from_bytes(wal[off : off + 4], "big")
            if pgno >= 1:
                yield pgno, off + 24

    def _freelist(self) -> frozenset[int]:
        page1 = self.page(1) or b""
        if page1[:16] != MAGIC:
            return frozenset()
        free: set[int] = set()
        trunk = int.from_bytes(page1[32:36], "big")
        while trunk and trunk not in free:  # "not in free": a loop in a damaged list
            page = self.page(trunk)
            if page is None:
                break
            free.add(trunk)
            count = min(int.from_bytes(page[4:8], "big"), (len(page) - 8) // 4)
            free.update(int.from_bytes(page[8 + 4 * i : 12 + 4 * i], "big") for i in range(count))
            trunk = int.from_bytes(page[0:4], "big")
        return frozenset(free)

    def rows(self) -> Iterator[RawRow]:
        """Every row of every table-leaf page that is not on the freelist."""
        for pgno in sorted(self._where):
            if pgno in self.free:
                continue
            yield from self._leaf(pgno)

    def _leaf(self, pgno: int) -> Iterator[RawRow]:
        page = self.page(pgno) or b""
        hdr = 100 if pgno == 1 else 0
        if len(page) < hdr + 8 or page[hdr] != LEAF_TABLE:
            return
        usable = self.page_size - self.reserved
        cells = int.from_bytes(page[hdr + 3 : hdr + 5], "big")
        if cells > (len(page) - hdr - 8) // 2:
            return
        for i in range(cells):
            ptr = int.from_bytes(page[hdr + 8 + 2 * i : hdr + 10 + 2 * i], "big")
            if not hdr + 8 <= ptr < len(page):
                continue
            row = self._cell(page, ptr, usable, pgno)
            if row is not None:
                yield row

    def _cell(self, page: bytes, ptr: int, usable: int, pgno: int) -> RawRow | None:
        try:
            size, pos = _varint(page, ptr)
            rowid, pos = _varint(page, pos)
        except IndexError:
            return None
        if rowid >= 1 << 63:
            rowid -= 1 << 64
        max_local = usable - 35
        if size <= max_local:
            payload = page[pos : pos + size]
        else:  # §1.6: the spill to overflow pages
            min_local = (usable - 12) * 32 // 255 - 23
            local = min_local + (size - min_local) % (usable - 4)
            if local > max_local:
                local = min_local
            payload = page[pos : pos + local]
            nxt = int.from_bytes(page[pos + local : pos + local + 4], "big")
            parts = [payload]
            have = len(payload)
            hops = 0
            while have < size and nxt and hops < _MAX_OVERFLOW_PAGES:
                over = self.page(nxt)
                if over is None:
                    return None
                chunk = over[4:usable][: size - have]
                parts.append(chunk)
                have += len(chunk)
                nxt = int.from_bytes(over[0:4], "big")
                hops += 1
            payload = b"".join(parts)
        if len(payload) != size:
            return None
        values = decode_record(payload)
        return None if values is None else RawRow(rowid, values, pgno)


def _wal_checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    """§4.1: the WAL's running Fletcher-like checksum over 32-bit words."""
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


def check_wal(wal: bytes) -> WalCheck:
    """Would SQLite replay all of this WAL? ``damaged``: a frame with the WAL's salt fails its
    checksum and frames with the salt follow it -- their commits would vanish silently."""
    if len(wal) < 32 or int.from_bytes(wal[0:4], "big") not in WAL_MAGICS:
        return WalCheck(0, 0, damaged=False)
    big = int.from_bytes(wal[0:4], "big") & 1 == 1
    ps = int.from_bytes(wal[8:12], "big")
    if ps < 512 or ps & (ps - 1):
        return WalCheck(0, 0, damaged=False)
    s0, s1 = _wal_checksum(wal[:24], 0, 0, big)
    if (s0, s1) != struct.unpack(">II", wal[24:32]):
        return WalCheck(0, 0, damaged=False)  # a header SQLite ignores: the WAL is empty
    salt = wal[16:24]
    frames = valid = 0
    broken = False
    damaged = False
    for off in range(32, len(wal) - 24 - ps + 1, 24 + ps):
        if wal[off + 8 : off + 16] != salt:
            continue
        frames += 1
        if broken:
            damaged = True
            continue
        s0, s1 = _wal_checksum(wal[off : off + 8] + wal[off + 24 : off + 24 + ps], s0, s1, big)
        if (s0, s1) != struct.unpack(">II", wal[off + 16 : off + 24]):
            broken = True
            continue
        valid += 1
    return WalCheck(frames, valid, damaged=damaged)
