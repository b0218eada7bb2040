"""The lab's domains: tiny TCG guests on real hosts, test-driver domains on fake hosts."""

from __future__ import annotations

import os
import re
import shlex
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import libvirt

from lab.domains import domain_state
from lab.errors import LabError
from lab.images import ADDRESS_RE, BANNER, CLOUD_RE, DISK_RE, Images
from lab.media import ISO_NAME
from lab.networks import LAB_NETWORK, guest_mac
from lab.state import LabGuest, LabHost

GUEST_MEMORY_MIB = 128  # 64 MiB does not boot this kernel
GUEST_CMDLINE = "console=tty0 console=ttyS0 quiet"
LAB_POOL = "lab"  # the dir pool the lab defines on every real host


def guest_name(host: str, k: int) -> str:
    return f"{host}-vm{k}"


def guest_uuid(lab_id: uuid.UUID, name: str) -> str:
    """Stable across restarts of one lab, distinct across hosts and across labs."""
    return str(uuid.uuid5(lab_id, f"guest/{name}"))


def serial_log_path(name: str) -> str:
    """The path as the daemon sees it: each host maps /var/log/libvirt to its own dir."""
    return f"/var/log/libvirt/qemu/{name}.serial.log"


def real_guest_xml(name: str, uuid_: str, images: Images, network: str | None = LAB_NETWORK) -> str:
    """A 128 MiB TCG guest booting the lab kernel, with VNC, a logged serial, the lab ISO and a NIC.

    Its one disk is the lab pool's ISO as a read-only CD-ROM: a volume of its host's pool, so the
    storage pages show which VMs use it, and the same path on every lab host, so live migration
    needs no storage copy (a writable local disk would: libvirt calls that unsafe).

    Its NIC (virtio, MAC derived from the UUID) is on `network`, the `lab` network every real lab
    host has under that name, so a migrated guest finds it on the destination too. No option ROM:
    with a direct kernel boot iPXE would only cost boot time and memory.
    """
    n = escape(name)
    nic = ""
    if network:
        nic = f"""
    <interface type='network'>
      <mac address='{guest_mac(uuid_)}'/>
      <source network='{escape(network)}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>"""
    return f"""<domain type='qemu'>
  <name>{n}</name>
  <uuid>{uuid_}</uuid>
  <title>virtfleet lab guest {n}</title>
  <memory unit='MiB'>{GUEST_MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>Virtfleet</entry>
      <entry name='product'>{n}</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(images.kernel)}</kernel>
    <initrd>{escape(images.initrd)}</initrd>
    <cmdline>{GUEST_CMDLINE}</cmdline>
    <smbios mode='sysinfo'/>
  </os>
  <features>
    <acpi/>
    <tcg>
      <tb-cache unit='MiB'>16</tb-cache>
    </tcg>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <disk type='volume' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source pool='{LAB_POOL}' volume='{ISO_NAME}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>{nic}
    <serial type='pty'>
      <log file='{serial_log_path(n)}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='vga'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# A realistic spread for fake VMs, cycled by index.
_FAKE_STATES = ("running", "running", "running", "paused", "shutoff")  # 60/20/20 %
_FAKE_SIZES = ((1, 1024), (2, 2048), (1, 512), (4, 4096), (2, 1024))


def fake_state(k: int) -> str:
    return _FAKE_STATES[(k - 1) % len(_FAKE_STATES)]


def fake_guest_xml(guest: LabGuest, k: int) -> str:
    vcpus, mib = _FAKE_SIZES[(k - 1) % len(_FAKE_SIZES)]
    n = escape(guest.name)
    return f"""<domain type='test'>
  <name>{n}</name>
  <uuid>{guest.uuid}</uuid>
  <title>virtfleet fake VM {n}</title>
  <memory unit='MiB'>{mib}</memory>
  <currentMemory unit='MiB'>{mib}</currentMemory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <graphics type='vnc' port='{5900 + k}' autoport='no' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
  </devices>
