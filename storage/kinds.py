"""Storage operations as job kinds: pools (define, build, start, stop, refresh, autostart, undefine,
delete) and volumes (create, resize, wipe, delete, clone, upload, download, copy to another host).

Each locks its pool or volume (by host and name, so one that does not exist yet can be locked),
needs the manage right on its host, checks what it can before libvirt is called, and re-reads the
pool when it ends. What a failed job made is removed (``undo``), and the job says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from hosts.connections import host_connection
from jobs import kinds
from jobs.kinds import JobCancelled, JobContext, JobFailed, Kind, Outcome, Subject
from virt import NotFound, VirtError
from virt import storage as vs

from . import params as P
from . import transfers
from .events import volume_changed
from .inventory import pool_reread
from .models import HostStorage, PoolState, StoragePool, Volume
from .selectors import vms_using

QUEUE = "storage"


# --- subjects: pools and volumes by host and name ------------------------------------------------------------
def pool_subject(pool: StoragePool) -> Subject:
    host = pool.host
    return Subject(noun="pool", name=pool.name, lock=f"pool:{host.pk}:{pool.name}", host=host,
                   label=f"pool {pool.name} on {host.name}")  # fmt: skip


def volume_subject(volume: Volume) -> Subject:
    pool = volume.pool
    return Subject(noun="volume", name=volume.name, lock=f"volume:{pool.host_id}:{pool.name}:{volume.name}",
                   host=pool.host, label=f"volume {volume.name} in {pool.name}")  # fmt: skip


def pool_facts(pool: StoragePool, _params: dict) -> dict:
    return {"pool": pool.name}


def volume_facts(volume: Volume, _params: dict) -> dict:
    return {"pool": volume.pool.name, "volume": volume.name}


def copy_facts(volume: Volume, params: dict) -> dict:
    target = StoragePool.objects.get(pk=params["target_pool"])
    return {**volume_facts(volume, params), "target_pool_name": target.name,
            "target_name": params["name"] or volume.name, "length": volume.length}  # fmt: skip


def reread_pool(job) -> None:
    """After any storage job: the pool (and its volumes) as the host has it now."""
    if job.host is not None:
        pool_reread(host=job.host, name=job.params["pool"], conn=host_connection(job.host))


# --- pools ------------------------------------------------------------------------------------------------
def _define(ctx: JobContext) -> Outcome:
    p = ctx.params
    name = p["pool"]
    source = vs.PoolSource(host=p["source_host"], dir=p["source_dir"] if p["type"] == "netfs" else "",
                           device=p["source_device"], name=p["source_name"], format=p["source_format"])  # fmt: skip
    xml = vs.pool_xml(name=name, type=p["type"], target=p["target_path"], source=source)
    ctx.progress(10, "defining the pool", record=True)
    vs.pool_define(ctx.conn, xml)
    ctx.note(defined=True)
    done = ["defined"]
    if p["build"]:
        ctx.progress(30, "building its storage", record=True)
        vs.pool_build(ctx.conn, name)
        done.append("built")
    if p["start"]:
        ctx.progress(60, "starting it", record=True)
        vs.pool_start(ctx.conn, name)
        ctx.note(started=True)
        done.append("started")
    if p["autostart"]:
        vs.pool_set_autostart(ctx.conn, name, True)
        done.append("set to start with the host")
    return Outcome(f"pool {name} {', '.join(done)}")


def _undo_define(job) -> str:
    facts = job.result or {}
    if not facts.get("defined") or job.host is None:
        return ""
    conn, name = host_connection(job.host), job.params["pool"]
    try:
        if facts.get("started"):
            vs.pool_stop(conn, name)
        vs.pool_undefine(conn, name)
    except NotFound:
        return "the pool it defined is gone already"
    return "undefined the pool it had defined (its storage, if built, was left in place)"


def _pool_check(*allowed: str, why: str = ""):
    def check(pool: StoragePool, params: dict, **_) -> str:
        if pool.host.state != "connected":
            return f"its host {pool.host.name} is {pool.host.get_state_display().lower()}"
        if allowed and pool.state not in allowed:
            return why or f"the pool is {pool.get_state_display().lower()}"
        return ""

    return check


def _check_define(pool: StoragePool, params: dict, **_) -> str:
    if pool.host.state != "connected":
        return f"its host {pool.host.name} is {pool.host.get_state_display().lower()}"
    if StoragePool.objects.filter(host=pool.host, name=pool.name).exists():
        return f"{pool.host.name} already has a pool named {pool.name}"
    caps = HostStorage.objects.filter(host=pool.host).first()
    supported = set(caps.pool_types) if caps and caps.reported else set(vs.CREATABLE_TYPES)
    if params["type"] not in supported:
        return f"{pool.host.name} does not support {params['type']} pools (it supports {', '.join(sorted(supported))})"
    return ""


def _pool_simple(call: Callable, message: str):
    def handler(ctx: JobContext) -> Outcome:
        call(ctx.conn, ctx.params["pool"])
        return Outcome(message)

    return handler


def _check_pool_delete(pool: StoragePool, params: dict, **_) -> str:
    base = _pool_check(PoolState.INACTIVE, why="stop the pool first")(pool, params)
    if base:
        return base
    users = vms_using(pool=pool)
    if users:
        return f"VMs use its volumes: {', '.join(sorted(u.name for u in users)[:10])}"
    return ""


def _check_undefine(pool: StoragePool, params: dict, **_) -> str:
    return _pool_check(PoolState.INACTIVE, why="stop the pool first (its volumes stay where they are)")(pool, params)


# --- volumes ----------------------------------------------------------------------------------------------
def _volume_ok(volume: Volume, *, exists: bool) -> str:
    pool = volume.pool
    if pool.host.state != "connected":
        return f"its host {pool.host.name} is {pool.host.get_state_display().lower()}"
    if not pool.is_active:
        return f"pool {pool.name} is {pool.get_state_display().lower()}; start it first"
    if not exists and Volume.objects.filter(pool=pool, name=volume.name).exists():
        return f"pool {pool.name} already has a volume named {volume.name}"
    return ""


def _room(pool: StoragePool, size: int) -> str:
    if size > pool.available:
        return f"it needs {P.human(size)} and pool {pool.name} has {P.human(pool.available)} free; choose a smaller size or another pool"
    return ""


def _format_refusal(pool: StoragePool, fmt: str) -> str:
    """Why ``pool`` cannot make a volume of format ``fmt``, as its host's storage capabilities say."""
    caps = HostStorage.objects.filter(host_id=pool.host_id).first()
    if caps is None or not caps.reported or fmt in ("", "same"):
        return ""
    formats = caps.volume_formats.get(pool.type)
    if formats is None:  # the type lists no volume formats: its volumes are plain (logical, disk, iscsi…)
        return "" if fmt == "raw" else f"a {pool.type} pool makes raw volumes only, not {fmt}"
    if fmt not in formats:
        return f"{pool.host.name} cannot make {fmt} volumes in a {pool.type} pool (it makes {', '.join(formats)})"
    return ""


