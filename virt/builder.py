"""Domain XML for a new VM, from a small specification — what virt-install writes, for the choices
the New VM form offers — and the calls that define a domain (persistent) or create it (transient)
with libvirt's own validation, like ``virsh define --validate`` and ``virsh create --validate``.

The XML is built, never templated from strings: every value goes through ElementTree, so a name or
a path cannot inject elements.
"""

from __future__ import annotations

import secrets
import string
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import libvirt
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as parse_xml

from .connection import HostConnection
from .domains import DomainInfo, domain_info_from_xml
from .errors import OperationInvalid, translate

LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
# Buses a disk can be on, and the prefix of their target names (vda, sda, hda).
DISK_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd", "fdc": "fd", "xen": "xvd"}
HOTPLUG_BUSES = ("virtio", "scsi", "usb")  # SATA and IDE disks cannot be plugged into a running VM
NIC_MODELS = ("virtio", "e1000e", "e1000", "rtl8139")
# Spare PCIe root ports on a q35 machine: each hot-plugged PCIe device (a virtio disk or NIC) needs
# one, and libvirt cannot add a port to a running VM. virt-install adds as many.
Q35_SPARE_PORTS = 8
VNC_PASSWORD_LENGTH = 8  # VNC authentication uses at most 8 characters


@dataclass(frozen=True)
class DiskSpec:
    """A disk or CD-ROM of a new VM: a pool's volume (or a path), how the guest sees it, when it boots."""

    device: str = "disk"  # disk | cdrom
    bus: str = "virtio"
    pool: str = ""
    volume: str = ""
    path: str = ""  # a file or block device outside pools ("" with pool + volume)
    format: str = "raw"  # the driver's type: raw | qcow2 | ...
    readonly: bool = False
    boot_order: int = 0  # 0: not a boot device
    target: str = ""  # vda, sdb... ("" = the next free name on its bus)

    @property
    def has_source(self) -> bool:
        return bool(self.path or (self.pool and self.volume))


@dataclass(frozen=True)
class NicSpec:
    """A NIC of a new VM: on a virtual network or a host bridge."""

    type: str = "network"  # network | bridge
    source: str = "default"
    model: str = "virtio"
    mac: str = ""  # "" = a new random MAC in QEMU's range
    boot_order: int = 0


@dataclass(frozen=True)
class DomainSpec:
    """Everything a new VM is made of. ``uuid`` is chosen by the caller so that a job knows the VM
    it is making before libvirt does (to undo it, or to find it after a crash)."""

    name: str
    uuid: str
    memory_mib: int
    vcpus: int
    max_vcpus: int = 0  # > vcpus: vCPUs can be added while it runs
    virttype: str = "kvm"  # kvm | qemu | test ...
    arch: str = "x86_64"
    machine: str = ""  # "" = the host's default
    emulator: str = ""
    firmware: str = "bios"  # bios | efi
    secure_boot: bool = False
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    graphics: bool = True  # VNC
    vnc_password: str = ""
    vnc_listen: str = "127.0.0.1"
    serial: bool = True
    serial_log: str = ""  # a file on the host the serial console is mirrored to (virtlogd)
    guest_agent: bool = True
    usb_tablet: bool = True
    os_id: str = ""  # an osinfo-db id, recorded as libosinfo metadata (as virt-install does)
    clock: str = "utc"  # utc | localtime (Windows)
    cpu_mode: str = ""  # "" = the hypervisor's default; host-passthrough / host-model for kvm
    description: str = ""
    title: str = ""
    spare_ports: int = Q35_SPARE_PORTS
    extra: dict = field(default_factory=dict)  # reserved

    @property
    def q35(self) -> bool:
        return "q35" in self.machine


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def new_mac() -> str:
    """A random MAC in QEMU/KVM's locally administered range 52:54:00 (as libvirt and virt-install use)."""
    tail = secrets.token_bytes(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def new_vnc_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(VNC_PASSWORD_LENGTH))


def disk_targets(disks: tuple[DiskSpec, ...], *, taken: tuple[str, ...] = ()) -> list[str]:
    """The target name of each disk: its own, or the next free one on its bus (vda, vdb, sda...)."""
    used = set(taken) | {d.target for d in disks if d.target}
    names = []
    for disk in disks:
        if disk.target:
            names.append(disk.target)
            continue
        name = next_target(DISK_PREFIX.get(disk.bus, "sd"), used)
        used.add(name)
        names.append(name)
    return names


def next_target(prefix: str, used: set[str]) -> str:
    for i in range(26 * 27):
        suffix = _letters(i)
        if f"{prefix}{suffix}" not in used:
            return f"{prefix}{suffix}"
    raise OperationInvalid(f"no free disk name left with prefix {prefix}")


