"""Storage pools and volumes: reads, operations, XML for new ones, and the streams that move a
volume's bytes (upload, download, host-to-host copy), sparse where the volume is.

Everything takes a HostConnection and returns frozen dataclasses; libvirt errors become
virt.errors exceptions (PoolNotFound / VolumeNotFound for objects that are gone).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import libvirt

from .connection import HostConnection
from .domains import parse_xml
from .errors import OperationAborted, OperationInvalid, VirtError, translate

log = logging.getLogger(__name__)

POOL_STATES = {
    libvirt.VIR_STORAGE_POOL_INACTIVE: "inactive",
    libvirt.VIR_STORAGE_POOL_BUILDING: "building",
    libvirt.VIR_STORAGE_POOL_RUNNING: "active",
    libvirt.VIR_STORAGE_POOL_DEGRADED: "degraded",
    libvirt.VIR_STORAGE_POOL_INACCESSIBLE: "inaccessible",
}
# What the pages offer to create; the host's pool capabilities say which of them it supports.
CREATABLE_TYPES = ("dir", "fs", "netfs", "logical")
KNOWN_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd",
               "sheepdog", "gluster", "zfs", "vstorage")  # fmt: skip
VOLUME_FORMATS = ("raw", "qcow2")  # what new volumes are made as
PREALLOCATION = ("none", "metadata", "full")
CHUNK = 4 * 2**20  # bytes per stream read/write
HOLE_BLOCK = 64 * 2**10  # all-zero runs of at least this many bytes are sent as holes
SEND_PIECE = 256 * 2**10  # bytes per stream send: libvirt's message payload (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX)


# --- what is read --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolSource:
    host: str = ""  # netfs, iscsi: the server
    dir: str = ""  # netfs: the exported directory
    device: str = ""  # fs, logical, disk: a block device
    name: str = ""  # logical: the volume group
    format: str = ""  # fs: ext4, netfs: nfs, logical: lvm2


@dataclass(frozen=True)
class PoolInfo:
    uuid: str
    name: str
    type: str
    state: str  # inactive, building, active, degraded, inaccessible
    persistent: bool
    autostart: bool
    capacity: int  # bytes
    allocation: int
    available: int
    target_path: str
    source: PoolSource
    xml: str


@dataclass(frozen=True)
class VolumeInfo:
    pool: str
    name: str
    key: str
    path: str
    type: str  # file, block, dir, network...
    format: str  # raw, qcow2, iso...
    capacity: int
    allocation: int
    backing_path: str = ""
    backing_format: str = ""
    physical: int = 0  # bytes of the file or device itself (what a download or copy moves)

    @property
    def length(self) -> int:
        return self.physical or self.capacity


@dataclass(frozen=True)
class PoolCapabilities:
    """The pool types a host reports (and whether it supports each), with the volume formats of each."""

    supported: tuple[str, ...]
    unsupported: tuple[str, ...]
    volume_formats: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reported: bool = True  # False: the host does not report them (e.g. the test driver)


def _text(root: ET.Element, path: str) -> str:
    el = root.find(path)
    return (el.text or "").strip() if el is not None else ""


def _attr(root: ET.Element, path: str, name: str) -> str:
    el = root.find(path)
    return el.get(name, "") if el is not None else ""


def pool_from_xml(xml: str, *, info: list[int], autostart: bool, persistent: bool) -> PoolInfo:
    root = parse_xml(xml)
    state, capacity, allocation, available = info[:4]
    return PoolInfo(
        uuid=_text(root, "uuid"),
        name=_text(root, "name"),
        type=root.get("type", ""),
        state=POOL_STATES.get(state, "unknown"),
        persistent=persistent,
        autostart=autostart,
        capacity=int(capacity),
        allocation=int(allocation),
        available=int(available),
        target_path=_text(root, "target/path"),
        source=PoolSource(
            host=_attr(root, "source/host", "name"),
            dir=_attr(root, "source/dir", "path"),
            device=_attr(root, "source/device", "path"),
            name=_text(root, "source/name"),
            format=_attr(root, "source/format", "type"),
        ),
        xml=xml,
    )


def volume_from_xml(pool: str, xml: str, *, path: str, key: str, info: list[int]) -> VolumeInfo:
    root = parse_xml(xml)
    kind, capacity, allocation = info[:3]
    return VolumeInfo(
        pool=pool,
        name=_text(root, "name"),
        key=key,
        path=path,
        type=root.get("type", "") or {0: "file", 1: "block", 2: "dir"}.get(kind, "file"),
        format=_attr(root, "target/format", "type"),
        capacity=int(capacity),
        allocation=int(allocation),
        backing_path=_text(root, "backingStore/path"),
        backing_format=_attr(root, "backingStore/format", "type"),
        physical=int(_text(root, "physical") or 0),
    )


def capabilities_from_xml(xml: str) -> PoolCapabilities:
    root = parse_xml(xml)
    supported: list[str] = []
    unsupported: list[str] = []
    formats: dict[str, tuple[str, ...]] = {}
    for pool in root.findall("pool"):
        kind = pool.get("type", "")
        (supported if pool.get("supported") == "yes" else unsupported).append(kind)
        values = [v.text or "" for v in pool.findall("volOptions/enum[@name='targetFormatType']/value")]
        if values:
            formats[kind] = tuple(values)
    return PoolCapabilities(supported=tuple(supported), unsupported=tuple(unsupported), volume_formats=formats)


# --- XML of new pools and volumes ---------------------------------------------------------------------
def pool_xml(*, name: str, type: str, target: str = "", source: PoolSource | None = None) -> str:
    """A pool definition (values already validated by the caller)."""
    src = source or PoolSource()
    parts = []
    if src.host:
        parts.append(f"<host name={quoteattr(src.host)}/>")
    if src.dir:
        parts.append(f"<dir path={quoteattr(src.dir)}/>")
    if src.device:
        parts.append(f"<device path={quoteattr(src.device)}/>")
    if src.name:
        parts.append(f"<name>{escape(src.name)}</name>")
    if src.format:
        parts.append(f"<format type={quoteattr(src.format)}/>")
    source_xml = f"<source>{''.join(parts)}</source>" if parts else ""
    target_xml = f"<target><path>{escape(target)}</path></target>" if target else ""
    return f"<pool type={quoteattr(type)}><name>{escape(name)}</name>{source_xml}{target_xml}</pool>"


def volume_xml(*, name: str, capacity: int, format: str = "raw", allocation: int | None = None,
               backing_path: str = "", backing_format: str = "") -> str:  # fmt: skip
    """A volume definition; ``allocation=None`` leaves it sparse (libvirt's default: as much as needed)."""
    alloc = f"<allocation unit='bytes'>{int(allocation)}</allocation>" if allocation is not None else ""
    backing = ""
    if backing_path:
        fmt = f"<format type={quoteattr(backing_format)}/>" if backing_format else ""
        backing = f"<backingStore><path>{escape(backing_path)}</path>{fmt}</backingStore>"
    return (
        f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{int(capacity)}</capacity>{alloc}"
        f"<target><format type={quoteattr(format)}/></target>{backing}</volume>"
    )


# --- reads -------------------------------------------------------------------------------------------------
def _call(what: str, fn: Callable, *args):
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=what) from None