def _check_create(volume: Volume, params: dict, **_) -> str:
    why = _format_refusal(volume.pool, params["format"])
    if why:
        return why
    why = _volume_ok(volume, exists=False) or _room(
        volume.pool, params["capacity"] if params["preallocation"] == "full" else 0
    )
    if why:
        return why
    if params["capacity"] > volume.pool.available and params["format"] == "raw":
        return _room(volume.pool, params["capacity"])
    backing = params.get("backing_volume")
    if backing and not Volume.objects.filter(pk=backing, pool__host=volume.pool.host).exists():
        return "the backing volume must be a volume of the same host"
    return ""


def _create(ctx: JobContext) -> Outcome:
    p = ctx.params
    backing = Volume.objects.filter(pk=p.get("backing_volume")).first() if p.get("backing_volume") else None
    capacity = p["capacity"]
    xml = vs.volume_xml(
        name=p["volume"], capacity=capacity, format=p["format"],
        allocation=capacity if p["preallocation"] == "full" else 0 if p["format"] == "raw" else None,
        backing_path=backing.path if backing else "", backing_format=backing.format if backing else "",
    )  # fmt: skip
    ctx.progress(10, f"creating {p['volume']} ({P.human(capacity)} {p['format']})", record=True)
    info = vs.volume_create(ctx.conn, p["pool"], xml, preallocation=p["preallocation"])
    over = f" on {backing.name}" if backing else ""
    return Outcome(f"created {info.name}: {P.human(info.capacity)} {info.format}{over}", {"path": info.path})


