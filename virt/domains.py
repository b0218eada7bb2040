"""What Virtfleet knows about a domain and a host, as small frozen dataclasses.

``power_state`` is THE mapping from libvirt's (state, reason) pair to the power state shown
everywhere; nothing else decides what state a VM is in.
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import libvirt
from defusedxml.ElementTree import fromstring as parse_xml


class PowerState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting_down"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"
    UNKNOWN = "unknown"


_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,  # running, waiting on a resource
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PMSUSPENDED,
}

_REASONS: dict[int, dict[int, str]] = {
    libvirt.VIR_DOMAIN_RUNNING: {
        libvirt.VIR_DOMAIN_RUNNING_BOOTED: "booted",
        libvirt.VIR_DOMAIN_RUNNING_MIGRATED: "migrated here",
        libvirt.VIR_DOMAIN_RUNNING_RESTORED: "restored from a saved state",
        libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT: "reverted to a snapshot",
        libvirt.VIR_DOMAIN_RUNNING_UNPAUSED: "resumed",
        libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED: "migration cancelled",
        libvirt.VIR_DOMAIN_RUNNING_SAVE_CANCELED: "save cancelled",
        libvirt.VIR_DOMAIN_RUNNING_WAKEUP: "woken up",
        libvirt.VIR_DOMAIN_RUNNING_CRASHED: "running after a crash",
        libvirt.VIR_DOMAIN_RUNNING_POSTCOPY: "running in post-copy migration",
        libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED: "post-copy migration failed",
    },
    libvirt.VIR_DOMAIN_PAUSED: {
        libvirt.VIR_DOMAIN_PAUSED_USER: "paused by a user",
        libvirt.VIR_DOMAIN_PAUSED_MIGRATION: "paused for migration",
        libvirt.VIR_DOMAIN_PAUSED_SAVE: "paused while saving",
        libvirt.VIR_DOMAIN_PAUSED_DUMP: "paused for a core dump",
        libvirt.VIR_DOMAIN_PAUSED_IOERROR: "paused on a disk I/O error",
        libvirt.VIR_DOMAIN_PAUSED_WATCHDOG: "paused by its watchdog",
        libvirt.VIR_DOMAIN_PAUSED_FROM_SNAPSHOT: "paused from a snapshot",
        libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN: "paused while shutting down",
        libvirt.VIR_DOMAIN_PAUSED_SNAPSHOT: "paused while taking a snapshot",
        libvirt.VIR_DOMAIN_PAUSED_CRASHED: "paused after a guest crash",
        libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "starting up",
        libvirt.VIR_DOMAIN_PAUSED_POSTCOPY: "paused in post-copy migration",
        libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "post-copy migration failed",
    },
    libvirt.VIR_DOMAIN_SHUTDOWN: {libvirt.VIR_DOMAIN_SHUTDOWN_USER: "shutting down on request"},
    libvirt.VIR_DOMAIN_SHUTOFF: {
        libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shut down",
        libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "forced off",
        libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated away",
        libvirt.VIR_DOMAIN_SHUTOFF_SAVED: "saved",
        libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed to start",
        libvirt.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: "reverted to a shut-off snapshot",
        libvirt.VIR_DOMAIN_SHUTOFF_DAEMON: "stopped by libvirtd",
    },
    libvirt.VIR_DOMAIN_CRASHED: {libvirt.VIR_DOMAIN_CRASHED_PANICKED: "guest kernel panic"},
}


def power_state(state: int, reason: int) -> tuple[PowerState, str]:
    """Map libvirt's domain state and reason to Virtfleet's power state and a readable reason."""
    return _STATE.get(state, PowerState.UNKNOWN), _REASONS.get(state, {}).get(reason, "")


def is_incoming_migration(state: int, reason: int) -> bool:
    """True for the destination copy of a domain that is still being migrated in."""
    return state == libvirt.VIR_DOMAIN_PAUSED and reason in (
        libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
        libvirt.VIR_DOMAIN_PAUSED_STARTING_UP,
    )


@dataclass(frozen=True)
class DomainStatus:
    """A domain's status as operations judge it: its power state, saved state and autostart."""

    state: PowerState
    persistent: bool = True
    managed_save: bool = False
    autostart: bool = False


@dataclass(frozen=True)
class GraphicsInfo:
    """One <graphics> device of a domain as configured or, for a running domain, as live."""

    type: str  # vnc, spice, ...
    listen: str = ""  # address it listens on ("" when it listens on a socket or nowhere)
    port: int | None = None  # -1/None when not (yet) allocated
    socket: str = ""  # unix socket path
    autoport: bool = False
    has_password: bool = False


# Virtfleet's metadata element that marks a domain as a template (kept in libvirt, so it survives
# Virtfleet's database and is seen by every Virtfleet that manages the host)
TEMPLATE_NS = "https://virtfleet.dev/xmlns/template/1"


