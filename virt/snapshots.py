"""Domain snapshots: read them, take, revert and delete them, and say beforehand what a host's
libvirt cannot do safely (``refusal``).

Internal snapshots live inside a domain's qcow2 disks (and, with memory, in the same files);
external ones add overlay files (and a memory file). libvirt's support differs by version
(LAB.md, measured on 9.0): reverting an external snapshot needs 9.9, deleting one 9.7 (and never
when its parent is internal), internal snapshots of a VM with UEFI pflash NVRAM need 10.9.
Nothing here deletes a disk or base image: deleting an internal snapshot drops it from the qcow2
files; METADATA_ONLY (which leaves files libvirt then forgets) is never used.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .connection import HostConnection
from .domains import DiskInfo, domain_disks, parse_xml
from .errors import NotFound, OperationInvalid, OperationUnsupported, VirtError, translate

log = logging.getLogger(__name__)

REVERT_EXTERNAL = (9, 9, 0)  # reverting an external snapshot
DELETE_EXTERNAL = (9, 7, 0)  # deleting an external snapshot
INTERNAL_PFLASH = (10, 9, 0)  # internal snapshots of a VM with UEFI pflash NVRAM
AGENT_CHANNEL = "org.qemu.guest_agent.0"
NAME_MAX = 100
AFTER_REVERT = ("", "running", "paused", "shutoff")  # "": the state the snapshot was taken in


class SnapshotNotFound(NotFound):
    """The domain has no snapshot of that name (any more)."""


# --- what a snapshot is --------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotDisk:
    name: str  # the disk's target (vda) as the snapshot names it
    mode: str  # internal | external | no | manual
    file: str = ""  # external: the overlay file


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    parent: str
    description: str
    state: str  # running | paused | shutoff | disk-snapshot | ...
    created: int  # seconds since the epoch (libvirt's creationTime)
    memory: str  # internal | external | no
    memory_file: str
    disks: tuple[SnapshotDisk, ...]
    current: bool

    @property
    def external(self) -> bool:
        return self.memory == "external" or any(d.mode == "external" for d in self.disks)

    @property
    def disk_only(self) -> bool:
        return self.state == "disk-snapshot" or (self.memory == "no" and self.external)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "parent": self.parent, "description": self.description, "state": self.state,
            "created": self.created, "memory": self.memory, "memory_file": self.memory_file,
            "disks": [{"name": d.name, "mode": d.mode, "file": d.file} for d in self.disks], "current": self.current,
        }  # fmt: skip


def snapshot_from_xml(xml: str, *, current: bool = False) -> SnapshotInfo:
    root = parse_xml(xml)
    memory = root.find("memory")
    state = root.findtext("state") or ""
    mem_mode = memory.get("snapshot", "") if memory is not None else ""
    if not mem_mode:  # older XML: a snapshot of a running VM holds its memory (internal)
        mem_mode = "internal" if state in ("running", "paused") else "no"
    disks = []
    for disk in root.findall("./disks/disk"):
        source = disk.find("source")
        mode = disk.get("snapshot") or ("external" if source is not None else "internal")
        disks.append(SnapshotDisk(name=disk.get("name", ""), mode=mode,
                                  file=(source.get("file") or source.get("dev") or "") if source is not None else ""))  # fmt: skip
    try:
        created = int(root.findtext("creationTime") or 0)
    except ValueError:
        created = 0
    return SnapshotInfo(
        name=root.findtext("name") or "",
        parent=root.findtext("./parent/name") or "",
        description=root.findtext("description") or "",
        state=state,
        created=created,
        memory=mem_mode,
        memory_file=memory.get("file", "") if memory is not None else "",
        disks=tuple(disks),
        current=current,
    )


def _current_name(dom: libvirt.virDomain) -> str:
    try:
        return dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else ""
    except libvirt.libvirtError:
        return ""


def _read(dom: libvirt.virDomain) -> list[SnapshotInfo]:
    snaps = dom.listAllSnapshots(0)
    if not snaps:
        return []
    current = _current_name(dom)
    found = []
    for snap in snaps:
        try:
            xml = snap.getXMLDesc(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                continue  # deleted between the list and the read
            raise
        info = snapshot_from_xml(xml)
        found.append(_with_current(info, info.name == current))
    return found


def _with_current(info: SnapshotInfo, current: bool) -> SnapshotInfo:
    return SnapshotInfo(**{**info.__dict__, "current": current})


def _lookup(conn: HostConnection, uuid: str) -> libvirt.virDomain:
    try:
        return conn.raw.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"domain {uuid}") from None


def list_snapshots(conn: HostConnection, uuid: str) -> list[SnapshotInfo]:
    """Every snapshot of one domain: one list, one XML read per snapshot."""
    dom = _lookup(conn, uuid)
    try:
        return _read(dom)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"snapshots of {dom.name()}") from None


def host_snapshots(conn: HostConnection) -> dict[str, list[SnapshotInfo]]:
    """The snapshots of every domain of the host that has any ({uuid: [...]}): one listing of the
    domains with snapshots, then one snapshot list per such domain."""
    try:
        doms = conn.raw.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT)
    except libvirt.libvirtError as exc:
        raise translate(exc, context="domains with snapshots") from None
    found: dict[str, list[SnapshotInfo]] = {}
    for dom in doms:
        try:
            found[dom.UUIDString()] = _read(dom)
        except libvirt.libvirtError as exc:
            err = translate(exc)
            if isinstance(err, NotFound):
                continue  # undefined while we read
            raise err from None
    return found


def snapshot_get(conn: HostConnection, uuid: str, name: str) -> SnapshotInfo | None:
    """One snapshot as libvirt has it now, or None."""
    dom = _lookup(conn, uuid)
    try:
        snap = dom.snapshotLookupByName(name, 0)
        return snapshot_from_xml(snap.getXMLDesc(0), current=bool(snap.isCurrent(0)))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise translate(exc, context=f"snapshot {name}") from None


# --- what the domain's XML says ------------------------------------------------------------------------
def parse_version(text: str | int | tuple) -> tuple[int, int, int]:
    """(major, minor, micro) from "9.0.0", 9000000 (libvirt's number) or a tuple; (0, 0, 0) if unknown."""
    if isinstance(text, tuple):
        nums = [int(x) for x in text]
        return (*nums, 0, 0, 0)[:3]  # type: ignore[return-value]
    if isinstance(text, int):
        return (text // 1_000_000, text // 1000 % 1000, text % 1000)
    parts = []
    for piece in str(text or "").strip().split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return (*parts, 0, 0, 0)[:3]  # type: ignore[return-value]


def _v(version: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in version)


def agent_connected(domain_xml: str) -> bool:
    """Whether the guest agent's channel is connected (a running agent answers on it)."""
    root = parse_xml(domain_xml)
    return any(t.get("name") == AGENT_CHANNEL and t.get("state") == "connected"
               for t in root.findall("./devices/channel/target"))  # fmt: skip


def has_agent_channel(domain_xml: str) -> bool:
    root = parse_xml(domain_xml)
    return any(t.get("name") == AGENT_CHANNEL for t in root.findall("./devices/channel/target"))


def has_pflash(domain_xml: str) -> bool:
    """UEFI firmware in pflash with an NVRAM store (what blocks internal snapshots before 10.9)."""
    root = parse_xml(domain_xml)
    loader = root.find("./os/loader")
    firmware = root.find("./os").get("firmware", "") if root.find("./os") is not None else ""
    return (
        (loader is not None and loader.get("type") == "pflash")
        or firmware == "efi"
        or root.find("./os/nvram") is not None
    )


def excluded(disk: DiskInfo) -> str:
    """Why a disk is left out of snapshots ("" = it is snapshotted)."""
    if disk.device in ("cdrom", "floppy", "lun"):
        return f"a {disk.device}"
    if disk.readonly:
        return "read-only"
    if disk.shareable:
        return "shared with other VMs"
    if not (disk.path or disk.volume):
        return "no storage behind it"
    return ""


def snapshotted_disks(domain_xml: str) -> tuple[list[DiskInfo], list[tuple[DiskInfo, str]]]:
    """(the disks a snapshot covers, [(disk, why it is left out)])."""
    kept, left = [], []
    for disk in domain_disks(domain_xml):
        why = excluded(disk)
        if why:
            left.append((disk, why))
        else:
            kept.append(disk)
    return kept, left


# --- refusals ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A snapshot to take: with memory (a running VM), disk-only (external overlays), quiesced."""

    name: str
    description: str = ""
    memory: bool = True
    disk_only: bool = False
    quiesce: bool = False


def subtree(snapshots: list[SnapshotInfo], name: str) -> list[SnapshotInfo]:
    children: dict[str, list[SnapshotInfo]] = {}
    for s in snapshots:
        children.setdefault(s.parent, []).append(s)
    out, todo = [], [name]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.name)
    return out


def _modes_by_disk(snapshots: list[SnapshotInfo]) -> dict[str, set[str]]:
    modes: dict[str, set[str]] = {}
    for s in snapshots:
        for d in s.disks:
            if d.mode in ("internal", "external"):
                modes.setdefault(d.name, set()).add(d.mode)
    return modes


def refusal(
    *,
    action: str,
    libvirt_version: str | int | tuple,
    domain_xml: str,
    state: str,
    snapshots: list[SnapshotInfo],
    request: Request | None = None,
    name: str = "",
    children: bool = False,
) -> str:
    """Why ``action`` ("create", "revert", "delete") cannot be done safely on this domain with
    this host's libvirt ("" = it can). ``state`` is the VM's power state (running, paused, shutoff...)."""
    version = parse_version(libvirt_version)
    if action == "create":
        return _create_refusal(version, domain_xml, state, snapshots, request or Request(name=name))
    snap = next((s for s in snapshots if s.name == name), None)
    if snap is None:
        return f"it has no snapshot named {name}"
    if action == "revert":
        if snap.external and version < REVERT_EXTERNAL:
            return (f"{name} is an external snapshot and reverting one needs libvirt ≥ {_v(REVERT_EXTERNAL)}; "
                    f"this host runs {_v(version)}")  # fmt: skip
        if not snap.external and has_pflash(domain_xml) and version < INTERNAL_PFLASH:
            return (f"the VM boots UEFI from pflash with NVRAM, and internal snapshots of such a VM need libvirt ≥ "
                    f"{_v(INTERNAL_PFLASH)}; this host runs {_v(version)}")  # fmt: skip
        return ""
    if action == "delete":
        doomed = [snap, *(subtree(snapshots, name) if children else [])]
        for s in doomed:
            if not s.external:
                continue
            if version < DELETE_EXTERNAL:
                which = f"{s.name} is" if s.name == name else f"{s.name} (in its subtree) is"
                return (f"{which} an external snapshot and deleting one needs libvirt ≥ {_v(DELETE_EXTERNAL)}; this "
                        f"host runs {_v(version)} (Virtfleet never drops only its metadata: that would leave "
                        f"overlay files nothing tracks)")  # fmt: skip
            parent = next((p for p in snapshots if p.name == s.parent), None)
            if parent is not None and not parent.external:
                return (
                    f"{s.name} is an external snapshot whose parent {parent.name} is internal; libvirt cannot delete it"
                )
        return ""
    return f"unknown snapshot action {action}"


def _create_refusal(version, domain_xml: str, state: str, snapshots: list[SnapshotInfo], req: Request) -> str:
    if any(s.name == req.name for s in snapshots):
        return f"it already has a snapshot named {req.name}"
    disks, _left = snapshotted_disks(domain_xml)
    live = state in ("running", "paused")
    if not disks and (req.disk_only or not live):
        return "it has no disk a snapshot could cover (CD-ROMs, read-only and shared disks are left out)"
    modes = _modes_by_disk(snapshots)
    if req.disk_only:
        if version < REVERT_EXTERNAL:
            return (f"a disk-only snapshot is external, and this host's libvirt {_v(version)} could neither revert it "
                    f"(needs ≥ {_v(REVERT_EXTERNAL)}) nor delete it (needs ≥ {_v(DELETE_EXTERNAL)}); take an internal "
                    f"snapshot instead")  # fmt: skip
        for disk in disks:
            if "internal" in modes.get(disk.target, set()):
                return (f"disk {disk.target} already holds internal snapshots; mixing internal and external snapshots "
                        f"on one disk is not safe — delete the internal ones first or take an internal one")  # fmt: skip
        if req.quiesce and not agent_connected(domain_xml):
            return "quiescing needs a connected QEMU guest agent, and the VM has none"
        return ""
    if live and not req.memory:
        return (
            "an internal snapshot of a running VM always holds its memory: take it with memory, "
            "or choose disk-only (external)"
        )
    for disk in disks:
        if disk.format != "qcow2":
            return (f"disk {disk.target} ({disk.label}) is {disk.format or 'of unknown format'}, and only qcow2 disks "
                    f"can hold internal snapshots; choose disk-only (an external snapshot) instead")  # fmt: skip
        if "external" in modes.get(disk.target, set()):
            return (f"disk {disk.target} already has external snapshots; mixing internal and external snapshots on "
                    f"one disk is not safe")  # fmt: skip
    if has_pflash(domain_xml) and version < INTERNAL_PFLASH:
        return (f"the VM boots UEFI from pflash with NVRAM, and internal snapshots of such a VM need libvirt ≥ "
                f"{_v(INTERNAL_PFLASH)}; this host runs {_v(version)}")  # fmt: skip
    if req.quiesce:
        return "quiescing applies to disk-only snapshots (an internal snapshot pauses the VM while it is taken)"
    return ""


def quiesce_note(domain_xml: str) -> str:
    """Whether a disk-only snapshot can be quiesced, in words."""
    if agent_connected(domain_xml):
        return "the guest agent is connected: file systems are frozen while the snapshot is taken"
    if has_agent_channel(domain_xml):
        return "not quiesced: the VM has a guest agent channel but no agent answers on it"
    return "not quiesced: the VM has no guest agent channel"


# --- taking one ---------------------------------------------------------------------------------------
def snapshot_xml(req: Request, *, domain_xml: str, state: str) -> str:
    """The <domainsnapshot> for ``req`` (built with ElementTree: names and descriptions are escaped)."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = req.name
    if req.description:
        ET.SubElement(root, "description").text = req.description
    live = state in ("running", "paused")
    if not req.disk_only:
        ET.SubElement(root, "memory", snapshot="internal" if live and req.memory else "no")
    disks_el = ET.SubElement(root, "disks")
    kept, left = snapshotted_disks(domain_xml)
    for disk in kept:
        ET.SubElement(disks_el, "disk", name=disk.target, snapshot="external" if req.disk_only else "internal")
    for disk, _why in left:
        if disk.target:
            ET.SubElement(disks_el, "disk", name=disk.target, snapshot="no")
    return ET.tostring(root, encoding="unicode")


def create_flags(req: Request, *, state: str) -> int:
    """ATOMIC always (all disks or none); DISK_ONLY and QUIESCE for disk-only. LIVE is for external
    memory snapshots only (QEMU refuses it for internal ones), which Virtfleet does not take."""
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    if req.disk_only:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if req.quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    return flags


@dataclass(frozen=True)
class Progress:
    percent: int
    message: str


@dataclass
class _Watch:
    readings: int = 0
    last: Progress | None = None


def _progress_from(info: list) -> Progress | None:
    # jobInfo: [type, timeElapsed, timeRemaining, dataTotal, dataProcessed, dataRemaining, memTotal, memProcessed, ...]
    if not info or info[0] == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    total, processed = int(info[6] or 0), int(info[7] or 0)
    elapsed = int(info[1] or 0) / 1000
    if total:
        return Progress(min(99, int(100 * processed / total)),
                        f"saving memory: {processed / 2**20:.1f} of {total / 2**20:.1f} MiB ({elapsed:.1f} s)")  # fmt: skip
    return Progress(0, f"taking the snapshot ({elapsed:.1f} s)")


def create(
    conn: HostConnection,
    uuid: str,
    req: Request,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    poll: float = 0.5,
) -> SnapshotInfo:
    """Take the snapshot ``req`` and return it as libvirt lists it. While libvirt works (a memory
    snapshot saves the guest's RAM), a watcher thread reads the domain's job and reports progress."""
    dom = _lookup(conn, uuid)
    try:
        state = _state_name(dom)
        domain_xml = dom.XMLDesc(0)
    except libvirt.libvirtError as exc:
        raise translate(exc, context="snapshot") from None
    xml = snapshot_xml(req, domain_xml=domain_xml, state=state)
    flags = create_flags(req, state=state)
    done = threading.Event()
    watch = _Watch()

    def watcher() -> None:
        while not done.wait(poll):
            try:
                reading = _progress_from(dom.jobInfo())
            except libvirt.libvirtError:
                continue  # not supported (test driver) or between two phases
            if reading is None:
                continue
            watch.readings += 1
            watch.last = reading
            try:
                on_progress(reading)
            except Exception:
                log.exception("reporting snapshot progress of %s", uuid)

    thread = threading.Thread(target=watcher, name=f"snapshot-watch {uuid}", daemon=True)
    thread.start()
    try:
        snap = dom.snapshotCreateXML(xml, flags)
        return snapshot_from_xml(snap.getXMLDesc(0), current=True)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=f"snapshot {req.name}") from None
    finally:
        done.set()
        thread.join(5)


_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}


def _state_name(dom: libvirt.virDomain) -> str:
    return _STATES.get(dom.state()[0], "shutoff")


def domain_facts(conn: HostConnection, uuid: str) -> tuple[str, str]:
    """(the domain's live XML, running | paused | shutoff): what a refusal is judged on in a job."""
    dom = _lookup(conn, uuid)
    try:
        return dom.XMLDesc(0), _state_name(dom)
    except libvirt.libvirtError as exc:
        raise translate(exc) from None


def libvirt_version(conn: HostConnection) -> tuple[int, int, int]:
    """The host's libvirt (the daemon's, over a remote connection)."""
    try:
        return parse_version(int(conn.raw.getLibVersion()))
    except libvirt.libvirtError as exc:
        raise translate(exc) from None


def wait_idle(conn: HostConnection, uuid: str, *, timeout: float = 120.0, poll: float = 0.5) -> bool:
    """Wait until the domain runs no libvirt job (a snapshot another client started is still being
    saved); True when idle (or when the driver cannot tell), False after ``timeout``."""
    dom = _lookup(conn, uuid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            busy = dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError as exc:
            err = translate(exc)
            if isinstance(err, (OperationUnsupported, OperationInvalid)):
                return True  # the test driver has no jobs; a shut-off domain runs none
            raise err from None
        if not busy:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def current_name(conn: HostConnection, uuid: str) -> str:
    """The name of the domain's current snapshot ("" = none)."""
    return _current_name(_lookup(conn, uuid))


def domain_state(conn: HostConnection, uuid: str) -> str:
    """running, paused or shutoff (what a revert's outcome is judged by)."""
    dom = _lookup(conn, uuid)
    try:
        return _state_name(dom)
    except libvirt.libvirtError as exc:
        raise translate(exc) from None


# --- revert and delete ----------------------------------------------------------------------------------
def revert(conn: HostConnection, uuid: str, name: str, *, after: str = "", force: bool = False) -> str:
    """Revert the domain to snapshot ``name``; ``after``: running, paused, shutoff or "" (as it was
    taken). Returns the domain's state afterwards."""
    if after not in AFTER_REVERT:
        raise ValueError(f"after must be one of {AFTER_REVERT}")
    dom = _lookup(conn, uuid)
    flags = 0
    if after == "running":
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
    elif after in ("paused", "shutoff"):
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED  # shut off: never let the reverted guest run
    if force:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE
    try:
        snap = dom.snapshotLookupByName(name, 0)
        dom.revertToSnapshot(snap, flags)
        if after == "shutoff" and dom.isActive():
            dom.destroy()
        return _state_name(dom)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise SnapshotNotFound(f"the VM has no snapshot named {name}") from None
        raise translate(exc, context=f"revert to {name}") from None


def delete(conn: HostConnection, uuid: str, name: str, *, children: bool = False) -> None:
    """Delete snapshot ``name`` (and its descendants with ``children``): its data goes from the
    qcow2 files (internal) or is merged back (external, libvirt ≥ 9.7); never metadata only."""
    dom = _lookup(conn, uuid)
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if children else 0
    try:
        dom.snapshotLookupByName(name, 0).delete(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise SnapshotNotFound(f"the VM has no snapshot named {name}") from None
        raise translate(exc, context=f"delete snapshot {name}") from None


# --- sizes -------------------------------------------------------------------------------------------
def disk_allocations(conn: HostConnection, uuid: str) -> dict[str, int]:
    """{disk target: bytes allocated on the host} of the disks snapshots cover (where libvirt knows)."""
    dom = _lookup(conn, uuid)
    try:
        xml = dom.XMLDesc(0)
    except libvirt.libvirtError as exc:
        raise translate(exc) from None
    found: dict[str, int] = {}
    for disk in snapshotted_disks(xml)[0]:
        try:
            found[disk.target] = int(dom.blockInfo(disk.target, 0)[1])
            continue
        except libvirt.libvirtError:
            pass
        size = _file_allocation(conn, disk.path) if disk.path else None
        if size is not None:
            found[disk.target] = size
    return found


def _file_allocation(conn: HostConnection, path: str) -> int | None:
    try:
        return int(conn.raw.storageVolLookupByPath(path).info()[2])
    except libvirt.libvirtError:
        return None


def external_size(conn: HostConnection, info: SnapshotInfo) -> int | None:
    """Bytes allocated by an external snapshot's own files (overlays, memory), where the host's
    pools know them; None when none could be read."""
    files = [d.file for d in info.disks if d.mode == "external" and d.file]
    if info.memory == "external" and info.memory_file:
        files.append(info.memory_file)
    sizes = [s for s in (_file_allocation(conn, f) for f in files) if s is not None]
    return sum(sizes) if sizes else None


# --- events -------------------------------------------------------------------------------------------
FROM_SNAPSHOT = {
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_FROM_SNAPSHOT),
}


def is_revert_event(event: int, detail: int) -> bool:
    """A lifecycle event that only a revert to a snapshot sends."""
    return (event, detail) in FROM_SNAPSHOT


def register_snapshot_events(conn: HostConnection, callback: Callable[[str], None]) -> None:
    """``callback(uuid)`` (on the loop thread) when a domain was reverted to a snapshot. libvirt sends
    no event when a snapshot is taken or deleted: jobs re-read after themselves, full syncs catch the rest."""

    def lifecycle(_conn, dom, event, detail, _opaque):
        if is_revert_event(event, detail):
            callback(dom.UUIDString())

    raw = conn.raw
    try:
        callback_id = raw.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)
    except libvirt.libvirtError as exc:
        log.debug("%s does not send domain events: %s", conn.uri, exc)
        return
    conn.on_deregister(lambda: raw.domainEventDeregisterAny(callback_id))


__all__ = [
    "Progress",
    "Request",
    "SnapshotDisk",
    "SnapshotInfo",
    "SnapshotNotFound",
    "VirtError",
    "create",
    "delete",
    "list_snapshots",
    "refusal",
    "revert",
    "snapshot_from_xml",
    "snapshot_xml",
]
