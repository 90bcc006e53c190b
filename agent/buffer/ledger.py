"""What the buffer had committed, remembered outside the buffer file (issue 13 item 4).

A buffer file replaced by an empty one (deleted, truncated to zero, restored from an old
copy) or one whose last commits vanished (a damaged WAL frame makes SQLite drop every later
commit without an error) looks like a healthy file to SQLite. So the store writes, next to
the file, ``<buffer>.ledger``: the generation and the highest read and outbox ids committed,
at open and at most once per :data:`SAVE_EVERY_S` after commits (written to a temporary file,
fsynced, renamed). At the next start :func:`compare` tells what is missing; the store raises
an alarm and keeps new ids above the remembered ones.

The ledger lags the file by up to SAVE_EVERY_S: commits of the last second before a loss are
not detected. It is not moved when a corrupt file is quarantined (salvage accounts for that).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAVE_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Ledger:
    generation: str
    reads_id: int  # highest reads id committed
    outbox_id: int  # highest outbox id committed

    def as_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "reads_id": self.reads_id,
                "outbox_id": self.outbox_id}


def ledger_path(buffer_path: Path) -> Path:
    return buffer_path.with_name(buffer_path.name + ".ledger")


def load(path: Path) -> tuple[Ledger | None, str | None]:
    """The remembered ledger, or (None, why) when there is none or it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        doc = json.loads(raw)
        ledger = Ledger(str(doc["generation"]), int(doc["reads_id"]), int(doc["outbox_id"]))
    except (ValueError, TypeError, KeyError) as exc:
        return None, f"{path} is damaged ({type(exc).__name__}: {exc})"
    return ledger, None


def save(path: Path, ledger: Ledger) -> None:
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(ledger.as_json(), sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def compare(
    remembered: Ledger, current: Ledger, previous_generation: str | None
) -> dict[str, Any] | None:
    """An alarm (without its timestamps) when the file lost what the ledger says it had.

    * Same generation, lower ids: committed rows vanished (a damaged WAL, an old copy).
    * Another generation that does not name the remembered one as its predecessor (salvage
      does): the file was replaced, and whatever it still held for delivery is gone.
    """
    if current.generation == remembered.generation:
        lost_reads = remembered.reads_id - current.reads_id
        lost_outbox = remembered.outbox_id - current.outbox_id
        if lost_reads <= 0 and lost_outbox <= 0:
            return None
        return {
            "type": "buffer_rows_lost",
            "detail": "rows the buffer had committed are missing from its file (a damaged "
                      "write-ahead log, or the file was restored from an older copy)",
            "generation": current.generation,
            "committed_reads_id": remembered.reads_id,
            "file_reads_id": current.reads_id,
            "committed_outbox_id": remembered.outbox_id,
            "file_outbox_id": current.outbox_id,
        }
    if previous_generation == remembered.generation:
        return None  # quarantined and salvaged: that alarm was raised already
    return {
        "type": "buffer_replaced",
        "detail": "the buffer file is not the one the agent last wrote (deleted, truncated "
                  "or swapped while the agent was stopped); events it still held for "
                  "delivery are lost unless that file is found",
        "generation": current.generation,
        "previous_generation": remembered.generation,
        "committed_reads_id": remembered.reads_id,
        "committed_outbox_id": remembered.outbox_id,
    }