def _letters(i: int) -> str:  # 0 → a, 25 → z, 26 → aa (libvirt's own scheme)
    out = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def disk_element(disk: DiskSpec, target: str) -> ET.Element:
    """The <disk> element of one disk (also what a hot-plug attaches)."""
    kind = "volume" if disk.pool and disk.volume else "file"
    el = ET.Element("disk", {"type": kind, "device": disk.device})
    _sub(el, "driver", name="qemu", type=disk.format or "raw")
    if disk.pool and disk.volume:
        _sub(el, "source", pool=disk.pool, volume=disk.volume)
    elif disk.path:
        _sub(el, "source", file=disk.path)
    _sub(el, "target", dev=target, bus=disk.bus)
    if disk.readonly or disk.device == "cdrom":
        _sub(el, "readonly")
    if disk.boot_order:
        _sub(el, "boot", order=str(disk.boot_order))
    return el


def nic_element(nic: NicSpec) -> ET.Element:
    """The <interface> element of one NIC (also what a hot-plug attaches)."""
    el = ET.Element("interface", {"type": nic.type})
    _sub(el, "mac", address=nic.mac or new_mac())
    _sub(el, "source", **{"network" if nic.type == "network" else "bridge": nic.source})
    _sub(el, "model", type=nic.model)
    if nic.boot_order:
        _sub(el, "boot", order=str(nic.boot_order))
    return el


def _os(root: ET.Element, spec: DomainSpec) -> None:
    attrs = {"firmware": "efi"} if spec.firmware == "efi" else {}
    os_el = _sub(root, "os", **attrs)
    type_attrs = {"arch": spec.arch}
    if spec.machine:
        type_attrs["machine"] = spec.machine
    _sub(os_el, "type", "hvm", **type_attrs)
    if spec.firmware == "efi":
        fw = _sub(os_el, "firmware")
        _sub(fw, "feature", enabled="yes" if spec.secure_boot else "no", name="secure-boot")
        if spec.secure_boot:
            _sub(fw, "feature", enabled="yes", name="enrolled-keys")
    if not any(d.boot_order for d in spec.disks) and not any(n.boot_order for n in spec.nics):
        _sub(os_el, "boot", dev="hd")


def _features(root: ET.Element, spec: DomainSpec) -> None:
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.q35 and spec.arch in ("x86_64", "i686"):
        _sub(features, "vmport", state="off")
    if spec.secure_boot:
        _sub(features, "smm", state="on")  # secure boot firmware needs SMM


def _devices(root: ET.Element, spec: DomainSpec) -> None:
    devices = _sub(root, "devices")
    if spec.emulator:
        _sub(devices, "emulator", spec.emulator)
    for disk, target in zip(spec.disks, disk_targets(spec.disks), strict=True):
        devices.append(disk_element(disk, target))
    if any(d.bus == "scsi" for d in spec.disks):
        _sub(devices, "controller", type="scsi", model="virtio-scsi")
    for nic in spec.nics:
        devices.append(nic_element(nic))
    if spec.q35:
        _sub(devices, "controller", type="pci", index="0", model="pcie-root")
        for _ in range(spec.spare_ports):
            _sub(devices, "controller", type="pci", model="pcie-root-port")
    if spec.serial:
        serial = _sub(devices, "serial", type="pty")
        if spec.serial_log:
            _sub(serial, "log", file=spec.serial_log, append="off")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if spec.guest_agent:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if spec.graphics:
        attrs = {"type": "vnc", "port": "-1", "autoport": "yes", "listen": spec.vnc_listen}
        if spec.vnc_password:
            attrs["passwd"] = spec.vnc_password
        graphics = _sub(devices, "graphics", **attrs)
        _sub(graphics, "listen", type="address", address=spec.vnc_listen)
        video = _sub(devices, "video")
        _sub(video, "model", type="vga")
        if spec.usb_tablet:
            _sub(devices, "input", type="tablet", bus="usb")
    _sub(devices, "memballoon", model="virtio")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")


def domain_xml(spec: DomainSpec) -> str:
    """The domain XML of ``spec``."""
    root = ET.Element("domain", {"type": spec.virttype})
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    if spec.title:
        _sub(root, "title", spec.title)
    if spec.description:
        _sub(root, "description", spec.description)
    if spec.os_id:
        ET.register_namespace("libosinfo", LIBOSINFO_NS)
        meta = _sub(root, "metadata")
        info = ET.SubElement(meta, f"{{{LIBOSINFO_NS}}}libosinfo")
        ET.SubElement(info, f"{{{LIBOSINFO_NS}}}os", {"id": spec.os_id})
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "currentMemory", str(spec.memory_mib), unit="MiB")
    max_vcpus = max(spec.vcpus, spec.max_vcpus)
    vcpu_attrs = {"placement": "static"}
    if max_vcpus > spec.vcpus:
        vcpu_attrs["current"] = str(spec.vcpus)
    _sub(root, "vcpu", str(max_vcpus), **vcpu_attrs)
    _os(root, spec)
    _features(root, spec)
    if spec.cpu_mode:
        _sub(root, "cpu", mode=spec.cpu_mode)
    _sub(root, "clock", offset=spec.clock)
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    pm = _sub(root, "pm")
    _sub(pm, "suspend-to-mem", enabled="no")
    _sub(pm, "suspend-to-disk", enabled="no")
    _devices(root, spec)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


