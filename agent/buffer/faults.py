"""Classifying SQLite errors, explaining open failures, and moving corrupt files aside."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

from agent.buffer import pages
from agent.buffer.api import BufferOpenError

# Primary result codes (https://sqlite.org/rescode.html).
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_NOMEM = 7
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_PROTOCOL = 15
SQLITE_NOTADB = 26

_ENVIRONMENTAL = {
    SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR,
    SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL, SQLITE_NOTADB,
}
SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of an exception (sqlite3 or apsw), else None."""
    code = getattr(exc, "sqlite_errorcode", None)  # sqlite3 (Python >= 3.11)
    if code is None:
        code = getattr(exc, "result", None)  # apsw
    if isinstance(code, int):
        return code & 0xFF
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return SQLITE_FULL
    return None


def is_full(exc: BaseException) -> bool:
    return sqlite_code(exc) == SQLITE_FULL


def is_corrupt(exc: BaseException) -> bool:
    return sqlite_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def is_environmental(exc: BaseException) -> bool:
    """An error of the file or the machine (not of one request's data)."""
    return sqlite_code(exc) in _ENVIRONMENTAL or isinstance(exc, OSError)


# ----------------------------------------------------------------------------- open checks

_FIX_CONFIG = "or set buffer.path in the config to a writable place"


def preflight(path: Path) -> None:
    """Raise BufferOpenError, in words a technician can act on, if ``path`` cannot work."""
    directory = path.parent
    if not directory.exists():
        raise BufferOpenError(
            f"buffer file {path}: the directory {directory} does not exist; create it "
            f"(mkdir -p {directory}) and give it to the agent's user, {_FIX_CONFIG}"
        )
    if not directory.is_dir():
        raise BufferOpenError(
            f"buffer file {path}: {directory} is not a directory (a file is in its place); "
            f"move that file away and create the directory, {_FIX_CONFIG}"
        )
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise BufferOpenError(
            f"buffer file {path}: the filesystem holding {directory} is mounted read-only; "
            f"remount it read-write (mount -o remount,rw <mount point>; check `dmesg` for "
            f"storage errors that make the kernel do this), {_FIX_CONFIG}"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BufferOpenError(
            f"buffer file {path}: the agent's user may not write in {directory}; "
            f"give it the directory (chown/chmod), {_FIX_CONFIG}"
        )
    if path.exists() and not path.is_file():
        raise BufferOpenError(
            f"buffer file {path}: exists but is not a regular file; move it away, {_FIX_CONFIG}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise BufferOpenError(
            f"buffer file {path}: the agent's user may not read and write it; fix its owner "
            f"or mode (chown/chmod), {_FIX_CONFIG}"
        )


def open_error(path: Path, exc: BaseException) -> BufferOpenError:
    code = sqlite_code(exc)
    if code == SQLITE_FULL:
        what = "the disk is full; free some space on it"
    elif code in (SQLITE_READONLY, SQLITE_PERM):
        what = "the file or its directory is read-only; make both writable"
    elif code == SQLITE_CANTOPEN:
        what = "SQLite cannot open or create the file (permissions, missing directory?)"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return BufferOpenError(f"buffer file {path}: cannot open it: {what}; {_FIX_CONFIG}")


# ----------------------------------------------------------------------------- quarantine


def wal_damage(path: Path) -> str | None:
    """Why the WAL beside ``path`` would lose commits on replay (pages.check_wal), or None.

    Costs a read of the WAL, which a clean stop leaves empty (the close checkpoints with
    TRUNCATE): only a start after a crash or power cut pays it.
    """
    wal = Path(f"{path}-wal")
    try:
        if wal.stat().st_size <= 32:
            return None
        data = wal.read_bytes()
    except OSError:
        return None
    check = pages.check_wal(data)
    if not check.damaged:
        return None
    return (f"its write-ahead log has a damaged frame: SQLite would replay {check.valid} of "
            f"{check.frames} frames and silently drop the commits after it")


def quarantine_name(path: Path, now_s: float) -> Path:
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    return candidate


def quarantine(path: Path, now_s: float) -> Path:
    """Move ``path`` and its -wal/-shm/-journal aside as ``<name>.corrupt-<UTC time>``."""
    target = quarantine_name(path, now_s)
    for suffix in ("", *SIDE_FILES):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
    _fsync_dir(path.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