def _pool(conn: HostConnection, name: str) -> libvirt.virStoragePool:
    return _call(f"storage pool {name}", conn.raw.storagePoolLookupByName, name)


def _volume(conn: HostConnection, pool: str, name: str) -> libvirt.virStorageVol:
    return _call(f"volume {name} of pool {pool}", _pool(conn, pool).storageVolLookupByName, name)


def _pool_info(pool: libvirt.virStoragePool) -> PoolInfo:
    name = pool.name()
    persistent = bool(_call(f"storage pool {name}", pool.isPersistent))
    return pool_from_xml(
        _call(f"storage pool {name}", pool.XMLDesc, 0),
        info=_call(f"storage pool {name}", pool.info),
        autostart=bool(_call(f"storage pool {name}", pool.autostart)) if persistent else False,
        persistent=persistent,
    )


def list_pools(conn: HostConnection) -> list[PoolInfo]:
    """Every storage pool of the host (one listing, then a few reads per pool)."""
    return [_pool_info(p) for p in _call("list storage pools", conn.raw.listAllStoragePools, 0)]


def pool_info(conn: HostConnection, name: str) -> PoolInfo:
    return _pool_info(_pool(conn, name))


def _volume_info(pool_name: str, vol: libvirt.virStorageVol) -> VolumeInfo:
    what = f"volume {vol.name()}"
    return volume_from_xml(pool_name, _call(what, vol.XMLDesc, 0), path=_call(what, vol.path),
                           key=_call(what, vol.key), info=_call(what, vol.info))  # fmt: skip


