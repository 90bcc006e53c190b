"""Names the operating system shows for the agent's threads and helper processes.

Python keeps a thread's name to itself: ``top -H``, ``ps -L``, ``htop`` and py-spy's
``--threads`` show every thread of the agent as ``edge-agent`` (the process's name), and the
event former as ``python``. A technician asking "what is using the CPU" needs the thread's
name. Linux takes it from ``/proc/self/task/<tid>/comm`` (at most 15 bytes, proc(5)); writing
it changes nothing else. Elsewhere, or when /proc is read-only, naming is skipped: a name is
only an aid.
"""

from __future__ import annotations

import threading

COMM_MAX = 15  # bytes; the kernel's TASK_COMM_LEN less its NUL


def name_thread(name: str, thread: threading.Thread | None = None) -> bool:
    """Show ``name`` (cut to 15 bytes) for ``thread`` (default: the calling one); True if set."""
    target = thread or threading.current_thread()
    tid = target.native_id
    if tid is None:  # not started
        return False
    text = name.encode("utf-8", "replace")[:COMM_MAX].decode("utf-8", "ignore")
    try:
        with open(f"/proc/self/task/{tid}/comm", "w", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        return False
    return True


def thread_names(pid: int | str = "self") -> dict[int, str]:
    """tid -> the name the system shows, for every thread of a process (empty if unknown)."""
    import os

    out: dict[int, str] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as f:
                out[int(tid)] = f.read().strip()
        except (OSError, ValueError):
            continue
    return out
