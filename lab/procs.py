"""Recognising and stopping the lab's own processes, by PID only.

A recorded PID is trusted only while `/proc/<pid>/cmdline` still contains both the
program we started and a path unique to this lab (its host dir or base dir): a PID
reused by an unrelated process after a crash is never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proc:
    """A process we started: PID plus what its command line must contain."""

    pid: int
    program: str  # e.g. 'libvirtd', 'qemu-system-x86_64', 'lab.keeper'
    marker: str  # a path unique to this lab that appears in the command line
    label: str = ""
    ns: str | None = None  # if set, the process must (still) live in this mount namespace


def read_cmdline(pid: int) -> str | None:
    """The command line with NULs as spaces, or None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The state letter follows the last ')' (the comm may contain spaces/parens).
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X"):
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    if not raw:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_ours(proc: Proc) -> bool:
    cmd = read_cmdline(proc.pid)
    if cmd is None or proc.program not in cmd or proc.marker not in cmd:
        return False
    return proc.ns is None or mnt_ns(proc.pid) == proc.ns


def mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_mnt_ns(namespaces: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Every live process inside one of the given mount namespaces (pid, ns)."""
    wanted = set(namespaces)
    if not wanted:
        return
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        ns = mnt_ns(pid)
        if ns in wanted and read_cmdline(pid) is not None:
            yield pid, ns


def read_pidfile(path: str | os.PathLike[str]) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    return read_cmdline(pid) is not None


def terminate(procs: Iterable[Proc], timeout: float = 10.0) -> list[Proc]:
    """SIGTERM every process that is still ours, SIGKILL what outlives `timeout`.

    Returns the processes that were signalled. Waits until all of them are gone
    (or zombies, which hold no resources and are reaped by their parent).
    """
    targets = [p for p in procs if is_ours(p)]
    for p in targets:
        log.debug("SIGTERM %s (pid %s)", p.label or p.program, p.pid)
        _signal(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    remaining = targets
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in remaining if _alive(p.pid)]
    for p in remaining:
        log.warning("%s (pid %s) ignored SIGTERM for %.0fs, sending SIGKILL", p.label or p.program, p.pid, timeout)
        _signal(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in remaining if _alive(p.pid)]
    for p in remaining:
        log.error("%s (pid %s) survived SIGKILL", p.label or p.program, p.pid)
    return targets


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
