"""A clone's domain XML, made from its source's, the way virt-clone makes it.

What a clone must not share with its source: its name and UUID, its NICs' MAC addresses, its
writable disks (each gets a copy or a linked overlay, chosen by the caller), its NVRAM file, its VNC
port and password, its serial log file and the SMBIOS UUID. What it shares: read-only and shareable
disks, CD-ROMs and their media, everything else (CPU, memory, devices, OS metadata).

The source XML should be the inactive, secure one (``VIR_DOMAIN_XML_INACTIVE | SECURE``): no runtime
aliases or vnet names, and the graphics password present so that the clone gets a new one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import libvirt

from .builder import new_mac, new_vnc_password
from .connection import HostConnection
from .domains import TEMPLATE_NS, DiskInfo, domain_disks, parse_xml
from .errors import OperationInvalid, translate

SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


@dataclass(frozen=True)
class CloneDisk:
    """A disk of the source: what a clone does with it."""

    disk: DiskInfo
    action: str  # "copy" (a writable disk: the clone gets its own) or "share" (read-only, shareable, CD-ROM)
    why: str = ""  # for "share": why it is shared

    @property
    def target(self) -> str:
        return self.disk.target


def clone_plan(xml: str) -> list[CloneDisk]:
    """Every disk of the source and whether a clone copies or shares it (virt-clone's rules)."""
    out = []
    for disk in domain_disks(xml):
        if disk.device != "disk":
            out.append(CloneDisk(disk, "share", f"a {disk.device}: its medium is shared"))
        elif disk.readonly:
            out.append(CloneDisk(disk, "share", "read-only: shared by the clone"))
        elif disk.shareable:
            out.append(CloneDisk(disk, "share", "shareable: shared by the clone"))
        elif not (disk.path or disk.volume):
            out.append(CloneDisk(disk, "share", "no storage behind it"))
        else:
            out.append(CloneDisk(disk, "copy"))
    return out


@dataclass(frozen=True)
class NewSource:
    """Where a copied disk of the clone lives: a pool's volume (its path as the host reports it)."""

    path: str
    format: str = ""  # the new volume's format (a linked clone's overlay is qcow2); "" keeps the driver's


def clone_xml(
    xml: str, *, name: str, uuid: str, disks: dict[str, NewSource], macs: dict[str, str] | None = None
) -> str:
    """The clone's XML. ``disks`` maps the target (vda...) of every disk clone_plan says to copy to
    its new source; ``macs`` maps old MAC → new one (new random ones for those not given).

    OperationInvalid when a disk to copy has no new source (the caller forgot one: never share a
    writable disk by mistake)."""
    root = parse_xml(xml)
    if root.tag != "domain":
        raise OperationInvalid("not a domain XML")
    source_name = (root.findtext("name") or "").strip()
    _identity(root, name, uuid)
    _disks(root, clone_plan(xml), disks)
    _nics(root, macs or {})
    _graphics(root)
    for log in root.findall("./devices/serial/log") + root.findall("./devices/console/log"):
        log.set("file", _clone_log_path(log.get("file", ""), source_name, name))
    for channel in root.findall("./devices/channel[@type='unix']/source"):
        channel.attrib.pop("path", None)  # libvirt makes one per domain
    return ET.tostring(root, encoding="unicode")


def _identity(root: ET.Element, name: str, uuid: str) -> None:
    _set(root, "name", name)
    _set(root, "uuid", uuid)
    for el in root.findall("./metadata"):
        for child in list(el):
            if child.tag.startswith("{" + TEMPLATE_NS + "}"):
                el.remove(child)
    for entry in root.findall("./sysinfo/system/entry[@name='uuid']"):
        entry.text = uuid
    os_el = root.find("./os")
    nvram = os_el.find("nvram") if os_el is not None else None
    if os_el is not None and nvram is not None:  # libvirt makes <name>_VARS.fd from the template
        nvram.text = None
        nvram.attrib.pop("type", None)
        if not nvram.attrib:
            os_el.remove(nvram)


def _disks(root: ET.Element, plan: list[CloneDisk], disks: dict[str, NewSource]) -> None:
    copied = {c.target for c in plan if c.action == "copy"}
    missing = sorted(copied - set(disks))
    if missing:
        raise OperationInvalid(f"no new storage given for disk(s) {', '.join(missing)}")
    for disk in root.findall("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev", "") if target is not None else ""
        if dev not in copied:
            continue
        new = disks[dev]
        disk.set("type", "file")
        for old in disk.findall("source") + disk.findall("backingStore"):
            disk.remove(old)
        disk.insert(_source_index(disk), ET.Element("source", file=new.path))
        if new.format:
            driver = disk.find("driver")
            if driver is None:
                driver = ET.SubElement(disk, "driver", name="qemu")
            driver.set("type", new.format)


def _nics(root: ET.Element, macs: dict[str, str]) -> None:
    for iface in root.findall("./devices/interface"):
        mac = iface.find("mac")
        old = mac.get("address", "").lower() if mac is not None else ""
        if mac is None:
            mac = ET.SubElement(iface, "mac")
        mac.set("address", macs.get(old) or new_mac())
        for el in iface.findall("target") + iface.findall("alias"):
            iface.remove(el)


def _graphics(root: ET.Element) -> None:
    for graphics in root.findall("./devices/graphics"):
        if graphics.get("autoport") == "no" or graphics.get("port") not in (None, "-1"):
            graphics.attrib.pop("port", None)
            graphics.attrib.pop("websocket", None)
            graphics.set("autoport", "yes")
        if graphics.get("passwd"):
            graphics.set("passwd", new_vnc_password())


def _clone_log_path(path: str, source: str, clone: str) -> str:
    directory, _, base = path.rpartition("/")
    if source and base.startswith(source):
        return f"{directory}/{clone}{base[len(source) :]}"
    return f"{directory or SERIAL_LOG_DIR}/{clone}.serial.log"


def _set(root: ET.Element, tag: str, text: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.Element(tag)
        root.insert(0 if tag == "name" else 1, el)
    el.text = text


def _source_index(disk: ET.Element) -> int:
    """<source> right after <driver> (libvirt does not mind, but the XML reads as libvirt writes it)."""
    for i, child in enumerate(list(disk)):
        if child.tag == "driver":
            return i + 1
    return 0


def clone_name(source: str, taken: set[str]) -> str:
    """virt-clone's --auto-clone name: <source>-clone, then -clone1, -clone2…"""
    candidate = f"{source}-clone"
    i = 0
    while candidate in taken:
        i += 1
        candidate = f"{source}-clone{i}"
    return candidate


# --- a frozen source: its writable disk becomes a read-only base, the source gets its own overlay -------------
def disk_swap(xml: str, target: str, path: str, fmt: str = "qcow2") -> tuple[str, str]:
    """``xml`` with disk ``target`` now on the file ``path`` (a new overlay of its old source), and the
    old <disk> element as XML (what ``disk_put_back`` needs to undo it). OperationInvalid: no such disk."""
    root = parse_xml(xml)
    disk = _disk_element(root, target)
    old = ET.tostring(disk, encoding="unicode")
    disk.set("type", "file")
    for el in disk.findall("source") + disk.findall("backingStore"):
        disk.remove(el)
    disk.insert(_source_index(disk), ET.Element("source", file=path))
    driver = disk.find("driver")
    if driver is None:
        driver = ET.SubElement(disk, "driver", name="qemu")
    driver.set("type", fmt)
    return ET.tostring(root, encoding="unicode"), old


def disk_put_back(xml: str, target: str, old_disk: str) -> str:
    """``xml`` with disk ``target`` as it was before ``disk_swap`` (``old_disk`` is what it returned)."""
    root = parse_xml(xml)
    devices = root.find("devices")
    disk = _disk_element(root, target)
    assert devices is not None
    index = list(devices).index(disk)
    devices.remove(disk)
    devices.insert(index, parse_xml(old_disk))
    return ET.tostring(root, encoding="unicode")


def disk_source_path(xml: str, target: str) -> str:
    """The file (or device) disk ``target`` of ``xml`` is on now ("" when it has none or is a volume)."""
    source = _disk_element(parse_xml(xml), target).find("source")
    return (source.get("file") or source.get("dev") or "") if source is not None else ""


def _disk_element(root: ET.Element, target: str) -> ET.Element:
    for disk in root.findall("./devices/disk"):
        el = disk.find("target")
        if el is not None and el.get("dev") == target:
            return disk
    raise OperationInvalid(f"the domain has no disk {target}")


def network_names(xml: str) -> list[str]:
    """The virtual networks the domain's NICs are on (each once, in order)."""
    out: list[str] = []
    for iface in parse_xml(xml).findall("./devices/interface[@type='network']/source"):
        name = iface.get("network", "")
        if name and name not in out:
            out.append(name)
    return out


# --- libvirt: copies of a volume, block copies of a running disk -------------------------------------------
def _call(what: str, fn, *args):
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=what) from None


def volume_copy_from(conn: HostConnection, src_pool: str, src_name: str, dst_pool: str, xml: str) -> str:
    """A new volume (``xml``) in ``dst_pool`` made by libvirt from ``src_name`` of ``src_pool`` on the same
    host (createXMLFrom: qemu-img convert, a qcow2 chain comes out flat); returns its path. Blocks until
    done: libvirt cannot interrupt it, so callers run it in a thread."""
    src = _call(f"volume {src_name} of pool {src_pool}",
                _call(f"storage pool {src_pool}", conn.raw.storagePoolLookupByName, src_pool).storageVolLookupByName,
                src_name)  # fmt: skip
    pool = _call(f"storage pool {dst_pool}", conn.raw.storagePoolLookupByName, dst_pool)
    vol = _call(f"copy volume {src_name}", pool.createXMLFrom, xml, src, 0)
    return _call("the new volume", vol.path)


@dataclass(frozen=True)
class BlockJob:
    """A block job of a running disk: bytes copied of the bytes to copy, and whether a copy is in sync."""

    target: str
    cur: int
    end: int
    ready: bool


def block_copy_start(conn: HostConnection, uuid: str, target: str, path: str, *, fmt: str = "qcow2",
                     bandwidth: int = 0) -> None:  # fmt: skip
    """Start mirroring the running disk ``target`` (its whole chain, flattened) into the existing file
    ``path``; a transient job (a persistent domain needs that), ``bandwidth`` in bytes/s (0: no limit)."""
    dom = _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)
    disk = f"<disk type='file'><driver type={quoteattr(fmt)}/><source file={quoteattr(path)}/></disk>"
    flags = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
    params = {libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: int(bandwidth)} if bandwidth else {}
    _call(f"block copy of {target}", dom.blockCopy, target, disk, params, flags)


def block_job(conn: HostConnection, uuid: str, target: str) -> BlockJob | None:
    """The block job running on disk ``target`` (None: none). "Ready" is what the live XML says of the
    mirror (libvirt sets it on QEMU's ready event), not cur == end alone."""
    dom = _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)
    info = _call(f"block job of {target}", dom.blockJobInfo, target, 0)
    if not info:
        return None
    ready = False
    for disk in parse_xml(_call(f"domain {uuid}", dom.XMLDesc, 0)).findall("./devices/disk"):
        el = disk.find("target")
        mirror = disk.find("mirror")
        if el is not None and el.get("dev") == target and mirror is not None:
            ready = mirror.get("ready") == "yes"
    return BlockJob(target=target, cur=int(info.get("cur", 0)), end=int(info.get("end", 0)), ready=ready)


def block_job_abort(conn: HostConnection, uuid: str, target: str) -> bool:
    """Stop the block job of disk ``target`` without pivoting (the guest stays on its own disk; a copy
    that was in sync is a point-in-time copy). False when there was none."""
    dom = _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)
    if not _call(f"block job of {target}", dom.blockJobInfo, target, 0):
        return False
    _call(f"stop the block job of {target}", dom.blockJobAbort, target, 0)
    return True