def _check_resize(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=True)
    if why:
        return why
    if params["capacity"] <= volume.capacity:
        return f"{P.human(params['capacity'])} is not larger than its {P.human(volume.capacity)} (shrinking loses data)"
    if volume.format == "raw" or volume.type == "block":
        return _room(volume.pool, params["capacity"] - volume.capacity)
    return ""


def _resize(ctx: JobContext) -> Outcome:
    vs.volume_resize(ctx.conn, ctx.params["pool"], ctx.params["volume"], ctx.params["capacity"])
    return Outcome(f"resized to {P.human(ctx.params['capacity'])}")


def _check_in_use(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=True)
    if why:
        return why
    users = vms_using(volume=volume)
    running = [u for u in users if u.state in ("running", "paused")]
    if running:
        return f"running VMs use it: {', '.join(sorted(u.name for u in running)[:10])}"
    return ""


def _check_delete(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=True)
    if why:
        return why
    users = vms_using(volume=volume)
    if users and not params.get("force"):
        names = ", ".join(sorted(u.name for u in users)[:10])
        return f"VMs use it: {names}. Remove it from them first (an administrator may delete it anyway, with force)"
    return ""


def _check_clone(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=True)
    if why:
        return why
    if Volume.objects.filter(pool=volume.pool, name=params["name"]).exists():
        return f"pool {volume.pool.name} already has a volume named {params['name']}"
    return _format_refusal(volume.pool, params["format"]) or _room(volume.pool, volume.allocation)


