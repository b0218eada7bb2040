"""Live and offline migration between two hosts: pre-flight checks, the migration itself with a
progress watcher, cancel (abortJob) and the switch to post-copy.

Peer-to-peer: the source libvirtd connects to the destination itself (``dest_uri`` must be
reachable from the source host), the destination definition is made persistent and the source
one removed, so the VM lives on exactly one host afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .connection import HostConnection
from .domains import domain_disks, element_kib, parse_xml, power_state
from .errors import OperationAborted, translate

COPY_STORAGE = {"": 0, "all": libvirt.VIR_MIGRATE_NON_SHARED_DISK, "inc": libvirt.VIR_MIGRATE_NON_SHARED_INC}
log = logging.getLogger(__name__)
MEMORY_HEADROOM = 64 * 2**20  # keep this much free on the destination beyond the guest's memory


@dataclass(frozen=True)
class MigrationOptions:
    live: bool = True  # False: offline migration of a shut-off VM's definition
    copy_storage: str = ""  # "", "all" or "inc" (disks not on shared storage)
    bandwidth_mibs: int = 0  # 0 = unlimited
    max_downtime_ms: int = 0  # 0 = libvirt's default (300 ms)
    auto_converge: bool = False
    compressed: bool = False
    postcopy: bool = False  # allow switching to post-copy while it runs
    address: str = ""  # destination address for the migration stream (tcp://<address>)

    def flags(self) -> int:
        flags = libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if self.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
            if self.auto_converge:
                flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
            if self.compressed:
                flags |= libvirt.VIR_MIGRATE_COMPRESSED
            if self.postcopy:
                flags |= libvirt.VIR_MIGRATE_POSTCOPY
        else:
            flags |= libvirt.VIR_MIGRATE_OFFLINE
        flags |= COPY_STORAGE[self.copy_storage]
        return flags

    def params(self) -> dict:
        params: dict = {}
        if self.address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{self.address}"
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = self.address
        if self.bandwidth_mibs:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(self.bandwidth_mibs)
        return params


@dataclass(frozen=True)
class MigrationProgress:
    """One reading of the migration job on the source (jobStats)."""

    phase: str  # "starting", "copying memory", "copying disks", "post-copy", "finishing"
    percent: int
    elapsed_ms: int
    data_total: int
    data_processed: int
    data_remaining: int
    memory_bps: int
    dirty_rate_bps: int
    expected_downtime_ms: int
    iteration: int
    postcopy: bool


@dataclass(frozen=True)
class Check:
    """One pre-flight check: ``ok`` False with ``message`` saying why blocks the migration."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class MigrationResult:
    seconds: float
    progress_readings: int
    last: MigrationProgress | None


@dataclass
class _Watch:
    """What the watcher thread of one migration has seen and done."""

    readings: int = 0
    last: MigrationProgress | None = None
    postcopy: bool = False
    aborted: bool = False
    downtime_set: bool = False


def progress_from_stats(stats: dict, *, postcopy: bool = False) -> MigrationProgress:
    total = int(stats.get("data_total", 0) or 0)
    processed = int(stats.get("data_processed", 0) or 0)
    remaining = int(stats.get("data_remaining", 0) or 0)
    disk_remaining = int(stats.get("disk_remaining", 0) or 0)
    page = int(stats.get("memory_page_size", 4096) or 4096)
    if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
        phase = "starting"
    elif postcopy:
        phase = "post-copy"
    elif disk_remaining:
        phase = "copying disks"
    elif total and remaining == 0:
        phase = "finishing"
    else:
        phase = "copying memory"
    # Zero pages are skipped, not sent: what is left says more than what was sent.
    percent = int(100 * (total - remaining) / total) if total else 0
    return MigrationProgress(
        phase=phase,
        percent=max(0, min(99, percent)),
        elapsed_ms=int(stats.get("time_elapsed", 0) or 0),
        data_total=total,
        data_processed=processed,
        data_remaining=remaining,
        memory_bps=int(stats.get("memory_bps", 0) or 0),
        dirty_rate_bps=int(stats.get("memory_dirty_rate", 0) or 0) * page,
        expected_downtime_ms=int(stats.get("downtime", 0) or 0),
        iteration=int(stats.get("memory_iteration", 0) or 0),
        postcopy=postcopy,
    )