# --- a domain XML from a user -----------------------------------------------------------------------------
@dataclass(frozen=True)
class XmlIdentity:
    """What a pasted domain XML says it is, read before libvirt sees it."""

    name: str
    uuid: str  # "" when the XML has none (libvirt then picks one)
    type: str


def xml_identity(xml: str) -> XmlIdentity:
    """The name, UUID and type of a domain XML; OperationInvalid in plain words when it is not one."""
    if not xml.strip():
        raise OperationInvalid("the XML is empty; paste or upload a domain XML")
    try:
        root = parse_xml(xml)
    except ParseError as exc:
        raise OperationInvalid(f"the XML is not well-formed: {exc}") from None
    except Exception as exc:  # defusedxml refuses entities and DTDs
        raise OperationInvalid(f"the XML is refused: {exc}") from None
    if root.tag != "domain":
        raise OperationInvalid(f"the XML describes a <{root.tag}>, not a <domain>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise OperationInvalid("the domain XML has no <name>")
    raw_uuid = (root.findtext("uuid") or "").strip()
    if raw_uuid:
        try:
            raw_uuid = str(uuidlib.UUID(raw_uuid))
        except ValueError:
            raise OperationInvalid(f"the domain XML's <uuid> {raw_uuid[:60]!r} is not a UUID") from None
    return XmlIdentity(name=name, uuid=raw_uuid, type=root.get("type", ""))


def with_uuid(xml: str, uuid: str) -> str:
    """``xml`` with ``<uuid>`` set (a pasted XML without one: the job must know its VM's UUID)."""
    root = parse_xml(xml)
    el = root.find("uuid")
    if el is None:
        el = ET.Element("uuid")
        root.insert(1, el)
    el.text = uuid
    return ET.tostring(root, encoding="unicode")


# --- libvirt ----------------------------------------------------------------------------------------------
def _info(dom: libvirt.virDomain) -> DomainInfo:
    state, reason = dom.state()
    return domain_info_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), state=state, reason=reason,
                                persistent=bool(dom.isPersistent()), autostart=bool(dom.autostart()),
                                managed_save=False)  # fmt: skip


def domain_define(conn: HostConnection, xml: str, *, validate: bool = True) -> DomainInfo:
    """Define a persistent domain (``virsh define``), validated against libvirt's schema first."""
    flags = libvirt.VIR_DOMAIN_DEFINE_VALIDATE if validate else 0
    try:
        dom = conn.raw.defineXMLFlags(xml, flags)
        return _info(dom)
    except libvirt.libvirtError as exc:
        raise translate(exc, context="define the domain") from None


def domain_create(conn: HostConnection, xml: str, *, validate: bool = True, paused: bool = False) -> DomainInfo:
    """Create and start a transient domain (``virsh create``): it is gone once it stops."""
    flags = libvirt.VIR_DOMAIN_START_VALIDATE if validate else 0
    if paused:
        flags |= libvirt.VIR_DOMAIN_START_PAUSED
    try:
        dom = conn.raw.createXML(xml, flags)
        return _info(dom)
    except libvirt.libvirtError as exc:
        raise translate(exc, context="create the domain") from None


def domain_remove(conn: HostConnection, uuid: str) -> list[str]:
    """Stop and undefine a domain a failed creation made, with its NVRAM; what was done, in words.
    Its volumes are the caller's (only the ones it created may go)."""
    try:
        dom = conn.raw.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return []
        raise translate(exc, context=f"domain {uuid}") from None
    done = []
    try:
        if dom.isActive():
            dom.destroy()
            done.append("stopped the VM")
        if dom.isPersistent():
            flags = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError:
                dom.undefine()  # drivers without NVRAM (test, lxc) refuse the flag
            done.append("undefined it")
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise translate(exc, context=f"remove domain {uuid}") from None
    return done


def domain_names(conn: HostConnection) -> set[str]:
    try:
        return {d.name() for d in conn.raw.listAllDomains(0)}
    except libvirt.libvirtError as exc:
        raise translate(exc, context="list domains") from None
