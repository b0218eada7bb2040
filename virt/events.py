"""libvirt's event loop, run in one dedicated daemon thread per process.

Keepalive, close callbacks and domain events all need an event loop registered BEFORE the first
connection is opened. Callbacks run on this thread: they must only hand work to other threads,
never call back into libvirt with blocking calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_started_pid: int | None = None
_loop_thread: threading.Thread | None = None


def _quiet(_ctx, _err) -> None:
    # libvirt prints every error to stderr by default; we raise them as exceptions instead.
    pass


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread (once per process).

    Safe to call many times and after fork: a forked child starts its own loop thread.
    """
    global _started_pid
    if _started_pid == os.getpid():
        return
    with _lock:
        if _started_pid == os.getpid():
            return
        libvirt.registerErrorHandler(_quiet, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # never let the loop thread die: keepalives depend on it
                    log.exception("libvirt event loop iteration failed")

        global _loop_thread
        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()
        _started_pid = os.getpid()


def run_on_loop(fn: Callable[[], None], *, timeout: float = 10.0) -> None:
    """Run ``fn`` on the event-loop thread and wait for it.

    Closing a connection from another thread while the loop dispatches one of its callbacks can
    crash libvirt (use after free); closing on the loop thread serialises the two.
    """
    if _started_pid != os.getpid() or _loop_thread is None or threading.current_thread() is _loop_thread:
        fn()
        return
    done = threading.Event()
    timer: list[int] = []

    def fire(timer_id, _opaque) -> None:
        libvirt.virEventRemoveTimeout(timer_id)
        try:
            fn()
        finally:
            done.set()

    timer.append(libvirt.virEventAddTimeout(0, fire, None))
    if not done.wait(timeout):
        log.warning("the libvirt event loop did not run a close within %s s", timeout)


# --- domain events, reduced to what Virtfleet acts on -------------------------------------------------

LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

# Event ids registered besides LIFECYCLE, with the name used in DomainEvent.kind.
OTHER_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_ID_REBOOT: "reboot",
    libvirt.VIR_DOMAIN_EVENT_ID_GRAPHICS: "graphics",
    libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: "job-completed",
    libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION: "migration-iteration",
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED: "device-added",
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED: "device-removed",
    libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE: "metadata-change",
    libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE: "balloon-change",
    libvirt.VIR_DOMAIN_EVENT_ID_TUNABLE: "tunable",
    libvirt.VIR_DOMAIN_EVENT_ID_PMSUSPEND: "pmsuspend",
    libvirt.VIR_DOMAIN_EVENT_ID_PMWAKEUP: "pmwakeup",
    libvirt.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR: "control-error",
    libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG: "watchdog",
    libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR: "io-error",
}


@dataclass(frozen=True)
class DomainEvent:
    """A hint that something about a domain changed: the receiver re-reads the domain."""

    uuid: str
    name: str
    kind: str  # "lifecycle", "reboot", "graphics", ...
    detail: str = ""  # for lifecycle: "started", "stopped", ...
    lifecycle: int | None = None  # raw libvirt lifecycle event number, when kind == "lifecycle"
    lifecycle_detail: int | None = None