# --- pre-flight ------------------------------------------------------------------------------------
def preflight(src: HostConnection, dst: HostConnection, uuid: str, options: MigrationOptions) -> list[Check]:
    """Everything that would make this migration fail, checked before it starts."""
    checks: list[Check] = []
    try:
        dom = src.raw.lookupByUUIDString(uuid)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        state, reason = dom.state()
        src_caps = parse_xml(src.raw.getCapabilities())
        dst_caps = parse_xml(dst.raw.getCapabilities())
        dst_type = dst.raw.getType()
        src_type = src.raw.getType()
    except libvirt.libvirtError as exc:
        raise translate(exc, context="pre-flight") from None
    root = parse_xml(xml)
    power = power_state(state, reason)[0]
    name = root.findtext("name") or uuid

    src_uuid = (src_caps.findtext("./host/uuid") or "").lower()
    dst_uuid = (dst_caps.findtext("./host/uuid") or "").lower()
    same = bool(src_uuid) and src_uuid == dst_uuid
    checks.append(
        Check("distinct host", not same, "the target is the VM's current host" if same else "a different host")
    )

    if options.live and power not in ("running", "paused"):
        checks.append(
            Check("state", False, f"a live migration needs a running VM; {name} is {power} (migrate it offline)")
        )
    elif not options.live and power != "shutoff":
        checks.append(Check("state", False, f"an offline migration needs a shut-off VM; {name} is {power}"))
    else:
        checks.append(Check("state", True, f"{name} is {power}"))

    src_arch = src_caps.findtext("./host/cpu/arch") or ""
    dst_arch = dst_caps.findtext("./host/cpu/arch") or ""
    guest_arch = (root.find("./os/type").get("arch") if root.find("./os/type") is not None else "") or src_arch
    dst_guest_arches = {g.get("name") for g in dst_caps.findall("./guest/arch")}
    arch_ok = guest_arch in dst_guest_arches or guest_arch == dst_arch
    checks.append(
        Check(
            "architecture",
            arch_ok,
            f"{guest_arch} guests {'are' if arch_ok else 'are not'} supported on the target ({dst_arch})",
        )
    )
    hv_ok = src_type == dst_type
    checks.append(
        Check("hypervisor", hv_ok, f"{src_type} → {dst_type}" + ("" if hv_ok else ": the hypervisors differ"))
    )

    checks.append(_cpu_check(dst, root, src_caps, guest_arch))

    if options.live:
        memory = element_kib(root.find("memory")) * 1024
        try:
            free = int(dst.raw.getFreeMemory())
        except libvirt.libvirtError as exc:
            free = 0
            checks.append(Check("memory", False, f"cannot read the target's free memory: {exc.get_error_message()}"))
        else:
            enough = free >= memory + MEMORY_HEADROOM
            message = f"needs {memory // 2**20} MiB, the target has {free // 2**20} MiB free"
            checks.append(Check("memory", enough, message if enough else message + " — not enough"))

    clash = _same_on_target(dst, uuid, name)
    checks.append(Check("no duplicate", clash == "", clash or f"no domain named {name} or with its UUID on the target"))

    checks.append(_storage_check(dst, xml, options))
    return checks


def _cpu_check(dst: HostConnection, root, src_caps, guest_arch: str) -> Check:
    cpu = root.find("cpu")
    mode = cpu.get("mode", "custom") if cpu is not None else ""
    if cpu is None or (mode == "custom" and cpu.find("model") is None):
        return Check("cpu", True, "the VM uses the hypervisor's default CPU model")
    if mode == "host-passthrough":
        host_cpu = src_caps.find("./host/cpu")
        cpu_xml = _tostring(host_cpu) if host_cpu is not None else ""
        subject = "the source host's CPU (the VM passes it through)"
    else:
        cpu_xml = _tostring(cpu)
        subject = f"the VM's CPU ({mode})"
    os_type = root.find("./os/type")
    machine = os_type.get("machine") if os_type is not None else None
    emulator = root.findtext("./devices/emulator") or None
    virttype = root.get("type") or None  # 'kvm' or 'qemu' (TCG): what the destination must offer
    try:
        result = dst.raw.compareHypervisorCPU(emulator, guest_arch or None, machine, virttype, cpu_xml, 0)
    except libvirt.libvirtError as exc:
        err = translate(exc)
        if err.code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            try:
                result = dst.raw.compareCPU(cpu_xml, 0)
            except libvirt.libvirtError as exc2:
                return Check(
                    "cpu",
                    True,
                    f"cannot compare CPUs on the target ({exc2.get_error_message()}); libvirt checks again when migrating",
                )
        else:
            return Check("cpu", False, f"the target cannot run {subject}: {err.message}")
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return Check("cpu", False, f"the target's CPU cannot run {subject}")
    return Check("cpu", True, f"the target can run {subject}")


