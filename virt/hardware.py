"""Changing an existing VM: its XML (redefined with validation, its secrets kept), vCPUs and memory
(live where the VM allows, else for its next boot), disks, NICs and CD-ROM media (hot where
possible), boot order, name and description; and what is pending until the next boot.

Each change says whether it applied live, and refusals say why a hot change is impossible before
libvirt is asked (no free PCIe port, no room for more vCPUs or memory, a bus without hot-plug).
"""

from __future__ import annotations

import contextlib
import difflib
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt
from defusedxml.ElementTree import fromstring as parse_xml

from .builder import HOTPLUG_BUSES, DiskSpec, NicSpec, disk_element, disk_targets, nic_element
from .connection import HostConnection
from .domains import element_kib, redact_graphics_endpoint, strip_secrets
from .errors import DomainNotFound, OperationInvalid, translate

UNPLUG_WAIT = 10.0  # seconds a hot unplug waits for the guest to release the device
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


@dataclass(frozen=True)
class Applied:
    """Where a change took effect: now (live), in the definition (config), or both."""

    live: bool
    config: bool
    note: str = ""

    @property
    def words(self) -> str:
        if self.live and self.config:
            where = "now and in its definition"
        elif self.live:
            where = "now (the VM is transient)"
        else:
            where = "in its definition: it takes effect at the next boot"
        return where + (f"; {self.note}" if self.note else "")


def _call(what: str, fn, *args):
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=what) from None


def _dom(conn: HostConnection, uuid: str) -> libvirt.virDomain:
    return _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)


@dataclass(frozen=True)
class _State:
    running: bool
    persistent: bool

    @property
    def flags(self) -> int:
        return (LIVE if self.running else 0) | (CONFIG if self.persistent else 0)


def _state(dom: libvirt.virDomain) -> _State:
    return _State(running=bool(_call("read the domain", dom.isActive)),
                  persistent=bool(_call("read the domain", dom.isPersistent)))  # fmt: skip


def config_xml(conn: HostConnection, uuid: str, *, secure: bool = False) -> str:
    """The definition the VM boots with next (the live XML for a transient VM)."""
    dom = _dom(conn, uuid)
    flags = libvirt.VIR_DOMAIN_XML_SECURE if secure else 0
    if _state(dom).persistent:
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    return _call("read the domain XML", dom.XMLDesc, flags)


# --- the XML editor ---------------------------------------------------------------------------------------
def editable_xml(conn: HostConnection, uuid: str) -> str:
    """The definition as the editor shows it: no VNC password, no graphics endpoint."""
    return redact_graphics_endpoint(strip_secrets(config_xml(conn, uuid, secure=True)))


def restore_secrets(edited: str, current_secure: str) -> str:
    """Put back into ``edited`` what the editor hid: a graphics device of the same type that has no
    ``passwd`` gets the current password, and endpoint attributes shown as "hidden" get their values."""
    new, old = parse_xml(edited), parse_xml(current_secure)
    old_graphics = {g.get("type"): g for g in old.findall("./devices/graphics")}
    for g in new.findall("./devices/graphics"):
        before = old_graphics.get(g.get("type"))
        if before is None:
            continue
        if "passwd" not in g.attrib and "passwd" in before.attrib:
            g.set("passwd", before.get("passwd", ""))
        for name, value in list(g.attrib.items()):
            if value == "hidden":
                _restore(g, before, name)
        for i, lst in enumerate(g.findall("listen")):
            olds = before.findall("listen")
            for name, value in list(lst.attrib.items()):
                if value == "hidden":
                    _restore(lst, olds[i] if i < len(olds) else None, name)
    return ET.tostring(new, encoding="unicode")


def _restore(el: ET.Element, before: ET.Element | None, name: str) -> None:
    if before is not None and name in before.attrib:
        el.set(name, before.get(name, ""))
    else:
        del el.attrib[name]


