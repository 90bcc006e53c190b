"""Frozen documents and the gateway's hash chain (docs/provenance.md), on the writer thread.

A document is frozen in ONE transaction: the chain head is read, the next seq and the previous
document's hash are handed to the caller's pure ``build`` (which returns the exact bytes), the
bytes are hashed and signed, stored with the rows they carry, and the head advances. A crash
leaves either the old head and no document, or the new head and the document: a seq is never
handed out twice, whatever happens to the process or the power.

Gaps (seqs frozen but never delivered, events dropped by the buffer's limits) are queued in
``meta.chain_gaps`` in the transaction that causes them and taken into the next document.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.buffer.schema import Conn

HEAD_KEY = "chain"
GAPS_KEY = "chain_gaps"
START_KEY = "chain_start"  # why the next chain begins, when the file knows (new buffer)
PREVIOUS_CHAIN_KEY = "previous_chain"  # a salvaged file: the corrupt file's chain head
MAX_GAP_ENTRIES = 50  # beyond this, entries of one reason are merged into one range


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainLink:
    """What a document needs to know of its place in the chain."""

    chain_id: str
    seq: int  # 1, 2, 3 ... within the chain
    prev_hash: str | None  # "sha-256:<hex>" of the previous document's bytes; None at seq 1
    chain_start: dict[str, Any] | None  # at seq 1: why the chain began
    gaps: tuple[dict[str, Any], ...]  # what went missing since the previous document


@dataclass(frozen=True, slots=True, kw_only=True)
class FrozenDocument:
    id: int
    chain_id: str
    seq: int
    payload: bytes  # the exact bytes that are signed and sent, every time
    sha256: str  # hex of sha256(payload)
    jws: str | None  # detached compact JWS over payload, or None (signing not configured)
    row_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainHead:
    chain_id: str
    seq: int
    hash: str  # "sha-256:<hex>" of document ``seq``


Build = Callable[[ChainLink], bytes]
Sign = Callable[[bytes], str]


def _meta(conn: Conn, key: str) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        return json.loads(row[0])
    except (TypeError, ValueError):
        return None  # only a salvaged copy could hold garbage here


def _set_meta(conn: Conn, key: str, value: Any) -> None:
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     (key, json.dumps(value, sort_keys=True)))


def head(conn: Conn) -> ChainHead | None:
    h = _meta(conn, HEAD_KEY)
    if not isinstance(h, dict):
        return None
    return ChainHead(chain_id=str(h["chainId"]), seq=int(h["seq"]), hash=str(h["hash"]))


def note_chain_start(conn: Conn, start: dict[str, Any]) -> None:
    """Remember why a chain not yet begun will begin (kept until the first document)."""
    if _meta(conn, HEAD_KEY) is None and _meta(conn, START_KEY) is None:
        _set_meta(conn, START_KEY, start)


def _chain_start(conn: Conn) -> dict[str, Any]:
    start = _meta(conn, START_KEY)
    previous = _meta(conn, PREVIOUS_CHAIN_KEY)
    row = conn.execute("SELECT value FROM meta WHERE key = 'previous_generation'").fetchone()
    if row is not None:
        out: dict[str, Any] = {"reason": "salvaged", "previousGeneration": str(row[0])}
        if isinstance(previous, dict):
            out["previousChain"] = previous
        return out
    if isinstance(start, dict):
        return start
    return {"reason": "first-start"}


def add_gap(conn: Conn, gap: dict[str, Any]) -> None:
    """Queue a gap for the next document (in the caller's transaction)."""
    gaps = _meta(conn, GAPS_KEY) or []
    gaps.append(gap)
    if len(gaps) > MAX_GAP_ENTRIES:
        gaps = _merge(gaps)
    _set_meta(conn, GAPS_KEY, gaps)


def _merge(gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (reason, kind of range): counts added, ranges widened."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for g in gaps:
        rng = "seqs" if "seqs" in g else "ids"
        key = (str(g.get("reason")), f"{rng}:{g.get('what', '')}")
        m = merged.get(key)
        if m is None:
            merged[key] = dict(g)
            continue
        m["count"] = int(m.get("count", 0)) + int(g.get("count", 0))
        lo, hi = m[rng]
        glo, ghi = g[rng]
        m[rng] = [min(lo, glo), max(hi, ghi)]
        m["merged"] = True
        for k, pick in (("firstTime", min), ("lastTime", max)):
            if k in g:
                m[k] = pick(m.get(k, g[k]), g[k])
    return list(merged.values())


def freeze(conn: Conn, row_ids: Sequence[int], *, created_at_s: float, new_chain_id: str,
           build: Build, sign: Sign | None) -> FrozenDocument:
    """Build, hash, sign and store the next document of the chain; advance the head."""
    h = head(conn)
    if h is None:
        link = ChainLink(chain_id=new_chain_id, seq=1, prev_hash=None,
                         chain_start=_chain_start(conn), gaps=tuple(_meta(conn, GAPS_KEY) or ()))
    else:
        link = ChainLink(chain_id=h.chain_id, seq=h.seq + 1, prev_hash=h.hash, chain_start=None,
                         gaps=tuple(_meta(conn, GAPS_KEY) or ()))
    payload = build(link)
    digest = hashlib.sha256(payload).hexdigest()
    jws = sign(payload) if sign is not None else None
    doc_id = int(conn.execute(
        "INSERT INTO documents (chain_id, seq, payload, sha256, jws, events, created_at_s) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (link.chain_id, link.seq, payload, digest, jws, len(row_ids), created_at_s),
    ).fetchone()[0])
    conn.executemany("INSERT INTO document_rows (row_id, document) VALUES (?, ?)",
                     [(i, doc_id) for i in row_ids])
    _set_meta(conn, HEAD_KEY, {"chainId": link.chain_id, "seq": link.seq,
                               "hash": f"sha-256:{digest}"})
    _set_meta(conn, GAPS_KEY, None)
    _set_meta(conn, START_KEY, None)
    return FrozenDocument(id=doc_id, chain_id=link.chain_id, seq=link.seq, payload=payload,
                          sha256=digest, jws=jws, row_ids=tuple(row_ids))


def load(conn: Conn, doc_id: int) -> FrozenDocument:
    row = conn.execute("SELECT chain_id, seq, payload, sha256, jws FROM documents WHERE id = ?",
                       (doc_id,)).fetchone()
    ids = [int(r[0]) for r in conn.execute(
        "SELECT row_id FROM document_rows WHERE document = ? ORDER BY row_id",
        (doc_id,)).fetchall()]
    return FrozenDocument(id=doc_id, chain_id=str(row[0]), seq=int(row[1]),
                          payload=bytes(row[2]), sha256=str(row[3]),
                          jws=None if row[4] is None else str(row[4]), row_ids=tuple(ids))


def documents_of(conn: Conn, row_ids: Sequence[int]) -> list[int]:
    """Ids of the frozen documents carrying any of these rows."""
    found: set[int] = set()
    ids = list(row_ids)
    for i in range(0, len(ids), _CHUNK):
        part = ids[i:i + _CHUNK]
        found.update(int(r[0]) for r in conn.execute(
            f"SELECT DISTINCT document FROM document_rows WHERE row_id IN "  # noqa: S608
            f"({', '.join('?' * len(part))})", part).fetchall())
    return sorted(found)


_CHUNK = 500  # ids per IN (...): far below SQLite's parameter limit


def drop(conn: Conn, doc_ids: Sequence[int], *, gap: dict[str, Any] | None) -> None:
    """Forget frozen documents (delivered, or never to be delivered: then a gap is queued
    naming each seq) and untie their rows."""
    for d in doc_ids:
        row = conn.execute("SELECT chain_id, seq, events, payload FROM documents WHERE id = ?",
                           (d,)).fetchone()
        if row is None:
            continue
        if gap is not None:
            # What the lost document was to tell (its own gaps, why the chain began) is told
            # by the next one instead; otherwise a refused document would hide earlier gaps.
            carried = _carried(bytes(row[3]))
            entry = {**gap, "chainId": str(row[0]), "seqs": [int(row[1]), int(row[1])],
                     "count": int(row[2])}
            if "tea:chainStart" in carried:
                entry["chainStart"] = carried["tea:chainStart"]
            for g in carried.get("tea:gaps", []):
                if isinstance(g, dict):
                    add_gap(conn, g)
            add_gap(conn, entry)
        conn.execute("DELETE FROM document_rows WHERE document = ?", (d,))
        conn.execute("DELETE FROM documents WHERE id = ?", (d,))


def _carried(payload: bytes) -> dict[str, Any]:
    """The chain fields a frozen document carries (its head only matters here)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def after_ack(conn: Conn, row_ids: Sequence[int]) -> None:
    """Rows acked: a document whose rows are all gone is delivered and forgotten."""
    docs = documents_of(conn, row_ids)
    if not docs:
        return  # rows of no document (status, alarms): the usual case costs one query
    ids = list(row_ids)
    for i in range(0, len(ids), _CHUNK):
        part = ids[i:i + _CHUNK]
        conn.execute(f"DELETE FROM document_rows WHERE row_id IN "  # noqa: S608
                     f"({', '.join('?' * len(part))})", part)
    # Every document left without rows goes: these, and any frozen after its rows were
    # evicted under its lease (sent once, then nothing to ack it by). The table is small.
    conn.execute("DELETE FROM documents WHERE NOT EXISTS "
                 "(SELECT 1 FROM document_rows WHERE document = documents.id)")


def new_chain_id(bits: int) -> str:
    return str(uuid.UUID(int=bits, version=4))