@dataclass(frozen=True)
class DomainInfo:
    """A domain as read from libvirt in one go."""

    uuid: str
    name: str
    state: PowerState
    state_reason: str
    libvirt_state: int
    libvirt_reason: int
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    persistent: bool
    autostart: bool
    managed_save: bool
    graphics: tuple[GraphicsInfo, ...] = ()
    arch: str = ""
    os_type: str = ""
    disks: tuple[DiskInfo, ...] = ()
    interfaces: tuple[InterfaceInfo, ...] = ()
    template: bool = False  # marked as a Virtfleet template (domain metadata): it does not start
    xml: str = field(default="", repr=False)

    @property
    def active(self) -> bool:
        return self.state not in (PowerState.SHUTOFF, PowerState.UNKNOWN)

    @property
    def migrating_in(self) -> bool:
        return is_incoming_migration(self.libvirt_state, self.libvirt_reason)

    @property
    def placement_rank(self) -> int:
        """How strongly this copy claims the VM when two hosts report the same UUID.

        A running (or user-paused) copy beats a defined-but-off copy, which beats a copy that is
        still being migrated in. Equal ranks keep the VM where it is.
        """
        if self.migrating_in:
            return 0
        return 2 if self.active else 1


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def element_kib(el: ET.Element | None) -> int:
    if el is None or el.text is None:
        return 0
    units = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024, "m": 1024, "mib": 1024,
             "mb": 1e6 / 1024, "g": 1024**2, "gib": 1024**2, "gb": 1e9 / 1024, "t": 1024**3, "tib": 1024**3}  # fmt: skip
    return int(_int(el.text) * units.get(el.get("unit", "KiB").lower(), 1))


def parse_graphics(root: ET.Element) -> tuple[GraphicsInfo, ...]:
    found = []
    for g in root.findall("./devices/graphics"):
        gtype = g.get("type", "")
        listen = g.get("listen", "") or ""
        socket = g.get("socket", "") or ""
        for lst in g.findall("listen"):
            if lst.get("type") == "address" and lst.get("address"):
                listen = lst.get("address", "")
            elif lst.get("type") == "socket" and lst.get("socket"):
                socket = lst.get("socket", "")
        port = _int(g.get("port"), -1)
        found.append(
            GraphicsInfo(
                type=gtype,
                listen=listen,
                port=port if port > 0 else None,
                socket=socket,
                autoport=g.get("autoport") == "yes",
                has_password=g.get("passwd") is not None,
            )
        )
    return tuple(found)


_PASSWD = re.compile(r"""\s+passwd=(["']).*?\1""")


def strip_secrets(xml: str) -> str:
    """Remove graphics passwords from a domain XML read with VIR_DOMAIN_XML_SECURE."""
    return _PASSWD.sub("", xml)


_GRAPHICS_ELEMENT = re.compile(r"<graphics\b.*?(?:</graphics>|/>)", re.S)
_GRAPHICS_ENDPOINT = re.compile(r"""(\s(?:port|tlsPort|websocket|listen|address|socket)=)(["']).*?\2""")


def redact_graphics_endpoint(xml: str) -> str:
    """The domain XML with its graphics devices' ports, listen addresses and sockets replaced by
    "hidden": what browsers are shown. Consoles go through the console proxy, which reads the
    endpoint itself, so no page or API answer needs it."""

    def _hide(match: re.Match) -> str:
        return _GRAPHICS_ENDPOINT.sub(lambda m: f"{m.group(1)}{m.group(2)}hidden{m.group(2)}", match.group(0))

    return _GRAPHICS_ELEMENT.sub(_hide, xml)


def domain_info_from_xml(
    xml: str, *, state: int, reason: int, persistent: bool, autostart: bool, managed_save: bool
) -> DomainInfo:
    """Build a DomainInfo from a domain's XML plus the facts the XML does not carry.

    ``xml`` may be the secure XML (to learn whether a VNC password is set); the DomainInfo keeps
    it with passwords stripped, so they are never stored or shown.
    """
    root = parse_xml(xml)
    xml = strip_secrets(xml)
    power, reason_text = power_state(state, reason)
    vcpu_el = root.find("vcpu")
    max_vcpus = _int(vcpu_el.text if vcpu_el is not None else None, 1)
    vcpus = _int(vcpu_el.get("current") if vcpu_el is not None else None, max_vcpus)
    max_mem = element_kib(root.find("memory"))
    cur_mem = element_kib(root.find("currentMemory")) or max_mem
    os_type = root.find("./os/type")
    return DomainInfo(
        uuid=(root.findtext("uuid") or "").strip().lower(),
        name=(root.findtext("name") or "").strip(),
        state=power,
        state_reason=reason_text,
        libvirt_state=state,
        libvirt_reason=reason,
        vcpus=vcpus,
        max_vcpus=max_vcpus,
        memory_kib=cur_mem,
        max_memory_kib=max_mem,
        persistent=persistent,
        autostart=autostart,
        managed_save=managed_save,
        graphics=parse_graphics(root),
        arch=os_type.get("arch", "") if os_type is not None else "",
        os_type=(os_type.text or "") if os_type is not None else "",
        disks=tuple(_disks(root)),
        interfaces=tuple(_interfaces(root)),
        template=root.find(f"./metadata/{{{TEMPLATE_NS}}}template") is not None,
        xml=xml,
    )


