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
from lab.guests import (
    bounce_guest_link,
    guest_cloud_init,
    guest_disk_events,
    guest_leases,
    guest_read_marker,
    guest_reported_addresses,
    guest_run,
    guest_serial_text,
    guest_write_marker,
    wait_guest_lease,
    wait_guest_ready,
    wait_guest_serial,
)
from lab.images import Images, prepare
from lab.networks import LAB_NETWORK, extra_network, free_network, guest_mac, network_xml
from lab.state import LabGuest, LabHost, LabNetwork, LabState, load_state

__all__ = [
    "LAB_NETWORK",
    "ImageError",
    "Images",
    "LabAlreadyRunning",
    "LabError",
    "LabGuest",
    "LabHost",
    "LabNetwork",
    "LabState",
    "PortInUse",
    "PreflightError",
    "bounce_guest_link",
    "dead_processes",
    "domain_state",
    "domain_states",
    "down",
    "extra_network",
    "free_network",
    "guest_cloud_init",
    "guest_disk_events",
    "guest_leases",
    "guest_mac",
    "guest_read_marker",
    "guest_reported_addresses",
    "guest_run",
    "guest_serial_text",
    "guest_write_marker",
    "kill_libvirtd",
    "leftovers",
    "load_state",
    "network_xml",
    "prepare",
    "qemu_pids",
    "start_libvirtd",
    "status",
    "up",
    "wait_guest_lease",
    "wait_guest_ready",
    "wait_guest_serial",
]
