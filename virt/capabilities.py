"""What a host can run: its guest architectures, hypervisor types and machine types (libvirt's
capabilities), and per architecture, hypervisor type and machine family what a domain there may use
(libvirt's domain capabilities: firmware, Secure Boot, disk buses, graphics, video, CPU modes...).

The New VM form is built from this, so it never offers what the host cannot do. The result is a
frozen HostCapabilities, JSON-safe through to_dict/from_dict so a host's answer can be stored.
libvirt errors become virt.errors exceptions; a driver without domain capabilities (the test
driver, LXC) gives a HostCapabilities with reported=False and the guests alone.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import libvirt

from .connection import HostConnection
from .domains import parse_xml
from .errors import HostUnreachable, translate

log = logging.getLogger(__name__)

X86 = ("x86_64", "i686")
# Per architecture, the machine families worth a domain-capabilities read (by their aliases, which
# libvirt resolves to the newest version). Other architectures: their default machine.
MACHINE_FAMILIES = {"x86_64": ("pc", "q35"), "i686": ("pc", "q35")}
# A read failing with these means no read will work on this connection: the driver lacks the call,
# or the connection is read-only. Any other failure concerns one combination (kvm without /dev/kvm).
_NOTHING_TO_READ = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_DENIED}
_VERSION_SUFFIX = re.compile(r"-(rhel)?\d+(\.\d+)*$")

T = TypeVar("T")


# --- what is read ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineType:
    name: str  # as listed: "pc", "pc-i440fx-7.2"
    canonical: str  # what an alias stands for ("pc" → "pc-i440fx-7.2"); a versioned machine's own name
    max_cpus: int = 0
    deprecated: bool = False

    @property
    def is_alias(self) -> bool:
        return self.canonical != self.name


@dataclass(frozen=True)
class GuestCapability:
    """One <guest> of the capabilities: an architecture and OS type the host runs, and how."""

    arch: str
    os_type: str  # hvm (full virtualization), exe (containers), xen (paravirtual)
    domain_types: tuple[str, ...]  # kvm, qemu, test, lxc...
    machines: tuple[MachineType, ...] = ()
    emulator: str = ""

    def machine(self, name: str) -> MachineType | None:
        return next((m for m in self.machines if m.name == name), None)


@dataclass(frozen=True)
class DomainCapabilities:
    """What a domain of one architecture, hypervisor type and machine may use on the host."""

    arch: str = ""
    virttype: str = ""  # kvm, qemu...
    machine: str = ""  # canonical, as the domain capabilities say: "pc-q35-7.2"
    emulator: str = ""
    max_vcpus: int = 0
    # "bios" always for x86 (SeaBIOS is not listed by the domain capabilities), "efi" when the
    # firmware enum lists it or a loader is usable
    firmware: tuple[str, ...] = ()
    secure_boot: bool = False  # a Secure Boot loader exists (and on x86, the machine has SMM: q35)
    loaders: tuple[str, ...] = ()  # firmware images (OVMF_CODE...)
    disk_buses: tuple[str, ...] = ()  # virtio, sata, scsi, ide, usb, fdc
    disk_devices: tuple[str, ...] = ()  # disk, cdrom, floppy, lun
    graphics: tuple[str, ...] = ()  # vnc, spice, ...
    video_models: tuple[str, ...] = ()  # virtio, qxl, vga, ...
    hostdev: bool = False  # host devices (PCI, USB) can be passed through
    features: tuple[str, ...] = ()  # supported <features>: vmcoreinfo, genid, sev, gic, hyperv, ...
    cpu_modes: tuple[str, ...] = ()  # host-passthrough, host-model, maximum, custom: the supported ones
    tpm_models: tuple[str, ...] = ()  # tpm-tis, tpm-crb (empty: no TPM device)
    rng_models: tuple[str, ...] = ()  # virtio... (empty: no RNG device)

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DomainCapabilities:
        """Inverse of to_dict; keys it does not know are ignored and missing ones take their defaults,
        so what an older Virtfleet stored still reads."""
        return _from_dict(cls, d)


@dataclass(frozen=True)
class HostCapabilities:
    guests: tuple[GuestCapability, ...]
    domains: tuple[DomainCapabilities, ...]  # empty when the driver has no domain capabilities
    reported: bool  # domain capabilities were read
    host_arch: str = ""  # the host's own CPU architecture
    # x86: the host CPU has vmx or svm (None: not x86, or not known). libvirt offers kvm wherever
    # /dev/kvm opens — also on a CPU without them (an emulated /dev/kvm), where KVM guests hang.
    hardware_virt: bool | None = None

    def to_dict(self) -> dict:
        """A JSON-safe dict (lists, strings, numbers, booleans) for storing in the database."""
        return {
            "guests": [_to_dict(g) | {"machines": [_to_dict(m) for m in g.machines]} for g in self.guests],
            "domains": [d.to_dict() for d in self.domains],
            "reported": self.reported,
            "host_arch": self.host_arch,
            "hardware_virt": self.hardware_virt,
        }

    @classmethod
    def from_dict(cls, d: dict) -> HostCapabilities:
        guests = tuple(
            _from_dict(
                GuestCapability, g | {"machines": tuple(_from_dict(MachineType, m) for m in g.get("machines", ()))}
            )
            for g in d.get("guests", ())
        )
        return cls(
            guests=guests,
            domains=tuple(DomainCapabilities.from_dict(x) for x in d.get("domains", ())),
            reported=bool(d.get("reported", False)),
            host_arch=str(d.get("host_arch", "")),
            hardware_virt=d.get("hardware_virt"),
        )

    def canonical_machine(self, arch: str, machine: str) -> str:
        """The versioned machine an alias of ``arch`` stands for ("q35" → "pc-q35-7.2"); other names as given."""
        for guest in self.guests:
            found = guest.machine(machine) if guest.arch == arch else None
            if found is not None:
                return found.canonical
        return machine

    def domain(self, *, arch: str, machine: str = "", virttype: str = "") -> DomainCapabilities | None:
        """The domain capabilities for ``arch`` (kvm's before others unless ``virttype`` is given), of
        ``machine`` when given: an alias ("q35"), a canonical name, or another version of a family
        read ("pc-q35-5.2" finds pc-q35-7.2's). None when the host did not report such a domain."""
        found = sorted((d for d in self.domains if d.arch == arch and virttype in ("", d.virttype)),
                       key=lambda d: _virttype_rank(d.virttype))  # fmt: skip
        if not machine:
            return found[0] if found else None
        canonical = self.canonical_machine(arch, machine)
        exact = [d for d in found if d.machine in (machine, canonical)]
        if exact:
            return exact[0]
        family = machine_family(canonical)
        return next((d for d in found if machine_family(d.machine) == family), None)

    def arches(self) -> list[str]:
        """The architectures a new domain may have: those with domain capabilities when they were
        read, else every guest architecture. The host's own first."""
        found = [d.arch for d in self.domains] if self.reported else [g.arch for g in self.guests]
        unique = list(dict.fromkeys(found))
        return sorted(unique, key=lambda a: a != self.host_arch)

    def virttypes(self, arch: str) -> list[str]:
        """The hypervisor types for ``arch``, kvm first when present (last when the x86 host's CPU
        has no vmx/svm: such a kvm is no real one); when domain capabilities were read, only those
        they were read for (a host listing kvm without /dev/kvm has none for it)."""
        if self.reported:
            found = [d.virttype for d in self.domains if d.arch == arch]
        else:
            found = [t for g in self.guests if g.arch == arch for t in g.domain_types]
        ranked = sorted(dict.fromkeys(found), key=_virttype_rank)
        if self.hardware_virt is False and "kvm" in ranked:
            ranked = [t for t in ranked if t != "kvm"] + ["kvm"]
        return ranked

    def machines(self, arch: str, virttype: str = "") -> list[str]:
        """The machines to offer for ``arch``: with domain capabilities, their machines by alias where
        one stands for them ("pc", "q35"); without, the guests' aliases (or, lacking those, every
        machine that is not deprecated)."""
        aliases = {m.canonical: m.name for g in self.guests if g.arch == arch for m in g.machines if m.is_alias}
        if self.reported:
            found = [aliases.get(d.machine, d.machine) for d in self.domains
                     if d.arch == arch and virttype in ("", d.virttype)]  # fmt: skip
            return list(dict.fromkeys(found))
        if aliases:
            return list(dict.fromkeys(aliases.values()))
        return list(
            dict.fromkeys(m.name for g in self.guests if g.arch == arch for m in g.machines if not m.deprecated)
        )


def machine_family(machine: str) -> str:
    """A machine's name without its version: "pc-q35-7.2" → "pc-q35", "virt-8.0" → "virt"."""
    return _VERSION_SUFFIX.sub("", machine)


def _virttype_rank(virttype: str) -> int:
    return 0 if virttype == "kvm" else 1


def _to_dict(obj: Any) -> dict:
    return {f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in fields(obj)}


def _from_dict(cls: type[T], d: dict) -> T:
    if not isinstance(d, dict):
        raise ValueError(f"a {cls.__name__} is stored as a dict, not {type(d).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
    return cls(**kwargs)


# --- parsing --------------------------------------------------------------------------------------------
def _text(root: ET.Element, path: str) -> str:
    return (root.findtext(path) or "").strip()


def _machine(el: ET.Element) -> MachineType:
    name = (el.text or "").strip()
    return MachineType(name=name, canonical=el.get("canonical", "") or name,
                       max_cpus=int(el.get("maxCpus", "0") or 0), deprecated=el.get("deprecated") == "yes")  # fmt: skip


def _guest(el: ET.Element) -> GuestCapability:
    arch = el.find("arch")
    if arch is None:
        arch = ET.Element("arch")
    # machines usually sit in <arch>; older libvirt also lists some under a <domain> of their own
    machines = [_machine(m) for m in arch.findall("machine")]
    machines += [_machine(m) for d in arch.findall("domain") for m in d.findall("machine")]
    unique: dict[str, MachineType] = {}
    for m in machines:
        unique.setdefault(m.name, m)  # the first listing of a name wins
    emulator = _text(arch, "emulator") or next((_text(d, "emulator") for d in arch.findall("domain")), "")
    return GuestCapability(
        arch=arch.get("name", ""),
        os_type=_text(el, "os_type"),
        domain_types=tuple(dict.fromkeys(d.get("type", "") for d in arch.findall("domain"))),
        machines=tuple(unique.values()),
        emulator=emulator,
    )


def _supported(root: ET.Element | None, path: str) -> ET.Element | None:
    el = root.find(path) if root is not None else None
    return el if el is not None and el.get("supported") == "yes" else None


def _enum(el: ET.Element | None, name: str) -> tuple[str, ...]:
    if el is None:
        return ()
    return tuple((v.text or "").strip() for v in el.findall(f"enum[@name='{name}']/value"))


def _firmware(arch: str, machine: str, os_el: ET.Element | None) -> tuple[tuple[str, ...], bool, tuple[str, ...]]:
    """(firmware choices, Secure Boot, loaders) from <os>."""
    loader = _supported(os_el, "loader")
    loaders = tuple((v.text or "").strip() for v in loader.findall("value")) if loader is not None else ()
    choices = ["bios"] if arch in X86 and not machine.startswith("xenpv") else []
    for value in _enum(os_el, "firmware"):
        if value not in choices:
            choices.append(value)
    if loaders and "efi" not in choices:
        choices.append("efi")
    # x86 Secure Boot needs SMM, which only q35 has (libvirt refuses secure='yes' on i440fx)
    smm = arch not in X86 or "q35" in machine
    secure = "efi" in choices and "yes" in _enum(loader, "secure") and smm
    return tuple(choices), secure, loaders


def domain_capabilities_from_xml(xml: str) -> DomainCapabilities:
    """One <domainCapabilities> (virConnectGetDomainCapabilities) as a DomainCapabilities."""
    root = parse_xml(xml)
    arch, machine = _text(root, "arch"), _text(root, "machine")
    vcpu = root.find("vcpu")
    firmware, secure, loaders = _firmware(arch, machine, _supported(root, "os"))
    disk = _supported(root, "devices/disk")
    features = root.find("features")
    return DomainCapabilities(
        arch=arch,
        virttype=_text(root, "domain"),
        machine=machine,
        emulator=_text(root, "path"),
        max_vcpus=int(vcpu.get("max", "0") or 0) if vcpu is not None else 0,
        firmware=firmware,
        secure_boot=secure,
        loaders=loaders,
        disk_buses=_enum(disk, "bus"),
        disk_devices=_enum(disk, "diskDevice"),
        graphics=_enum(_supported(root, "devices/graphics"), "type"),
        video_models=_enum(_supported(root, "devices/video"), "modelType"),
        hostdev=_supported(root, "devices/hostdev") is not None,
        features=tuple(f.tag for f in features if f.get("supported") == "yes") if features is not None else (),
        cpu_modes=tuple(m.get("name", "") for m in root.findall("cpu/mode") if m.get("supported") == "yes"),
        tpm_models=_enum(_supported(root, "devices/tpm"), "model"),
        rng_models=_enum(_supported(root, "devices/rng"), "model"),
    )


def capabilities_from_xml(caps_xml: str, domcaps_xmls: list[str]) -> HostCapabilities:
    """The host's capabilities XML and the domain capabilities XMLs read for it, parsed (pure)."""
    root = parse_xml(caps_xml)
    domains = tuple(domain_capabilities_from_xml(x) for x in domcaps_xmls)
    return HostCapabilities(
        guests=tuple(_guest(g) for g in root.findall("guest")),
        domains=domains,
        reported=bool(domains),
        host_arch=(arch := _text(root, "host/cpu/arch")),
        hardware_virt=_hardware_virt(root, arch),
    )


def _hardware_virt(root: ET.Element, arch: str) -> bool | None:
    """On x86: whether the host CPU libvirt describes has vmx (Intel VT-x) or svm (AMD-V)."""
    if arch not in ("x86_64", "i686") or root.find("host/cpu/model") is None:
        return None
    return bool({"vmx", "svm"} & {f.get("name", "") for f in root.findall("host/cpu/feature")})


def domain_capability_queries(caps_xml: str) -> list[tuple[str, str, str, str]]:
    """The (emulator, arch, machine, virttype) combinations worth a domain-capabilities read: every
    guest architecture and hypervisor type, on x86 the pc and q35 families, elsewhere the default
    machine (machine "")."""
    queries: list[tuple[str, str, str, str]] = []
    for guest in parse_xml(caps_xml).findall("guest"):
        arch = guest.find("arch")
        if arch is None:
            continue
        names = {(m.text or "").strip() for m in arch.iter("machine")}
        machines = [m for m in MACHINE_FAMILIES.get(arch.get("name", ""), ()) if m in names] or [""]
        for domain in arch.findall("domain"):
            emulator = _text(domain, "emulator") or _text(arch, "emulator")
            for machine in machines:
                query = (emulator, arch.get("name", ""), machine, domain.get("type", ""))
                if query not in queries:
                    queries.append(query)
    return queries


# --- reads --------------------------------------------------------------------------------------------
def host_capabilities(conn: HostConnection) -> HostCapabilities:
    """What the host can run, read now: its capabilities, and the domain capabilities of each
    combination domain_capability_queries names. A combination the host refuses (kvm on a host
    without /dev/kvm) is left out; a driver that has no domain capabilities at all (or a read-only
    connection) gives reported=False. Raises a VirtError when the capabilities cannot be read."""
    try:
        caps_xml = conn.raw.getCapabilities()
    except libvirt.libvirtError as exc:
        raise translate(exc, context="read the host's capabilities") from None
    domcaps: list[str] = []
    for emulator, arch, machine, virttype in domain_capability_queries(caps_xml):
        what = f"domain capabilities of {virttype} {arch} {machine or '(default machine)'}"
        try:
            domcaps.append(conn.raw.getDomainCapabilities(emulator or None, arch, machine or None, virttype, 0))
        except libvirt.libvirtError as exc:
            err = translate(exc, context=what)
            if exc.get_error_code() in _NOTHING_TO_READ:
                log.debug("%s: domain capabilities not reported: %s", conn.uri, err)
                break
            if isinstance(err, HostUnreachable):
                raise err from None
            log.debug("%s: no %s", conn.uri, err)
    return capabilities_from_xml(caps_xml, domcaps)
