"""Snapshots as job kinds: ``snapshot.create``, ``snapshot.revert``, ``snapshot.delete`` (one, or
with its subtree).

Each locks its VM (never beside a migration or a lifecycle job of the same VM) and needs the
configure right (a revert throws the VM's current state away). ``check`` refuses early, from the
database's copy of the VM's XML and its host's libvirt version, what virt.snapshots.refusal says
cannot be done safely; the handler asks libvirt again before acting. After every job, whatever its
end, the VM's snapshot list is re-read from libvirt. A job whose worker died is judged by what
libvirt lists once the domain's own job (a memory snapshot being saved) has ended; a failed create
removes its half-made snapshot only if libvirt lists it, and only the snapshot (never a disk file).
"""

from __future__ import annotations

import logging

from hosts.connections import host_connection
from jobs import kinds
from jobs.engine import job_progress
from jobs.kinds import JobContext, JobFailed, Kind, Outcome, Verdict
from storage.params import human
from virt import HostUnreachable, VirtError
from virt import snapshots as vsnap
from vms.inventory import vm_reread
from vms.kinds import vm_subject
from vms.models import VM

from . import params as P
from .inventory import snapshots_reread
from .selectors import refusal_for, snapshot_infos

log = logging.getLogger(__name__)
QUEUE = "lifecycle"
IDLE_WAIT = 120.0  # seconds a judge or undo waits for libvirt to finish a snapshot it is still saving


def _request(params: dict) -> vsnap.Request:
    return vsnap.Request(name=params["name"], description=params.get("description", ""),
                         memory=bool(params.get("memory", True)), disk_only=bool(params.get("disk_only")),
                         quiesce=bool(params.get("quiesce")))  # fmt: skip


# --- checks (in the request, from the database) -----------------------------------------------------------
def _check_create(vm: VM, params: dict, **_) -> str:
    return refusal_for(vm=vm, action="create", request=_request(params))


def _check_revert(vm: VM, params: dict, **_) -> str:
    return refusal_for(vm=vm, action="revert", name=params["name"])


def _check_delete(vm: VM, params: dict, **_) -> str:
    return refusal_for(vm=vm, action="delete", name=params["name"], children=params["children"])


def _create_facts(vm: VM, params: dict) -> dict:
    return {"state_before": vm.state}


def _revert_facts(vm: VM, params: dict) -> dict:
    current = next((s.name for s in snapshot_infos(vm=vm) if s.current), "")
    return {"current_before": current}


def _delete_facts(vm: VM, params: dict) -> dict:
    below = [s.name for s in vsnap.subtree(snapshot_infos(vm=vm), params["name"])] if params["children"] else []
    return {"subtree": below}


# --- handlers (on a worker) -----------------------------------------------------------------------------------
def _refused_now(ctx: JobContext, action: str, **kwargs) -> None:
    """Ask libvirt again (the database's copy may be behind): refuse what is not safe now."""
    xml, state = vsnap.domain_facts(ctx.conn, ctx.uuid)
    why = vsnap.refusal(action=action, libvirt_version=vsnap.libvirt_version(ctx.conn), domain_xml=xml, state=state,
                        snapshots=vsnap.list_snapshots(ctx.conn, ctx.uuid), **kwargs)  # fmt: skip
    if why:
        raise JobFailed(f"refused: {why}", code="refused")


def _growth(before: dict[str, int], after: dict[str, int]) -> int | None:
    common = set(before) & set(after)
    if not common:
        return None
    return sum(max(0, after[t] - before[t]) for t in common)


