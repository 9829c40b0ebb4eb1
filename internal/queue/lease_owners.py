"""Who holds a SQLite broker lease, and whether that process is known to have died.

A lease owner names its process as "host:pid:nonce:process", where `process` is
"<boot id>/<pid namespace>/<start time>" read from /proc: the pid alone is not enough to
judge, since after a restart another process may have the dead one's pid, and a container
with the same host name but its own pid namespace has pids of its own. A process judges
only owners of its own machine, boot and pid namespace; the others keep their leases until
they run out. Owners written before the `process` part (host:pid:nonce) are judged by host
and pid alone, as they were; so are all where /proc is not there to read (not Linux).
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

_UNKNOWN = "-"


def this_process() -> str:
    """A new lease owner for the calling process."""
    pid = os.getpid()
    return f"{os.uname().nodename}:{pid}:{uuid.uuid4().hex[:12]}:{_process_identity(pid)}"


def died_here(owner: str) -> bool:
    """Whether `owner` is a process of this machine, boot and pid namespace that has died
    (gone, a zombie, or its pid now another process's). False whenever that cannot be told."""
    host, pid_text, _, identity = (owner.split(":", 3) + [""] * 4)[:4]
    if host != os.uname().nodename or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    boot, namespace, started = (identity.split("/") + [_UNKNOWN] * 3)[:3]
    ours = _machine()
    if _UNKNOWN in (boot, namespace, started) or _UNKNOWN in ours:
        return _pid_gone(pid)
    if (boot, namespace) != ours:
        return False  # another boot's or another namespace's pid: not ours to judge
    now = _start_time(pid)
    return now is None or now != started


def _process_identity(pid: int) -> str:
    boot, namespace = _machine()
    return f"{boot}/{namespace}/{_start_time(pid) or _UNKNOWN}"


@functools.cache
def _machine() -> tuple[str, str]:
    """This boot's id and this process's pid namespace (its inode), or "-" for either
    that cannot be read; read once, as neither changes while the process runs."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip() or _UNKNOWN
    except OSError:
        boot = _UNKNOWN
    try:
        namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        namespace = ""
    return boot, namespace or _UNKNOWN


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None if it has died: gone,
    or a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, someone else's
        return False
    return False