</domain>
"""


def wait_guest_ready(
    host: LabHost, guest: str, timeout: float = 30.0, *, count: int = 1, hostname: str | None = None
) -> float:
    """Wait until `guest`, running on `host`, printed its ready banner on the serial log.

    The banner names the guest's hostname: its domain name (the lab puts it into SMBIOS), or what a
    NoCloud seed said (lab-cloud.qcow2): pass that as `hostname`.

    From then on its acpid listens, so an ACPI shutdown is not lost. The log is
    truncated when QEMU starts (append='off'), so a banner in it belongs to the
    current run of the guest; a guest reboot keeps the same QEMU, so after N
    reboots pass `count=N + 1`. The log stays with the host that started the
    guest: a guest that arrived by migration prints nothing new. Returns the
    seconds waited.
    """
    banner = BANNER.format(name=hostname or guest).encode()
    path = host.serial_log(guest)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            with open(path, "rb") as f:
                seen = f.read().count(banner) >= count
        except FileNotFoundError:
            seen = False
        # A banner left by a previous run of a now shut-off guest does not count.
        if seen and domain_state(host, guest) == "running":
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            state = domain_state(host, guest)
            tail = ""
            if os.path.exists(path):
                with open(path, "rb") as f:
                    tail = f.read()[-500:].decode(errors="replace")
            raise LabError(
                f"{guest} on {host.name} (state {state}) showed no ready banner in {timeout:.0f}s; "
                f"serial log {path}: {tail!r}"
            )
        time.sleep(0.05)


def guest_nic(host: LabHost, guest: str, network: str = LAB_NETWORK) -> ET.Element:
    """The live <interface> element of `guest`'s NIC on `network` (its first one there)."""
    conn = libvirt.open(host.unix_uri)
    try:
        xml = conn.lookupByName(guest).XMLDesc(0)
    finally:
        conn.close()
    for iface in ET.fromstring(xml).findall("devices/interface"):  # noqa: S314 - the lab's own libvirtd
        source = iface.find("source")
        if source is not None and source.get("network") == network:
            return iface
    raise LabError(f"{guest} on {host.name} has no NIC on network {network!r}")


def guest_leases(host: LabHost, guest: str, network: str = LAB_NETWORK) -> list[dict[str, object]]:
    """The DHCP leases `network` on `host` holds for `guest`'s NIC there (libvirt's lease dicts:
    ipaddr, prefix, mac, hostname, expirytime, ...), as `virsh net-dhcp-leases` lists them."""
    mac = guest_nic(host, guest, network).find("mac").get("address", "")  # type: ignore[union-attr]
    conn = libvirt.open(host.unix_uri)
    try:
        return list(conn.networkLookupByName(network).DHCPLeases(mac))
    finally:
        conn.close()


def wait_guest_lease(
    host: LabHost, guest: str, timeout: float = 30.0, network: str = LAB_NETWORK, *, reported: bool = True
) -> dict[str, object]:
    """Wait until `guest` (running on `host`) holds a DHCP lease on `network`; returns the lease.

    With `reported` (the default) the guest must also have said on its serial console that it
    applied that address: dnsmasq records a lease a moment before the guest has configured it. The
    guest asks for one right after its ready banner: ~2 s under TCG.
    """
    deadline = time.monotonic() + timeout
    while True:
        leases = guest_leases(host, guest, network)
        if leases:
            lease = leases[-1]
            if not reported or any(
                addr.split("/")[0] == lease["ipaddr"] for _, addr in guest_reported_addresses(host, guest)
            ):
                return lease
        if time.monotonic() >= deadline:
            raise LabError(
                f"{guest} on {host.name} got no DHCP lease on network {network!r} in {timeout:.0f}s "
                f"(dnsmasq lists {[x['ipaddr'] for x in leases]}); the guest says {guest_reported_addresses(host, guest)}"
            )
        time.sleep(0.1)