def _tostring(el) -> str:
    import xml.etree.ElementTree as ET  # serialising a tree defusedxml parsed

    return ET.tostring(el, encoding="unicode")


def _same_on_target(dst: HostConnection, uuid: str, name: str) -> str:
    for lookup, what in ((dst.raw.lookupByUUIDString, uuid), (dst.raw.lookupByName, name)):
        try:
            other = lookup(what)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue
            return f"cannot check the target: {exc.get_error_message()}"
        return f"the target already has a domain {other.name()} ({other.UUIDString()})"
    return ""


def _storage_check(dst: HostConnection, xml: str, options: MigrationOptions) -> Check:
    disks = [d for d in domain_disks(xml) if d.device == "disk" and (d.path or d.volume)]
    if not disks:
        return Check("storage", True, "the VM has no disks to move")
    if options.copy_storage:
        return Check("storage", True, f"{len(disks)} disk(s) will be copied ({options.copy_storage})")
    missing = []
    for disk in disks:
        try:
            if disk.volume:
                dst.raw.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
            else:
                dst.raw.storageVolLookupByPath(disk.path)
        except libvirt.libvirtError:
            missing.append(disk.label)
    if missing:
        return Check(
            "storage",
            False,
            f"the target does not see {', '.join(missing)}: choose copy storage, or put the disks on shared storage",
        )
    return Check("storage", True, "every disk is on storage the target sees (shared)")


# --- the migration ---------------------------------------------------------------------------------
def migrate(
    src: HostConnection,
    uuid: str,
    dest_uri: str,
    options: MigrationOptions,
    *,
    on_progress: Callable[[MigrationProgress], None] = lambda p: None,
    should_cancel: Callable[[], bool] = lambda: False,
    should_postcopy: Callable[[], bool] = lambda: False,
    poll: float = 0.25,
) -> MigrationResult:
    """Migrate ``uuid`` from ``src`` to ``dest_uri`` (peer to peer) and watch it until it ends.

    A watcher thread reads jobStats every ``poll`` seconds and reports progress; it aborts the
    job when ``should_cancel()`` turns true (raising OperationAborted here; the VM keeps running
    on the source) and starts post-copy when ``should_postcopy()`` does.
    """
    try:
        dom = src.raw.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        raise translate(exc, context="migrate") from None
    name = dom.name()
    done = threading.Event()
    state = _Watch()

    def watch() -> None:
        while not done.wait(poll):
            try:
                if should_cancel() and not state.aborted:
                    state.aborted = True
                    dom.abortJob()
                    continue
                if options.live and options.postcopy and not state.postcopy and should_postcopy():
                    dom.migrateStartPostCopy(0)
                    state.postcopy = True
                if options.live and options.max_downtime_ms and not state.downtime_set:
                    dom.migrateSetMaxDowntime(int(options.max_downtime_ms), 0)
                    state.downtime_set = True
                stats = dom.jobStats(0)
            except libvirt.libvirtError:
                continue  # the job ended between two readings, or the call is not valid yet
            except Exception:  # a failing callback must not kill the watcher (cancel depends on it)
                log.exception("migration watcher of %s", name)
                continue
            if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE and state.readings:
                continue
            reading = progress_from_stats(stats, postcopy=state.postcopy)
            state.readings += 1
            state.last = reading
            try:
                on_progress(reading)
            except Exception:
                log.exception("reporting migration progress of %s", name)

    watcher = threading.Thread(target=watch, name=f"migration-watch {name}", daemon=True)
    started = time.monotonic()
    watcher.start()
    try:
        dom.migrateToURI3(dest_uri, options.params(), options.flags())
    except libvirt.libvirtError as exc:
        err = translate(exc, context=f"migrate {name}")
        if state.aborted and not isinstance(err, OperationAborted):
            raise OperationAborted(err.message, code=err.code) from None
        raise err from None
    finally:
        done.set()
        watcher.join(5)
    return MigrationResult(seconds=time.monotonic() - started, progress_readings=state.readings, last=state.last)