def xml_diff(before: str, after: str, *, name: str = "definition") -> str:
    """A unified diff of two XML texts (what the editor shows before it saves)."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"current {name}", f"edited {name}",
                                 lineterm="", n=2)  # fmt: skip
    return "\n".join(lines)


def redefine(conn: HostConnection, uuid: str, xml: str) -> None:
    """Save an edited definition of domain ``uuid`` (validated by libvirt); refuses another UUID or name."""
    root = parse_xml(xml)
    dom = _dom(conn, uuid)
    given = (root.findtext("uuid") or "").strip().lower()
    if given and given != uuid.lower():
        raise OperationInvalid(f"the XML's <uuid> is {given}, not this VM's {uuid}; a VM keeps its UUID")
    name = (root.findtext("name") or "").strip()
    if name != _call("read the domain", dom.name):
        raise OperationInvalid("the XML renames the VM; rename it from its hardware page instead")
    if root.find("uuid") is None:
        el = ET.Element("uuid")
        el.text = uuid
        root.insert(1, el)
    if not _state(dom).persistent:
        raise OperationInvalid("the VM is transient: it has no definition to edit")
    _call("save the definition", conn.raw.defineXMLFlags, ET.tostring(root, encoding="unicode"),
          libvirt.VIR_DOMAIN_DEFINE_VALIDATE)  # fmt: skip


# --- vCPUs and memory -------------------------------------------------------------------------------------
def set_vcpus(conn: HostConnection, uuid: str, count: int) -> Applied:
    """Set the VM's vCPU count: live up to its maximum, else in its definition (raising the maximum)."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    root = parse_xml(config_xml(conn, uuid))
    vcpu = root.find("vcpu")
    maximum = int(vcpu.text or 1) if vcpu is not None else 1
    if st.running:
        live_max = _call("read the vCPUs", dom.vcpusFlags, LIVE | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
        if count <= live_max:
            _call("set the vCPUs", dom.setVcpusFlags, count, st.flags)
            return Applied(live=True, config=st.persistent)
        if not st.persistent:
            raise OperationInvalid(f"the VM runs with at most {live_max} vCPUs and is transient: it cannot grow")
        note = f"it runs with at most {live_max} vCPUs"
    else:
        note = ""
    if count > maximum:
        _call("raise the vCPU maximum", dom.setVcpusFlags, count, CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
    _call("set the vCPUs", dom.setVcpusFlags, count, CONFIG)
    return Applied(live=False, config=True, note=note)


def set_memory(conn: HostConnection, uuid: str, mib: int) -> Applied:
    """Set the VM's memory: live (balloon) up to the size it booted with, else in its definition."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    kib = mib * 1024
    if st.running:
        live_max = _call("read the memory", dom.maxMemory)
        if kib <= live_max:
            # live and definition apart: some drivers refuse both flags in one call
            _call("set the memory", dom.setMemoryFlags, kib, LIVE)
            if st.persistent:
                _call("set the memory in the definition", dom.setMemoryFlags, kib, CONFIG)
            return Applied(live=True, config=st.persistent, note="the guest's balloon driver gives it back")
        if not st.persistent:
            raise OperationInvalid("the VM is transient and cannot grow beyond the memory it booted with")
        note = f"growing beyond the {live_max // 1024} MiB it booted with needs a reboot (no memory hot-plug)"
    else:
        note = ""
    root = parse_xml(config_xml(conn, uuid))
    if kib > element_kib(root.find("memory")):
        _call("raise the memory size", dom.setMemoryFlags, kib, CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    _call("set the memory", dom.setMemoryFlags, kib, CONFIG)
    return Applied(live=False, config=True, note=note)


# --- devices ----------------------------------------------------------------------------------------------
def _free_pci_slots(xml: str) -> int | None:
    """Free hot-plug slots of a running domain (q35: empty PCIe root ports; pc: pci-root slots). None: unknown bus."""
    root = parse_xml(xml)
    controllers = root.findall("./devices/controller[@type='pci']")
    used_buses = {a.get("bus") for a in root.findall(".//address[@type='pci']")}
    ports = [c for c in controllers if c.get("model") in ("pcie-root-port", "pcie-switch-downstream-port")]
    if any(c.get("model") == "pcie-root" for c in controllers):
        return sum(1 for c in ports if _hex(c.get("index")) not in {_hex(b) for b in used_buses if b})
    if any(c.get("model") == "pci-root" for c in controllers):
        slots = {_hex(a.get("slot")) for a in root.findall(".//address[@type='pci']") if _hex(a.get("bus")) == 0}
        return 31 - len(slots)
    return None


def _hex(text: str | None) -> int:
    try:
        return int(text or "0", 0)
    except ValueError:
        return -1


def hotplug_refusal(live_xml: str, *, device: str, bus: str = "") -> str:
    """Why ``device`` ("disk" on ``bus``, "nic") cannot be plugged into the running VM ("" = it can)."""
    if device == "disk" and bus not in HOTPLUG_BUSES:
        return f"a {bus.upper()} disk cannot be plugged into a running VM (use virtio or SCSI, or add it for the next boot)"
    if device == "disk" and bus == "scsi":
        if parse_xml(live_xml).find("./devices/controller[@type='scsi']") is None:
            return "the VM has no SCSI controller to plug a SCSI disk into (use virtio, or add it for the next boot)"
        return ""
    if device == "disk" and bus == "usb":
        return ""
    free = _free_pci_slots(live_xml)
    if free == 0:
        return "the VM has no free PCIe slot for a new device (a q35 VM needs a spare pcie-root-port; add it for the next boot)"
    return ""


def _taken_targets(xml: str) -> tuple[str, ...]:
    return tuple(t.get("dev", "") for t in parse_xml(xml).findall("./devices/disk/target"))


def disk_attach(conn: HostConnection, uuid: str, disk: DiskSpec, *, live: bool) -> tuple[Applied, str]:
    """Attach a disk (live too when ``live`` and the VM runs); returns where, and its target name."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    xml = _call("read the domain XML", dom.XMLDesc, 0)
    taken = _taken_targets(xml) + (_taken_targets(config_xml(conn, uuid)) if st.persistent else ())
    target = disk_targets((disk,), taken=taken)[0]
    element = ET.tostring(disk_element(disk, target), encoding="unicode")
    flags = (CONFIG if st.persistent else 0) | (LIVE if st.running and live else 0)
    if st.running and live:
        why = hotplug_refusal(xml, device="disk", bus=disk.bus)
        if why:
            raise OperationInvalid(why)
    if not flags:
        raise OperationInvalid("the VM is transient and runs: only a live attach is possible")
    _call(f"attach disk {target}", dom.attachDeviceFlags, element, flags)
    return Applied(live=bool(flags & LIVE), config=bool(flags & CONFIG)), target


def _find(xml: str, path: str, match) -> ET.Element | None:
    return next((el for el in parse_xml(xml).findall(path) if match(el)), None)


def _is_disk(target: str):
    return lambda el: _attr(el, "target", "dev") == target


def _is_nic(mac: str):
    return lambda el: _attr(el, "mac", "address").lower() == mac.lower()


def _attr(el: ET.Element, child: str, name: str) -> str:
    found = el.find(child)
    return (found.get(name) or "") if found is not None else ""


def _detach(conn: HostConnection, uuid: str, path: str, match, what: str) -> Applied:
    dom = _dom(conn, uuid)
    st = _state(dom)
    done_live = done_config = False
    if st.persistent:
        el = _find(config_xml(conn, uuid), path, match)
        if el is not None:
            _call(
                f"remove {what} from the definition", dom.detachDeviceFlags, ET.tostring(el, encoding="unicode"), CONFIG
            )
            done_config = True
    note = ""
    if st.running:
        el = _find(_call("read the domain XML", dom.XMLDesc, 0), path, match)
        if el is not None:
            done_live = _unplug(conn, dom, el, path, match, what)
            if not done_live:
                note = f"the guest has not released it after {UNPLUG_WAIT:.0f} s: it goes when the guest lets go, or at the next boot"
            else:
                note = "the guest released it (libvirt's device-removed event)"
    if not (done_live or done_config) and not note:
        raise OperationInvalid(f"the VM has no {what}")
    return Applied(live=done_live, config=done_config, note=note)


def _unplug(conn: HostConnection, dom: libvirt.virDomain, el: ET.Element, path: str, match, what: str) -> bool:
    """Ask the guest to release a device and wait for libvirt's device-removed event about it (a hot
    unplug is asynchronous: the guest must let go). The live XML is checked too, in case the event
    was missed (a connection without an event loop)."""
    alias_el = el.find("alias")
    alias = alias_el.get("name", "") if alias_el is not None else ""
    removed = threading.Event()

    def on_removed(_conn, _dom, dev_alias, _opaque) -> None:
        if dev_alias == alias:
            removed.set()

    callback_id = None
    try:
        callback_id = conn.raw.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed, None)
    except libvirt.libvirtError:
        pass  # a driver without events: the live XML alone says it
    try:
        _call(f"unplug {what}", dom.detachDeviceFlags, ET.tostring(el, encoding="unicode"), LIVE)
        deadline = time.monotonic() + UNPLUG_WAIT
        while time.monotonic() < deadline:
            if removed.wait(0.25) or _gone(dom, path, match):
                return True
        return False
    finally:
        if callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.raw.domainEventDeregisterAny(callback_id)


def _gone(dom: libvirt.virDomain, path: str, match) -> bool:
    try:
        return _find(dom.XMLDesc(0), path, match) is None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainNotFound("the VM is gone") from None
        raise translate(exc, context="read the domain XML") from None


def disk_detach(conn: HostConnection, uuid: str, target: str) -> Applied:
    """Detach disk ``target`` (its volume stays): unplugged live (waiting for the guest) and removed from the definition."""
    return _detach(conn, uuid, "./devices/disk", _is_disk(target), f"disk {target}")


def nic_attach(conn: HostConnection, uuid: str, nic: NicSpec, *, live: bool) -> tuple[Applied, str]:
    """Attach a NIC; returns where, and its MAC."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    el = nic_element(nic)
    mac_el = el.find("mac")
    mac = mac_el.get("address", "") if mac_el is not None else ""
    flags = (CONFIG if st.persistent else 0) | (LIVE if st.running and live else 0)
    if st.running and live:
        why = hotplug_refusal(_call("read the domain XML", dom.XMLDesc, 0), device="nic")
        if why:
            raise OperationInvalid(why)
    if not flags:
        raise OperationInvalid("the VM is transient and runs: only a live attach is possible")
    _call(f"attach NIC {mac}", dom.attachDeviceFlags, ET.tostring(el, encoding="unicode"), flags)
    return Applied(live=bool(flags & LIVE), config=bool(flags & CONFIG)), mac


def nic_detach(conn: HostConnection, uuid: str, mac: str) -> Applied:
    return _detach(conn, uuid, "./devices/interface", _is_nic(mac), f"NIC {mac}")


def media_change(conn: HostConnection, uuid: str, target: str, *, pool: str = "", volume: str = "") -> Applied:
    """Insert an ISO (pool + volume) into CD-ROM ``target``, or eject it (no volume); live and saved."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    xml = _call("read the domain XML", dom.XMLDesc, 0) if st.running else config_xml(conn, uuid)
    el = _find(xml, "./devices/disk", _is_disk(target))
    if el is None or el.get("device") not in ("cdrom", "floppy"):
        raise OperationInvalid(f"the VM has no CD-ROM {target}")
    for child in list(el):
        if child.tag in ("source", "backingStore", "alias"):
            el.remove(child)
    if volume:
        el.set("type", "volume")
        ET.SubElement(el, "source", {"pool": pool, "volume": volume})
    flags = st.flags | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE  # eject even when the guest locked the tray
    _call(f"change the media of {target}", dom.updateDeviceFlags, ET.tostring(el, encoding="unicode"), flags)
    return Applied(live=st.running, config=st.persistent)


# --- boot order, name, description ------------------------------------------------------------------------
def set_boot_order(conn: HostConnection, uuid: str, order: list[str]) -> Applied:
    """Boot from the devices in ``order`` (disk targets and NIC MACs), first to last; the others not."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    if not st.persistent:
        raise OperationInvalid("the VM is transient: its boot order cannot be saved")
    root = parse_xml(config_xml(conn, uuid, secure=True))
    rank = {key.lower(): i + 1 for i, key in enumerate(order)}
    found = set()
    for dev in root.findall("./devices/disk") + root.findall("./devices/interface"):
        key = _device_key(dev)
        for boot in dev.findall("boot"):
            dev.remove(boot)
        if key in rank:
            ET.SubElement(dev, "boot", {"order": str(rank[key])})
            found.add(key)
    missing = sorted(set(rank) - found)
    if missing:
        raise OperationInvalid(f"the VM has no device {', '.join(missing)}")
    os_el = root.find("os")
    if os_el is not None:
        for boot in os_el.findall("boot"):  # per-device order and <os><boot> cannot be mixed
            os_el.remove(boot)
    _call("save the boot order", conn.raw.defineXMLFlags, ET.tostring(root, encoding="unicode"),
          libvirt.VIR_DOMAIN_DEFINE_VALIDATE)  # fmt: skip
    return Applied(live=False, config=True)


def _device_key(dev: ET.Element) -> str:
    if dev.tag == "interface":
        mac = dev.find("mac")
        return (mac.get("address", "") if mac is not None else "").lower()
    target = dev.find("target")
    return target.get("dev", "") if target is not None else ""


def boot_order(xml: str) -> list[str]:
    """The devices a domain boots from, in order (disk targets and NIC MACs)."""
    root = parse_xml(xml)
    ranked = []
    for dev in root.findall("./devices/disk") + root.findall("./devices/interface"):
        boot = dev.find("boot")
        if boot is not None:
            ranked.append((int(boot.get("order", "0") or 0), _device_key(dev)))
    return [key for _, key in sorted(ranked)]


def rename(conn: HostConnection, uuid: str, name: str) -> None:
    """Rename a shut-off VM (libvirt renames only inactive domains)."""
    dom = _dom(conn, uuid)
    if _state(dom).running:
        raise OperationInvalid("a running VM cannot be renamed; shut it down first")
    _call(f"rename the VM to {name}", dom.rename, name, 0)


def set_description(conn: HostConnection, uuid: str, *, description: str, title: str) -> Applied:
    dom = _dom(conn, uuid)
    st = _state(dom)
    for kind, text in (
        (libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, description),
        (libvirt.VIR_DOMAIN_METADATA_TITLE, title),
    ):
        _call("set the description", dom.setMetadata, kind, text or None, None, None, st.flags)
    return Applied(live=st.running, config=st.persistent)


# --- pending until the next boot --------------------------------------------------------------------------
def pending_changes(live_xml: str, config_xml_text: str) -> list[str]:
    """What the definition has that the running VM does not (yet), in words: shown as pending."""
    live, conf = parse_xml(live_xml), parse_xml(config_xml_text)
    out = []
    lv, cv = live.find("vcpu"), conf.find("vcpu")
    live_vcpus = int(lv.get("current") or lv.text or 0) if lv is not None else 0
    conf_vcpus = int(cv.get("current") or cv.text or 0) if cv is not None else 0
    if live_vcpus != conf_vcpus:
        out.append(f"{conf_vcpus} vCPUs (runs with {live_vcpus})")
    live_mem = element_kib(live.find("currentMemory")) or element_kib(live.find("memory"))
    conf_mem = element_kib(conf.find("currentMemory")) or element_kib(conf.find("memory"))
    if element_kib(conf.find("memory")) != element_kib(live.find("memory")) or (
        conf_mem != live_mem and conf_mem > element_kib(live.find("memory"))
    ):
        out.append(
            f"{element_kib(conf.find('memory')) // 1024} MiB of memory (runs with {element_kib(live.find('memory')) // 1024} MiB)"
        )
    live_disks, conf_disks = set(_taken_targets(live_xml)), set(_taken_targets(config_xml_text))
    out += [f"disk {t} is added" for t in sorted(conf_disks - live_disks)]
    out += [f"disk {t} is removed" for t in sorted(live_disks - conf_disks)]
    macs = {(m.get("address") or "").lower() for m in live.findall("./devices/interface/mac")}
    conf_macs = {(m.get("address") or "").lower() for m in conf.findall("./devices/interface/mac")}
    out += [f"NIC {m} is added" for m in sorted(conf_macs - macs)]
    out += [f"NIC {m} is removed" for m in sorted(macs - conf_macs)]
    if boot_order(live_xml) != boot_order(config_xml_text):
        out.append("the boot order changes")
    return out


def pending_of(conn: HostConnection, uuid: str) -> list[str]:
    """What is pending for domain ``uuid`` ([] when it is off, transient or in step)."""
    dom = _dom(conn, uuid)
    st = _state(dom)
    if not (st.running and st.persistent):
        return []
    return pending_changes(_call("read the domain XML", dom.XMLDesc, 0),
                           _call("read the definition", dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE))  # fmt: skip