def _clone(ctx: JobContext) -> Outcome:
    p = ctx.params
    source = vs.volume_info(ctx.conn, p["pool"], p["volume"])
    fmt = source.format if p["format"] == "same" else p["format"]
    xml = vs.volume_xml(name=p["name"], capacity=source.capacity, format=fmt)
    ctx.note(made=p["name"])
    expected = max(1, source.allocation)

    def progress(allocation: int) -> None:
        ctx.progress(
            min(99, 100 * allocation // expected), f"copying: {P.human(allocation)} of about {P.human(expected)}"
        )

    info = vs.volume_clone(ctx.conn, p["pool"], p["volume"], xml, on_progress=progress)
    ctx.note(made="")
    return Outcome(
        f"cloned {p['volume']} as {info.name} ({P.human(info.allocation)} {info.format})", {"path": info.path}
    )


def _undo_made(job) -> str:
    """Remove the volume a failed job was making (recorded by the handler as ``made``)."""
    made = (job.result or {}).get("made")
    if not made or job.host is None:
        return ""
    pool = job.params.get("target_pool_name") or job.params["pool"]
    host = job.target_host or job.host
    try:
        vs.volume_delete(host_connection(host), pool, made)
    except NotFound:
        return f"the partial volume {made} is gone already"
    except VirtError as exc:
        mark_left_behind(job, host, pool, made)
        return (f"the partial volume {made} could not be removed ({exc}): it is marked partial and is removed "
                f"when {host.name} answers again")  # fmt: skip
    return f"removed the partial volume {made}"


def mark_left_behind(job, host, pool_name: str, name: str) -> None:
    """Remember a partial volume a failed job could not remove (storage.inventory removes it)."""
    pool = StoragePool.objects.filter(host=host, name=pool_name).first()
    if pool is None:
        return
    epoch = timezone.make_aware(datetime(2000, 1, 1))  # any answer from the host is newer
    volume, _ = Volume.objects.get_or_create(pool=pool, name=name, defaults={"observed_at": epoch})
    Volume.objects.filter(pk=volume.pk).update(left_by=job)
    volume.left_by = job
    volume_changed(volume)


# --- transfers --------------------------------------------------------------------------------------------
def _rate(done: int, started: float, total: int) -> str:
    seconds = max(0.001, time.monotonic() - started)
    speed = done / seconds
    left = f", about {int((total - done) / speed)} s left" if speed and total > done else ""
    return f"{P.human(done)} of {P.human(total)} at {P.human(int(speed))}/s{left}"


def _stall_timeout() -> float:
    return float(settings.VIRTFLEET.get("UPLOAD_STALL_TIMEOUT", 600))


def _check_upload(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=params["overwrite"])
    if why:
        return why
    if params["overwrite"]:
        if not volume.pk:
            return f"pool {volume.pool.name} has no volume named {volume.name} to overwrite"
        if params["size"] > volume.capacity:
            return f"the file ({P.human(params['size'])}) is larger than the volume ({P.human(volume.capacity)})"
        users = [u for u in vms_using(volume=volume) if u.state in ("running", "paused")]
        if users:
            return f"running VMs use it: {', '.join(sorted(u.name for u in users))}"
        return ""
    return _room(volume.pool, params["size"])


def _upload(ctx: JobContext) -> Outcome:
    p, job = ctx.params, ctx.job
    size, name, pool = p["size"], p["volume"], p["pool"]
    if not p["overwrite"]:
        vs.volume_create(ctx.conn, pool, vs.volume_xml(name=name, capacity=size, format="raw", allocation=0))
        ctx.note(made=name)
    upload = vs.Upload(ctx.conn, pool, name, length=size)
    queue = transfers.UploadQueue(job.pk)
    started = last = time.monotonic()
    waited_since = time.monotonic()
    ctx.progress(0, "waiting for the browser to send the file", record=True)
    try:
        while upload.transfer.total < size:
            try:
                item = queue.take(timeout=2)
            except transfers.LostChunk as exc:
                raise JobFailed(f"{exc}: start the upload again", code="lost_chunk") from None
            if item is None:
                if ctx.cancelled():
                    raise JobCancelled("cancelled during the upload")
                if time.monotonic() - waited_since > _stall_timeout():
                    raise JobFailed(f"the upload stalled: no data for {int(_stall_timeout())} s (the browser went away?)",
                                    code="stalled")  # fmt: skip
                continue
            offset, data = item
            if offset != upload.transfer.total:
                raise JobFailed(
                    f"a chunk came for offset {offset} while {upload.transfer.total} was expected", code="order"
                )
            if isinstance(data, int):
                upload.hole(data)  # zeros the browser saw and did not send
            else:
                upload.write(data)
            waited_since = time.monotonic()
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                queue.touch()
                ctx.progress(
                    int(99 * upload.transfer.total / size), "uploading: " + _rate(upload.transfer.total, started, size)
                )
                if ctx.cancelled():
                    raise JobCancelled("cancelled during the upload")
        result = upload.finish()
    except BaseException:
        upload.abort()
        raise
    finally:
        transfers.close_transfer(job.pk)
    return _verify_upload(ctx, result, started)


def _verify_upload(ctx: JobContext, result: vs.Transfer, started: float) -> Outcome:
    p = ctx.params
    vs.pool_refresh(ctx.conn, p["pool"])  # libvirt then reads the image's format and size
    info = vs.volume_info(ctx.conn, p["pool"], p["volume"])
    if p["sha256"] and p["sha256"] != result.sha256:
        raise JobFailed(f"the checksum is {result.sha256}, not the {p['sha256']} expected: the file is not the one meant",
                        code="checksum")  # fmt: skip
    if info.backing_path:
        raise JobFailed(f"the image names a backing file ({info.backing_path}): uploads must be self-contained",
                        code="backing_file")  # fmt: skip
    if (
        p["format"] not in ("auto", "")
        and p["format"] != info.format
        and not (p["format"] == "iso" and info.format == "raw")
    ):
        raise JobFailed(f"the file is a {info.format} image, not {p['format']}", code="format")
    ctx.note(made="", sha256=result.sha256)
    seconds = time.monotonic() - started
    return Outcome(
        f"uploaded {P.human(result.total)} in {seconds:.1f} s ({P.human(int(result.total / max(seconds, 0.001)))}/s), "
        f"{P.human(info.allocation)} on disk; sha256 {result.sha256}",
        {"sha256": result.sha256, "bytes": result.total, "holes": result.holes, "allocation": info.allocation,
         "format": info.format, "seconds": round(seconds, 2)},
    )  # fmt: skip


def _download(ctx: JobContext) -> Outcome:
    p, job = ctx.params, ctx.job
    queue = transfers.DownloadQueue(job.pk)
    started = last = time.monotonic()
    total = p.get("length", 0)
    sent = 0
    pieces = vs.download(ctx.conn, p["pool"], p["volume"], holes=False)
    try:
        for _hole, data in pieces:
            while not queue.room():
                if queue.gone():
                    raise JobCancelled("the browser stopped the download")
                if ctx.cancelled():
                    raise JobCancelled("cancelled during the download")
                time.sleep(0.02)
            queue.put(data)  # type: ignore[arg-type]
            sent += len(data)  # type: ignore[arg-type]
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                ctx.progress(min(99, int(99 * sent / max(1, total))), "downloading: " + _rate(sent, started, total))
                if queue.gone():
                    raise JobCancelled("the browser stopped the download")
        queue.end()
    except BaseException as exc:
        pieces.close()
        queue.end(str(exc) or "the download failed")
        raise
    seconds = time.monotonic() - started
    return Outcome(f"downloaded {P.human(sent)} in {seconds:.1f} s", {"bytes": sent, "seconds": round(seconds, 2)})


def _check_copy(volume: Volume, params: dict, **_) -> str:
    why = _volume_ok(volume, exists=True)
    if why:
        return why
    target = StoragePool.objects.select_related("host").filter(pk=params["target_pool"]).first()
    if target is None:
        return "there is no such target pool"
    name = params["name"] or volume.name
    if target.pk == volume.pool_id and name == volume.name:
        return "choose another pool or another name: it is this volume"
    clash = Volume(pool=target, name=name)
    return _volume_ok(clash, exists=False) or _room(target, volume.length)


def _copy(ctx: JobContext) -> Outcome:
    p, job = ctx.params, ctx.job
    target_host = job.target_host
    if target_host is None:
        raise JobFailed("the target host was removed", code="no_host")
    dst = host_connection(target_host)
    source = vs.volume_info(ctx.conn, p["pool"], p["volume"])
    length = source.length
    name, pool = p["target_name"], p["target_pool_name"]
    vs.volume_create(dst, pool, vs.volume_xml(name=name, capacity=length, format="raw", allocation=0))
    ctx.note(made=name)
    started = time.monotonic()

    def progress(transfer: vs.Transfer) -> None:
        ctx.progress(min(99, int(99 * transfer.total / max(1, length))),
                     f"copying to {target_host.name}: " + _rate(transfer.total, started, length))  # fmt: skip

    try:
        result = vs.copy(ctx.conn, p["pool"], p["volume"], dst, pool, name, length=length, on_progress=progress,
                         should_cancel=ctx.cancelled, bandwidth=p.get("bandwidth", 0) * 2**20)  # fmt: skip
    except vs.OperationAborted:
        raise JobCancelled("cancelled during the copy") from None
    vs.pool_refresh(dst, pool)
    ctx.note(made="", sha256=result.sha256)
    seconds = time.monotonic() - started
    return Outcome(
        f"copied {P.human(result.total)} to {pool} on {target_host.name} in {seconds:.1f} s "
        f"({P.human(result.holes)} of it holes, kept as holes); sha256 {result.sha256}",
        {"sha256": result.sha256, "bytes": result.total, "holes": result.holes, "seconds": round(seconds, 2)},
    )


def reread_both_pools(job) -> None:
    reread_pool(job)
    if job.target_host is not None and job.params.get("target_pool_name"):
        pool_reread(host=job.target_host, name=job.params["target_pool_name"], conn=host_connection(job.target_host))


# --- the registrations ----------------------------------------------------------------------------------------
def _pool_kind(name: str, label: str, handler, check, **extra) -> Kind:
    return Kind(name=name, label=label, handler=handler, subject=pool_subject, lock="pool", queue=QUEUE,
                right="manage", audit_action=name, check=check, after=reread_pool, facts=pool_facts,
                **extra)  # fmt: skip


def _volume_kind(name: str, label: str, handler, check, **extra) -> Kind:
    extra.setdefault("after", reread_pool)
    extra.setdefault("facts", volume_facts)
    return Kind(name=name, label=label, handler=handler, subject=volume_subject, lock="volume", queue=QUEUE,
                right="manage", audit_action=name, check=check, **extra)  # fmt: skip


def _simple_volume(call: Callable, message: str):
    def handler(ctx: JobContext) -> Outcome:
        call(ctx.conn, ctx.params["pool"], ctx.params["volume"])
        return Outcome(message)

    return handler


ACTIVE, INACTIVE = PoolState.ACTIVE, PoolState.INACTIVE
for _kind in [
    _pool_kind("pool.define", "Define pool", _define, _check_define, params=P.PoolDefineParams, undo=_undo_define),
    _pool_kind("pool.build", "Build pool", _pool_simple(vs.pool_build, "storage built"),
               _pool_check(INACTIVE, why="a pool is built before it starts; stop it first")),
    _pool_kind("pool.start", "Start pool", _pool_simple(vs.pool_start, "started"),
               _pool_check(INACTIVE, why="it is running already")),
    _pool_kind("pool.stop", "Stop pool", _pool_simple(vs.pool_stop, "stopped"), _pool_check(ACTIVE)),
    _pool_kind("pool.refresh", "Refresh pool", _pool_simple(vs.pool_refresh, "refreshed"), _pool_check(ACTIVE)),
    _pool_kind("pool.autostart_on", "Autostart pool",
               _pool_simple(lambda c, n: vs.pool_set_autostart(c, n, True), "starts with its host"), _pool_check()),
    _pool_kind("pool.autostart_off", "Do not autostart pool",
               _pool_simple(lambda c, n: vs.pool_set_autostart(c, n, False), "no longer starts with its host"),
               _pool_check()),
    _pool_kind("pool.undefine", "Undefine pool", _pool_simple(vs.pool_undefine, "undefined (its storage stays)"),
               _check_undefine),
    _pool_kind("pool.delete", "Delete pool storage", _pool_simple(vs.pool_delete, "its storage was deleted"),
               _check_pool_delete),
    _volume_kind("volume.create", "Create volume", _create, _check_create, params=P.VolumeCreateParams),
    _volume_kind("volume.resize", "Resize volume", _resize, _check_resize, params=P.ResizeParams),
    _volume_kind("volume.wipe", "Wipe volume", _simple_volume(vs.volume_wipe, "wiped (overwritten with zeros)"),
                 _check_in_use),
    _volume_kind("volume.delete", "Delete volume", _simple_volume(vs.volume_delete, "deleted"), _check_delete,
                 params=P.DeleteVolumeParams),
    _volume_kind("volume.clone", "Clone volume", _clone, _check_clone, params=P.CloneParams, undo=_undo_made,
                 cancellable=False),
    _volume_kind("volume.upload", "Upload to volume", _upload, _check_upload, params=P.UploadParams,
                 undo=_undo_made, cancellable=True, retry_transient=False),
    _volume_kind("volume.download", "Download volume", _download, lambda v, p, **_: _volume_ok(v, exists=True),
                 cancellable=True, retry_transient=False, after=None),
    _volume_kind("volume.copy", "Copy volume", _copy, _check_copy, params=P.CopyParams, undo=_undo_made,
                 cancellable=True, retry_transient=False, after=reread_both_pools, facts=copy_facts),
]:  # fmt: skip
    kinds.register(_kind)