def list_volumes(conn: HostConnection, pool: str) -> list[VolumeInfo]:
    """The volumes of an active pool ([] for an inactive one: libvirt lists none)."""
    p = _pool(conn, pool)
    if not _call(f"storage pool {pool}", p.isActive):
        return []
    return [_volume_info(pool, v) for v in _call(f"list volumes of {pool}", p.listAllVolumes, 0)]


def volume_info(conn: HostConnection, pool: str, name: str) -> VolumeInfo:
    return _volume_info(pool, _volume(conn, pool, name))


def pool_capabilities(conn: HostConnection) -> PoolCapabilities:
    """The pool types the host supports; a host that does not say is assumed to take the common ones."""
    try:
        return capabilities_from_xml(conn.raw.getStoragePoolCapabilities(0))
    except (libvirt.libvirtError, AttributeError):
        return PoolCapabilities(supported=CREATABLE_TYPES, unsupported=(), reported=False)


# --- pool operations ---------------------------------------------------------------------------------------
def pool_define(conn: HostConnection, xml: str) -> PoolInfo:
    return _pool_info(_call("define the storage pool", conn.raw.storagePoolDefineXML, xml, 0))


def pool_build(conn: HostConnection, name: str) -> None:
    """Make the pool's storage (a dir pool's directory, a logical pool's volume group...)."""
    _call(f"build storage pool {name}", _pool(conn, name).build, 0)


def pool_start(conn: HostConnection, name: str) -> None:
    _call(f"start storage pool {name}", _pool(conn, name).create, 0)


def pool_stop(conn: HostConnection, name: str) -> None:
    _call(f"stop storage pool {name}", _pool(conn, name).destroy)


def pool_refresh(conn: HostConnection, name: str) -> None:
    _call(f"refresh storage pool {name}", _pool(conn, name).refresh, 0)


def pool_set_autostart(conn: HostConnection, name: str, enabled: bool) -> None:
    _call(f"set autostart of storage pool {name}", _pool(conn, name).setAutostart, 1 if enabled else 0)


def pool_undefine(conn: HostConnection, name: str) -> None:
    """Forget the pool's definition (its storage stays where it is)."""
    _call(f"undefine storage pool {name}", _pool(conn, name).undefine)


def pool_delete(conn: HostConnection, name: str) -> None:
    """Remove the pool's storage (an inactive pool; a dir pool's directory must be empty)."""
    _call(f"delete the storage of pool {name}", _pool(conn, name).delete, 0)


def pool_volume_names(conn: HostConnection, name: str) -> list[str]:
    return list(_call(f"list volumes of {name}", _pool(conn, name).listVolumes))


# --- volume operations --------------------------------------------------------------------------------------
PREALLOC_FLAGS = {"none": 0, "metadata": libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA, "full": 0}


