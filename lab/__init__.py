"""Virtfleet's local lab: several independent libvirt hosts on one machine.

Real hosts run their own libvirtd + virtlogd (and optionally sshd) in a private
mount namespace with tiny TCG guests; fake hosts serve libvirt's test driver for
scale tests. Python stdlib + libvirt-python only: no Django here.
"""

from lab.core import (
    dead_processes,
    down,
    kill_libvirtd,
    leftovers,
    qemu_pids,
    start_libvirtd,
    status,
    up,
)
from lab.domains import domain_state, domain_states
from lab.errors import ImageError, LabAlreadyRunning, LabError, PortInUse, PreflightError
from lab.guests import wait_guest_ready
from lab.images import Images, prepare
from lab.state import LabGuest, LabHost, LabState, load_state

__all__ = [
    "ImageError",
    "Images",
    "LabAlreadyRunning",
    "LabError",
    "LabGuest",
    "LabHost",
    "LabState",
    "PortInUse",
    "PreflightError",
    "dead_processes",
    "domain_state",
    "domain_states",
    "down",
    "kill_libvirtd",
    "leftovers",
    "load_state",
    "prepare",
    "qemu_pids",
    "start_libvirtd",
    "status",
    "up",
    "wait_guest_ready",
]