@dataclass(frozen=True)
class HostInfo:
    """What a host's libvirt reports about the node."""

    hostname: str
    host_uuid: str
    arch: str
    cpu_model: str
    cpu_vendor: str
    cpus: int
    cpu_mhz: int
    sockets: int
    cores: int
    threads: int
    memory_bytes: int
    free_memory_bytes: int
    hypervisor_type: str
    hypervisor_version: str
    libvirt_version: str
    capabilities_xml: str = field(default="", repr=False)


def version_string(number: int) -> str:
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + release."""
    if not number:
        return ""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def host_info_from(
    *, caps_xml: str, info: list, hostname: str, free_memory: int, hv_type: str, hv_version: int, lib_version: int
) -> HostInfo:
    caps = parse_xml(caps_xml)
    cpu = caps.find("./host/cpu")
    return HostInfo(
        hostname=hostname,
        host_uuid=(caps.findtext("./host/uuid") or "").strip().lower(),
        arch=(cpu.findtext("arch") if cpu is not None else None) or str(info[0]),
        cpu_model=(cpu.findtext("model") if cpu is not None else None) or str(info[0]),
        cpu_vendor=(cpu.findtext("vendor") if cpu is not None else None) or "",
        cpus=int(info[2]),
        cpu_mhz=int(info[3]),
        sockets=int(info[5]),
        cores=int(info[6]),
        threads=int(info[7]),
        memory_bytes=int(info[1]) * 1024 * 1024,
        free_memory_bytes=int(free_memory),
        hypervisor_type=hv_type,
        hypervisor_version=version_string(hv_version),
        libvirt_version=version_string(lib_version),
        capabilities_xml=caps_xml,
    )


@dataclass(frozen=True)
class DiskInfo:
    """A disk of a domain: where its data is (a path, or a pool's volume) and how the guest sees it."""

    target: str
    device: str
    path: str = ""
    pool: str = ""
    volume: str = ""
    readonly: bool = False
    shareable: bool = False
    bus: str = ""  # virtio, sata, scsi, ide...
    format: str = ""  # the driver's type: raw, qcow2
    source_type: str = ""  # file, block, volume, network

    @property
    def label(self) -> str:
        return self.path or (f"{self.pool}/{self.volume}" if self.volume else self.target)

    @property
    def removable(self) -> bool:
        return self.device == "disk" and not self.readonly and not self.shareable and bool(self.path or self.volume)

    @property
    def why_kept(self) -> str:
        if self.device != "disk":
            return f"a {self.device}, not a disk of this VM"
        if self.readonly or self.shareable:
            return "read-only or shared with other VMs"
        return "no storage behind it"


def domain_disks(xml: str) -> list[DiskInfo]:
    return _disks(parse_xml(xml))


def _disks(root: ET.Element) -> list[DiskInfo]:
    disks = []
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        driver = disk.find("driver")
        src = source.attrib if source is not None else {}
        disks.append(
            DiskInfo(
                target=target.get("dev", "") if target is not None else "",
                device=disk.get("device", "disk"),
                path=src.get("file") or src.get("dev") or "",
                pool=src.get("pool", ""),
                volume=src.get("volume", ""),
                readonly=disk.find("readonly") is not None,
                shareable=disk.find("shareable") is not None,
                bus=target.get("bus", "") if target is not None else "",
                format=driver.get("type", "") if driver is not None else "",
                source_type=disk.get("type", ""),
            )
        )
    return disks


@dataclass(frozen=True)
class InterfaceInfo:
    """A NIC of a domain: its MAC, what it is plugged into (a virtual network, a host bridge, a
    macvtap device...), its model and whether its link is up."""

    mac: str
    type: str  # network, bridge, direct, user, ethernet...
    network: str = ""  # type network: the virtual network's name
    bridge: str = ""  # type bridge: the host bridge (a running network NIC also names its bridge)
    device: str = ""  # type direct: the host device macvtap sits on
    model: str = ""  # virtio, e1000, rtl8139...
    link: str = "up"  # up or down (<link state=.../>)
    target: str = ""  # the host-side device of a running domain (vnet0, macvtap0)

    @property
    def attached_to(self) -> str:
        return self.network or self.bridge or self.device or self.type


def domain_interfaces(xml: str) -> list[InterfaceInfo]:
    return _interfaces(parse_xml(xml))


def _interfaces(root: ET.Element) -> list[InterfaceInfo]:
    found = []
    for nic in root.findall("./devices/interface"):
        source = nic.find("source")
        src = source.attrib if source is not None else {}
        mac = nic.find("mac")
        model = nic.find("model")
        link = nic.find("link")
        target = nic.find("target")
        found.append(
            InterfaceInfo(
                mac=(mac.get("address", "") if mac is not None else "").lower(),
                type=nic.get("type", ""),
                network=src.get("network", ""),
                bridge=src.get("bridge", ""),
                device=src.get("dev", "") if nic.get("type") == "direct" else "",
                model=model.get("type", "") if model is not None else "",
                link=link.get("state", "up") if link is not None else "up",
                target=target.get("dev", "") if target is not None else "",
            )
        )
    return found


@dataclass(frozen=True)
class UndefineResult:
    removed: tuple[str, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()