def volume_create(conn: HostConnection, pool: str, xml: str, *, preallocation: str = "none") -> VolumeInfo:
    """Create a volume; ``full`` preallocation is asked through the XML's allocation (= capacity)."""
    p = _pool(conn, pool)
    vol = _call(f"create a volume in {pool}", p.createXML, xml, PREALLOC_FLAGS.get(preallocation, 0))
    return _volume_info(pool, vol)


def volume_resize(conn: HostConnection, pool: str, name: str, capacity: int, *, allow_shrink: bool = False) -> None:
    flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if allow_shrink else 0
    _call(f"resize volume {name}", _volume(conn, pool, name).resize, int(capacity), flags)


def volume_wipe(conn: HostConnection, pool: str, name: str) -> None:
    """Overwrite the volume's data with zeros (its size stays)."""
    _call(f"wipe volume {name}", _volume(conn, pool, name).wipe, 0)


def volume_delete(conn: HostConnection, pool: str, name: str) -> None:
    _call(f"delete volume {name}", _volume(conn, pool, name).delete, 0)


def volume_clone(conn: HostConnection, pool: str, source: str, xml: str, *,
                 on_progress: Callable[[int], None] | None = None, poll: float = 0.5) -> VolumeInfo:  # fmt: skip
    """A copy of volume ``source`` (same pool) made by libvirt (createXMLFrom), with the copy's
    allocation reported while it grows."""
    p = _pool(conn, pool)
    src = _volume(conn, pool, source)
    name = _text(parse_xml(xml), "name")
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll):
            try:
                on_progress(int(p.storageVolLookupByName(name).info()[2]))  # type: ignore[misc]
            except libvirt.libvirtError:
                continue  # not there yet
            except Exception:
                log.exception("clone progress of %s", name)

    watcher = threading.Thread(target=watch, name=f"clone-watch {name}", daemon=True) if on_progress else None
    if watcher:
        watcher.start()
    try:
        vol = _call(f"clone volume {source}", p.createXMLFrom, xml, src, 0)
    finally:
        done.set()
        if watcher:
            watcher.join(5)
    return _volume_info(pool, vol)


# --- streams -------------------------------------------------------------------------------------------------
@dataclass
class Transfer:
    """What a stream moved: bytes of data and of holes, and the sha256 of the whole content
    (holes count as zeros)."""

    data: int = 0
    holes: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def total(self) -> int:
        return self.data + self.holes

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


_ZEROS = bytes(HOLE_BLOCK)


def zero_runs(data: bytes) -> Iterator[tuple[bool, int, int]]:
    """Split ``data`` into (is_hole, start, end): all-zero blocks of HOLE_BLOCK bytes are holes.
    (bytes.startswith compares in place: ~10 GB/s, no copies.)"""
    start, hole = 0, None
    for offset in range(0, len(data), HOLE_BLOCK):
        zero = offset + HOLE_BLOCK <= len(data) and data.startswith(_ZEROS, offset)
        if hole is None:
            hole = zero
        elif zero != hole:
            yield hole, start, offset
            start, hole = offset, zero
    if start < len(data):
        yield bool(hole), start, len(data)


_ZERO_CHUNK = memoryview(bytes(CHUNK))


def _hash_zeros(digest, length: int) -> None:
    while length > 0:
        piece = min(length, CHUNK)
        digest.update(_ZERO_CHUNK[:piece])
        length -= piece


class _Hasher(threading.Thread):
    """The sha256 of an upload, computed beside the stream (hashlib lets go of the GIL): pieces of
    data, or lengths of zeros, in order; at most a few pieces wait, so memory stays bounded."""

    def __init__(self, digest):
        super().__init__(name="upload-sha256", daemon=True)
        self.digest = digest
        self.pieces: queue.Queue = queue.Queue(maxsize=4)

    def run(self) -> None:
        while (piece := self.pieces.get()) is not None:
            if isinstance(piece, int):
                _hash_zeros(self.digest, piece)
            else:
                self.digest.update(piece)

    def add(self, piece: bytes | int) -> None:
        self.pieces.put(piece)

    def done(self) -> None:
        self.pieces.put(None)
        self.join()


