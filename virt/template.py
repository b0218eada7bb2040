"""The template mark in a domain's metadata, and the storage facts templates rest on.

A template is a persistent, shut-off domain with ``<vf:template generation="…" marked="…"/>`` in its
``<metadata>`` (set with virDomainSetMetadata on its definition, so libvirt keeps it and every
Virtfleet that manages the host sees it). ``generation`` is a new random token at every mark: a copy
of the template's disk made for an earlier generation is never taken for the current one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import libvirt

from .connection import HostConnection
from .domains import TEMPLATE_NS, parse_xml
from .errors import OperationInvalid, translate

PREFIX = "vf"


@dataclass(frozen=True)
class Marked:
    """What marking did: the new generation, and whether autostart had to be turned off."""

    generation: str
    autostart_was_on: bool


def new_generation() -> str:
    return secrets.token_hex(8)


def template_generation(xml: str) -> str:
    """The generation of the template mark in a domain XML ("" when it is not a template)."""
    try:
        root = parse_xml(xml)
    except Exception:
        return ""
    mark = root.find(f"./metadata/{{{TEMPLATE_NS}}}template")
    if mark is None:
        return ""
    return mark.get("generation", "") or "unknown"


def _dom(conn: HostConnection, uuid: str) -> libvirt.virDomain:
    try:
        return conn.raw.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"domain {uuid}") from None


def template_mark(conn: HostConnection, uuid: str, *, marked_at: str, generation: str = "") -> Marked:
    """Mark a persistent, shut-off domain as a template: autostart off, the metadata element set on
    its definition. OperationInvalid (in words) when it runs or is transient."""
    dom = _dom(conn, uuid)
    try:
        if not dom.isPersistent():
            raise OperationInvalid("it is transient: only a defined VM can be a template")
        if dom.isActive():
            raise OperationInvalid("it is running or paused: shut it down first")
        was_on = bool(dom.autostart())
        if was_on:
            dom.setAutostart(0)
        generation = generation or new_generation()
        element = f"<template generation={quoteattr(generation)} marked={quoteattr(marked_at)}/>"
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, PREFIX, TEMPLATE_NS,
                        libvirt.VIR_DOMAIN_AFFECT_CONFIG)  # fmt: skip
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"mark {dom.name()} as a template") from None
    return Marked(generation=generation, autostart_was_on=was_on)


def template_unmark(conn: HostConnection, uuid: str) -> bool:
    """Remove the mark; False when there was none."""
    dom = _dom(conn, uuid)
    try:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
        if not template_generation(dom.XMLDesc(flags)):
            return False
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, TEMPLATE_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"unmark {dom.name()}") from None
    return True


def current_generation(conn: HostConnection, uuid: str) -> str:
    """The mark's generation in the domain's definition now ("" when it is not a template)."""
    dom = _dom(conn, uuid)
    try:
        return template_generation(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"domain {uuid}") from None


def backed_by(conn: HostConnection, path: str) -> list[str]:
    """Volumes of the host's active pools whose backing store is ``path`` (linked copies of it),
    as "pool/volume", and domains whose disks use ``path`` itself, as "domain <name>"."""
    found = []
    try:
        for pool in conn.raw.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            for vol in pool.listAllVolumes(0):
                try:
                    root = parse_xml(vol.XMLDesc(0))
                except libvirt.libvirtError:
                    continue  # gone meanwhile
                backing = root.findtext("./backingStore/path") or ""
                if backing.strip() == path:
                    found.append(f"{pool.name()}/{vol.name()}")
        for dom in conn.raw.listAllDomains(0):
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0)
            for source in parse_xml(xml).findall("./devices/disk/source"):
                if path in (source.get("file"), source.get("dev"), _volume_path(conn, source)):
                    found.append(f"domain {dom.name()}")
                    break
    except libvirt.libvirtError as exc:
        raise translate(exc, context="list the host's volumes") from None
    return found


def _volume_path(conn: HostConnection, source) -> str:
    if not (source.get("pool") and source.get("volume")):
        return ""
    try:
        return conn.raw.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(source.get("volume")).path()
    except libvirt.libvirtError:
        return ""


def deploy_xml(xml: str, *, seed_pool: str = "", seed_volume: str = "") -> str:
    """A deployed VM's XML from its clone XML (virt.clone.clone_xml): the template's CD-ROM and
    floppy media are not carried over (its install ISO or its own cloud-init seed); with
    ``seed_volume``, the VM's NoCloud seed as a read-only CD-ROM — on virtio-scsi, which cloud
    kernels have (a controller is added when the template has none)."""
    import xml.etree.ElementTree as ET

    from .builder import DISK_PREFIX, DiskSpec, disk_element, next_target

    root = parse_xml(xml)
    devices = root.find("./devices")
    if devices is None:
        raise OperationInvalid("the template's XML has no <devices>")
    for disk in devices.findall("disk"):
        if disk.get("device") in ("cdrom", "floppy"):
            devices.remove(disk)
    if seed_volume:
        test = root.get("type") == "test"
        bus = "sata" if test else "scsi"
        if not test and not any(c.get("model") == "virtio-scsi" for c in devices.findall("controller[@type='scsi']")):
            index = max([int(c.get("index", "0")) + 1 for c in devices.findall("controller[@type='scsi']")] or [0])
            controller = ET.Element("controller", type="scsi", index=str(index), model="virtio-scsi")
            devices.insert(_after_disks(devices), controller)
        used = {t.get("dev", "") for t in devices.findall("disk/target")}
        spec = DiskSpec(device="cdrom", bus=bus, pool=seed_pool, volume=seed_volume, format="raw", readonly=True)
        devices.insert(_after_disks(devices), disk_element(spec, next_target(DISK_PREFIX[bus], used)))
    return ET.tostring(root, encoding="unicode")


def _after_disks(devices) -> int:
    last = 0
    for i, child in enumerate(list(devices)):
        if child.tag in ("emulator", "disk"):
            last = i + 1
    return last