def guest_reported_addresses(host: LabHost, guest: str) -> list[tuple[str, str]]:
    """(interface, 'address/prefix') for every lease the guest bound since QEMU started on `host`,
    oldest first, as the guest itself printed them on its serial console."""
    try:
        with open(host.serial_log(guest), "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [(m.group(2), f"{m.group(3)}/{m.group(4)}") for m in ADDRESS_RE.finditer(text) if m.group(1) == guest]


def bounce_guest_link(host: LabHost, guest: str, network: str = LAB_NETWORK, down_for: float = 0.5) -> None:
    """Take the link of `guest`'s NIC on `network` down and up again (`virsh domif-setlink`): the
    guest then asks for a new lease, e.g. after a live migration to another lab host (each host's
    `lab` network is a segment of its own, with its own subnet)."""
    iface = guest_nic(host, guest, network)
    conn = libvirt.open(host.unix_uri)
    try:
        dom = conn.lookupByName(guest)
        for state in ("down", "up"):
            link = iface.find("link")
            if link is None:
                link = ET.SubElement(iface, "link")
            link.set("state", state)
            dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if state == "down":
                time.sleep(down_for)
    finally:
        conn.close()


def guest_serial_text(host: LabHost, guest: str) -> str:
    """What `guest` printed on its serial console since QEMU started on `host` ('' before that)."""
    try:
        with open(host.serial_log(guest), "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def wait_guest_serial(
    host: LabHost, guest: str, pattern: str | re.Pattern[str], timeout: float = 30.0, *, start: int = 0
) -> re.Match[str]:
    """Wait until `guest`'s serial log matches `pattern` (a regex) at or after offset `start`;
    returns the match (its .end() is a `start` for what comes next)."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while True:
        text = guest_serial_text(host, guest)
        m = regex.search(text, start)
        if m:
            return m
        if time.monotonic() >= deadline:
            raise LabError(
                f"{guest} on {host.name} printed nothing matching {regex.pattern!r} in {timeout:.0f}s; "
                f"serial log {host.serial_log(guest)} ends {text[-600:]!r}"
            )
        time.sleep(0.1)


def guest_disk_events(host: LabHost, guest: str) -> list[tuple[str, str, str]]:
    """(disk, 'appeared' | 'changed' | 'removed', details such as '64 MiB' or '15 MiB, cdrom') for
    every disk event the guest printed since QEMU started on `host`, oldest first."""
    return [(m.group(2), m.group(3), m.group(4) or "") for m in DISK_RE.finditer(guest_serial_text(host, guest))]


def guest_cloud_init(host: LabHost, guest: str) -> dict[str, str] | None:
    """What a lab cloud image said about its NoCloud seed (instance_id, hostname, user, password,
    ssh_keys, network_config; {} when it found no seed), or None if it said nothing (yet)."""
    m = CLOUD_RE.search(guest_serial_text(host, guest))
    if m is None:
        return None
    if m.group("none"):
        return {}
    return {k: v for k, v in m.groupdict().items() if k != "none"}


def guest_run(host: LabHost, guest: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
    """Type `command` on `guest`'s serial shell (libvirt's console stream, taking it over from any
    other client) and wait for it to end; returns (exit status, output). The output is read from the
    serial log, between two markers only this call prints. The guest must be ready (its banner
    printed): what is typed while it boots is lost."""
    token = uuid.uuid4().hex[:10]
    start = len(guest_serial_text(host, guest))
    conn = libvirt.open(host.unix_uri)
    try:
        stream = conn.newStream(0)
        conn.lookupByName(guest).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        try:
            # the shell echoes the line: the markers are told apart from their echo by what follows them
            stream.send(f"echo vf-run-{token}; {command}; echo vf-done-{token} $?\n".encode())
            pattern = re.compile(rf"vf-run-{token}\r?\n(?P<out>.*?)vf-done-{token} (?P<rc>\d+)", re.S)
            m = wait_guest_serial(host, guest, pattern, timeout, start=start)
        finally:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()
    return int(m.group("rc")), m.group("out").replace("\r\n", "\n")


def guest_write_marker(host: LabHost, guest: str, text: str, device: str = "vda", timeout: float = 30.0) -> None:
    """Write `text` to /marker on the FAT file system of the guest's disk `device` (the lab's boot
    disks have one) and flush it, from inside the guest; wait for the guest to announce the disk first."""
    _wait_block_device(host, guest, device, timeout)
    rc, out = guest_run(host, guest, f"mkdir -p /mnt && mount /dev/{device} /mnt && echo {shlex.quote(text)} >/mnt/marker"
                                     " && sync && umount /mnt", timeout)  # fmt: skip
    if rc:
        raise LabError(f"{guest} on {host.name} could not write its marker on {device}: {out.strip()}")


def guest_read_marker(host: LabHost, guest: str, device: str = "vda", timeout: float = 30.0) -> str | None:
    """The marker guest_write_marker left on `device`, read from inside the guest (None: there is none)."""
    _wait_block_device(host, guest, device, timeout)
    rc, out = guest_run(host, guest, f"mkdir -p /mnt && mount -r /dev/{device} /mnt && cat /mnt/marker; s=$?; umount /mnt;"
                                     " [ $s = 0 ]", timeout)  # fmt: skip
    if rc:
        return None
    # what the guest's own loops and the kernel print meanwhile is not the file's
    noise = re.compile(r"^(virtfleet lab |\[\s*\d+\.\d+\] )")
    return "\n".join(line for line in out.split("\n") if line and not noise.match(line))


def _wait_block_device(host: LabHost, guest: str, device: str, timeout: float) -> None:
    """Until the guest has /dev/<device> (its disk drivers load after the banner; asked from inside
    the guest, since its serial log starts again when QEMU does, e.g. after a snapshot revert)."""
    deadline = time.monotonic() + timeout
    while guest_run(host, guest, f"[ -b /dev/{device} ]", timeout)[0]:
        if time.monotonic() >= deadline:
            raise LabError(f"{guest} on {host.name} has no disk {device} after {timeout:.0f}s")
        time.sleep(0.5)