class Upload:
    """A volume upload stream: feed it data in order, then finish (or abort). Zero runs are sent as
    holes, so a sparse image stays sparse on the host; the content's sha256 is computed on the way."""

    def __init__(self, conn: HostConnection, pool: str, name: str, *, length: int, offset: int = 0):
        self.name = name
        self.vol = _volume(conn, pool, name)
        self.stream = _call("open an upload stream", conn.raw.newStream, 0)
        self.transfer = Transfer()
        self.length = length
        flags = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM
        _call(f"upload to volume {name}", self.vol.upload, self.stream, offset, length, flags)
        self._open = True
        self._hasher = _Hasher(self.transfer.digest)
        self._hasher.start()

    def _send(self, data: bytes, start: int, end: int) -> None:
        # in messages of libvirt's own payload size: an 8 MiB send is ~40 % slower than 256 KiB ones
        for offset in range(start, end, SEND_PIECE):
            piece = data[offset : min(end, offset + SEND_PIECE)]
            _call(f"upload to volume {self.name}", self.stream.send, piece)

    def write(self, data: bytes) -> None:
        """Send ``data`` (holes where it is all zeros); raises if it would pass the announced length."""
        if self.transfer.total + len(data) > self.length:
            raise OperationInvalid(f"the upload is longer than the {self.length} bytes announced for {self.name}")
        self._hasher.add(data)
        for hole, start, end in zero_runs(data):
            if hole:
                _call(f"upload to volume {self.name}", self.stream.sendHole, end - start, 0)
                self.transfer.holes += end - start
            else:
                self._send(data, start, end)
                self.transfer.data += end - start

    def hole(self, length: int) -> None:
        """Send a hole of ``length`` bytes (a sparse source said so)."""
        if self.transfer.total + length > self.length:
            raise OperationInvalid(f"the upload is longer than the {self.length} bytes announced for {self.name}")
        _call(f"upload to volume {self.name}", self.stream.sendHole, length, 0)
        self._hasher.add(length)
        self.transfer.holes += length

    def finish(self) -> Transfer:
        if self.transfer.total != self.length:
            self.abort()
            raise OperationInvalid(f"the upload ended after {self.transfer.total} of {self.length} bytes")
        self._open = False
        _call(f"finish the upload to {self.name}", self.stream.finish)
        self._hasher.done()
        return self.transfer

    def abort(self) -> None:
        if self._hasher.is_alive():
            self._hasher.done()
        if self._open:
            self._open = False
            try:
                self.stream.abort()
            except libvirt.libvirtError:
                pass