def _create(ctx: JobContext) -> Outcome:
    req = _request(ctx.params)
    conn, uuid, job = ctx.conn, ctx.uuid, ctx.job
    ctx.progress(2, "checking the VM and its snapshots on the host", record=True)
    _refused_now(ctx, "create", request=req)
    xml, state = vsnap.domain_facts(conn, uuid)
    live = state in ("running", "paused")
    what = "disk-only (external)" if req.disk_only else ("with memory" if live else "of the disks (shut off)")
    if req.disk_only:
        what += ", quiesced" if req.quiesce else f" — {vsnap.quiesce_note(xml)}"
    before = {} if req.disk_only else _allocations(ctx)
    ctx.note(creating=req.name)  # before libvirt starts: undo and judge know what to look for
    ctx.progress(5, f"taking snapshot {req.name} {what}", record=True)

    def report(p: vsnap.Progress) -> None:
        job_progress(job, 5 + p.percent * 85 // 100, p.message)

    try:
        info = vsnap.create(conn, uuid, req, on_progress=report)
    except VirtError as exc:
        raise JobFailed(f"libvirt did not take snapshot {req.name}: {exc}", code="create") from None
    ctx.note(creating=req.name, made=True)
    ctx.progress(92, "measuring its size", record=True)
    size, size_kind = None, ""
    try:
        if info.external:
            size, size_kind = vsnap.external_size(conn, info), "files"
        else:
            size, size_kind = _growth(before, _allocations(ctx)), "taken"
    except VirtError as exc:
        log.info("snapshot %s of %s: size not measured: %s", req.name, uuid, exc)
    sized = f"; {human(size)} when taken" if size is not None and size_kind == "taken" else (
        f"; its files hold {human(size)}" if size is not None else "")  # fmt: skip
    facts = {**(job.result or {}), "made": True, "size": size, "size_kind": size_kind if size is not None else ""}
    ctx.note(**facts)
    return Outcome(f"snapshot {req.name} taken ({what}){sized}", facts)


def _allocations(ctx: JobContext) -> dict[str, int]:
    try:
        return vsnap.disk_allocations(ctx.conn, ctx.uuid)
    except VirtError as exc:
        log.info("disk allocations of %s not read: %s", ctx.uuid, exc)
        return {}


def _revert(ctx: JobContext) -> Outcome:
    p = ctx.params
    ctx.progress(5, "checking the snapshot on the host", record=True)
    _refused_now(ctx, "revert", name=p["name"])
    ctx.note(reverting=p["name"])
    ctx.progress(20, f"reverting to {p['name']}" + (f", then {p['after']}" if p["after"] else ""), record=True)
    try:
        state = vsnap.revert(ctx.conn, ctx.uuid, p["name"], after=p["after"], force=p["force"])
    except vsnap.SnapshotNotFound as exc:
        raise JobFailed(str(exc), code="not_found") from None
    except VirtError as exc:
        hint = "; libvirt asks for force (the snapshot's definition differs)" if "force" in exc.message.lower() else ""
        raise JobFailed(f"libvirt did not revert to {p['name']}: {exc}{hint}", code="revert") from None
    return Outcome(f"reverted to {p['name']}; the VM is {state.replace('shutoff', 'shut off')}", {"state": state})


def _delete(ctx: JobContext) -> Outcome:
    p = ctx.params
    ctx.progress(5, "checking the snapshot on the host", record=True)
    _refused_now(ctx, "delete", name=p["name"], children=p["children"])
    below = p.get("subtree") or []
    ctx.note(deleting=p["name"])
    ctx.progress(20, f"deleting {p['name']}" + (f" and the {len(below)} snapshot(s) below it" if below else ""),
                 record=True)  # fmt: skip
    try:
        vsnap.delete(ctx.conn, ctx.uuid, p["name"], children=p["children"])
    except vsnap.SnapshotNotFound as exc:
        raise JobFailed(str(exc), code="not_found") from None
    except VirtError as exc:
        raise JobFailed(f"libvirt did not delete {p['name']}: {exc}", code="delete") from None
    gone = [p["name"], *below] if p["children"] else [p["name"]]
    return Outcome(f"deleted {', '.join(gone)} (no disk file removed)", {"deleted": gone})


# --- after, judge, undo ------------------------------------------------------------------------------------
def _after(job) -> None:
    """Always: the VM's snapshots and the VM itself as libvirt has them now."""
    if job.host is None or not job.vm_uuid:
        return
    uuid = str(job.vm_uuid)
    conn = host_connection(job.host)
    facts = job.result or {}
    sizes = {}
    if facts.get("made") and facts.get("size") is not None and facts.get("size_kind"):
        sizes[job.params["name"]] = (int(facts["size"]), str(facts["size_kind"]))
    snapshots_reread(host=job.host, uuid=uuid, conn=conn, sizes=sizes)
    vm_reread(host=job.host, uuid=uuid, conn=conn)


def _conn_for_judging(job):
    if job.host is None:
        return None
    conn = host_connection(job.host)
    vsnap.wait_idle(conn, str(job.vm_uuid), timeout=IDLE_WAIT)
    return conn


def _judge_create(job) -> Verdict:
    name = job.params["name"]
    try:
        conn = _conn_for_judging(job)
        if conn is None:
            return Verdict(False, "its host was removed from Virtfleet")
        snap = vsnap.snapshot_get(conn, str(job.vm_uuid), name)
    except HostUnreachable as exc:
        return Verdict(False, f"its host does not answer ({exc.message}); whether {name} was made shows once it "
                              "is back (the list is re-read then)")  # fmt: skip
    if snap is None:
        return Verdict(False, f"libvirt lists no snapshot {name}: it was not made", advice="Take it again.")
    return Verdict(True, f"libvirt lists snapshot {name} ({snap.state})")


def _judge_revert(job) -> Verdict:
    name, before = job.params["name"], job.params.get("current_before", "")
    try:
        conn = _conn_for_judging(job)
        if conn is None:
            return Verdict(False, "its host was removed from Virtfleet")
        current = vsnap.current_name(conn, str(job.vm_uuid))
        state = vsnap.domain_state(conn, str(job.vm_uuid))
    except VirtError as exc:
        return Verdict(False, f"its host does not answer ({exc.message})")
    shown = state.replace("shutoff", "shut off")
    if current != name:
        return Verdict(False, f"the current snapshot is {current or 'none'}, not {name}: the revert did not happen; "
                              f"the VM is {shown}")  # fmt: skip
    if before == name:
        return Verdict(False, f"{name} is current, as it was before: whether the revert ran cannot be told; the VM is "
                              f"{shown}", advice="Check the VM and revert again if needed.")  # fmt: skip
    wanted = job.params.get("after") or ""
    if wanted and state != wanted:
        return Verdict(False, f"reverted to {name}, but the VM is {shown}, not {wanted}")
    return Verdict(True, f"{name} is the current snapshot and the VM is {shown}")


def _judge_delete(job) -> Verdict:
    name = job.params["name"]
    doomed = [name, *(job.params.get("subtree") or [])]
    try:
        conn = _conn_for_judging(job)
        if conn is None:
            return Verdict(False, "its host was removed from Virtfleet")
        left = {s.name for s in vsnap.list_snapshots(conn, str(job.vm_uuid))} & set(doomed)
    except VirtError as exc:
        return Verdict(False, f"its host does not answer ({exc.message})")
    if left:
        return Verdict(False, f"libvirt still lists {', '.join(sorted(left))}")
    return Verdict(True, f"libvirt no longer lists {', '.join(doomed)}")


def _undo_create(job) -> str:
    """A create that did not succeed: remove its snapshot if libvirt lists one (its own state only)."""
    facts = job.result or {}
    name = facts.get("creating")
    if not name or job.host is None:
        return ""
    uuid = str(job.vm_uuid)
    try:
        conn = host_connection(job.host)
        vsnap.wait_idle(conn, uuid, timeout=IDLE_WAIT)
        snap = vsnap.snapshot_get(conn, uuid, name)
        if snap is None:
            return ""
        if snap.external and vsnap.libvirt_version(conn) < vsnap.DELETE_EXTERNAL:
            return f"snapshot {name} was made but is external, and this libvirt cannot delete one: it is kept"
        vsnap.delete(conn, uuid, name)
    except HostUnreachable as exc:
        return f"its host does not answer ({exc.message}): whether {name} was made shows once it is back"
    except vsnap.SnapshotNotFound:
        return ""
    return f"undone: removed the half-made snapshot {name} (only the snapshot; no disk file touched)"


def _kind(name: str, label: str, handler, check, params, **extra) -> Kind:
    return Kind(name=name, label=label, handler=handler, subject=vm_subject, lock="vm", queue=QUEUE,
                right="configure", audit_action=name, check=check, params=params, after=_after,
                retry_transient=False, **extra)  # fmt: skip


for _kind_ in [
    _kind("snapshot.create", "Take snapshot", _create, _check_create, P.CreateParams, facts=_create_facts,
          judge=_judge_create, undo=_undo_create),
    _kind("snapshot.revert", "Revert to snapshot", _revert, _check_revert, P.RevertParams, facts=_revert_facts,
          judge=_judge_revert),
    _kind("snapshot.delete", "Delete snapshot", _delete, _check_delete, P.DeleteParams, facts=_delete_facts,
          judge=_judge_delete),
]:  # fmt: skip
    kinds.register(_kind_)
