"""The state of a lab host's domains, read from its libvirtd (the lab checks what libvirt says)."""

from __future__ import annotations

import libvirt

from lab.state import LabHost

DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def domain_states(host: LabHost) -> dict[str, str]:
    """name -> state of every domain on `host`, read from its libvirtd now."""
    conn = libvirt.open(host.unix_uri)
    try:
        return {d.name(): DOMAIN_STATES.get(d.state()[0], "unknown") for d in conn.listAllDomains()}
    finally:
        conn.close()


def domain_state(host: LabHost, guest: str) -> str | None:
    """State of one domain on `host`, or None if the host does not have it."""
    conn = libvirt.open(host.unix_uri)
    try:
        try:
            dom = conn.lookupByName(guest)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return DOMAIN_STATES.get(dom.state()[0], "unknown")
    finally:
        conn.close()