def download(conn: HostConnection, pool: str, name: str, *, holes: bool = True
             ) -> Generator[tuple[bool, bytes | int], None, None]:  # fmt: skip
    """The volume's content: (False, bytes) for data and, with ``holes``, (True, length) for holes
    (without, holes come as zero bytes). The caller drives it; closing the iterator aborts."""
    vol = _volume(conn, pool, name)
    stream = _call("open a download stream", conn.raw.newStream, 0)
    _call(f"download volume {name}", vol.download, stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
    finished = False
    try:
        while True:
            got = _call(f"download volume {name}", stream.recvFlags, CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
            if got == -3:  # a hole
                length = int(_call(f"download volume {name}", stream.recvHole, 0))
                if holes:
                    yield True, length
                else:
                    while length > 0:
                        piece = min(length, CHUNK)
                        yield False, bytes(piece)
                        length -= piece
                continue
            if isinstance(got, int):
                raise VirtError(f"download of {name} failed (stream answered {got})")
            if not got:
                break
            yield False, got
        _call(f"finish the download of {name}", stream.finish)
        finished = True
    finally:
        if not finished:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass


def copy(src: HostConnection, src_pool: str, src_name: str, dst: HostConnection, dst_pool: str, dst_name: str, *,
         length: int, on_progress: Callable[[Transfer], None] | None = None,
         should_cancel: Callable[[], bool] | None = None, bandwidth: int = 0) -> Transfer:  # fmt: skip
    """Stream a volume from one host into an existing volume on another (holes stay holes);
    ``bandwidth``: at most this many bytes of data per second (holes cost nothing)."""
    upload = Upload(dst, dst_pool, dst_name, length=length)
    last = checked = 0.0
    started = time.monotonic()
    pieces = download(src, src_pool, src_name)
    try:
        for hole, piece in pieces:
            if should_cancel and time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if should_cancel():
                    raise OperationAborted(f"the copy of {src_name} was cancelled")
            if hole:
                upload.hole(int(piece))
            else:
                upload.write(piece)  # type: ignore[arg-type]
                if bandwidth:
                    ahead = upload.transfer.data / bandwidth - (time.monotonic() - started)
                    while ahead > 0:  # wait, but stay cancellable
                        time.sleep(min(ahead, 0.2))
                        if should_cancel and should_cancel():
                            raise OperationAborted(f"the copy of {src_name} was cancelled")
                        ahead = upload.transfer.data / bandwidth - (time.monotonic() - started)
            if on_progress and time.monotonic() - last > 0.5:
                last = time.monotonic()
                on_progress(upload.transfer)
        return upload.finish()
    except BaseException:
        upload.abort()
        pieces.close()
        raise


def sha256_of(conn: HostConnection, pool: str, name: str) -> str:
    """The sha256 of a volume's whole content, read back from the host."""
    digest = hashlib.sha256()
    for hole, piece in download(conn, pool, name):
        if hole:
            _hash_zeros(digest, int(piece))
        else:
            digest.update(piece)  # type: ignore[arg-type]
    return digest.hexdigest()


# --- events -------------------------------------------------------------------------------------------------
POOL_EVENTS = {
    libvirt.VIR_STORAGE_POOL_EVENT_DEFINED: "defined",
    libvirt.VIR_STORAGE_POOL_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_STORAGE_POOL_EVENT_STARTED: "started",
    libvirt.VIR_STORAGE_POOL_EVENT_STOPPED: "stopped",
    libvirt.VIR_STORAGE_POOL_EVENT_CREATED: "created",
    libvirt.VIR_STORAGE_POOL_EVENT_DELETED: "deleted",
}


@dataclass(frozen=True)
class PoolEvent:
    """A hint that a pool (or its volumes, on refresh) changed: the receiver re-reads it."""

    uuid: str
    name: str
    kind: str  # "lifecycle" or "refresh"
    detail: str = ""


def register_pool_events(conn: HostConnection, callback: Callable[[PoolEvent], None]) -> None:
    """Pool lifecycle and refresh events of this connection go to ``callback`` (on the loop thread)."""

    def lifecycle(_conn, pool, event, _detail, _opaque):
        callback(PoolEvent(uuid=pool.UUIDString(), name=pool.name(), kind="lifecycle",
                           detail=POOL_EVENTS.get(event, str(event))))  # fmt: skip

    def refresh(_conn, pool, _opaque):
        callback(PoolEvent(uuid=pool.UUIDString(), name=pool.name(), kind="refresh"))

    raw = conn.raw
    ids = []
    for event_id, handler in ((libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, lifecycle),
                              (libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH, refresh)):  # fmt: skip
        try:
            ids.append(raw.storagePoolEventRegisterAny(None, event_id, handler, None))
        except libvirt.libvirtError as exc:
            # a driver without pool events: the periodic resync and the jobs' re-reads still follow it
            log.debug("%s does not send storage pool events: %s", conn.uri, exc)
    conn.on_deregister(lambda: [raw.storagePoolEventDeregisterAny(i) for i in ids])
