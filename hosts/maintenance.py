"""Host maintenance: move every running VM off a host, then keep new VMs away from it.

Entering maintenance is a job of its own (kind ``maintenance``): it places each running or paused
VM on the eligible host with the most free memory (keeping track of what it already placed there),
starts one migrate job per VM (the migration queue enforces the per-host limits), follows them,
and ends with the host empty — or with the list of VMs that could not move and why.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from dataclasses import dataclass

from django.db import transaction

from audit.services import audit_record, audit_refusal
from core import access
from core.errors import Conflict, ServiceError
from vms import jobs
from vms.models import TERMINAL_STATUSES, VM, Job, JobEvent, JobKind, JobStatus

from .models import Host, HostState, MaintenanceState
from .services import _push_host

log = logging.getLogger(__name__)
HEADROOM = 64 * 2**20


@dataclass(frozen=True)
class Placement:
    vm: VM
    target: Host | None
    reason: str = ""


def maintenance_plan(*, host: Host) -> list[Placement]:
    """Where each running VM of ``host`` goes: the eligible host with the most memory left."""
    candidates = [
        h
        for h in Host.objects.filter(state=HostState.CONNECTED, maintenance=MaintenanceState.NONE).exclude(pk=host.pk)
        if (not host.arch or not h.arch or h.arch == host.arch)
        and (not host.hypervisor_type or h.hypervisor_type == host.hypervisor_type)
    ]
    free = {h.pk: h.free_memory_bytes for h in candidates}
    plan = []
    vms = VM.objects.present().filter(host=host, state__in=["running", "paused"]).select_related("host")
    for vm in sorted(vms, key=lambda v: (-v.memory_kib, v.name)):
        need = vm.memory_kib * 1024 + HEADROOM
        fitting = [h for h in candidates if free[h.pk] >= need]
        if not fitting:
            why = (
                "no other host is connected and in service"
                if not candidates
                else f"no host has {need // 2**20} MiB free"
            )
            plan.append(Placement(vm, None, why))
            continue
        best = max(fitting, key=lambda h: (free[h.pk], -h.pk))
        free[best.pk] -= need
        plan.append(Placement(vm, best))
    return plan


def host_maintenance_enter(*, host: Host, user=None, ip: str | None = None) -> Job:
    """Put ``host`` into maintenance: refuse new VMs there at once, then evacuate it (a job)."""
    access.require(user, access.MAINTAIN, host, what="host.maintenance.enter")
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        refusal = ""
        if host.maintenance != MaintenanceState.NONE:
            refusal = f"{host.name} is already {host.get_maintenance_display().lower()}."
        elif host.state != HostState.CONNECTED:
            refusal = f"{host.name} is {host.get_state_display().lower()}: its VMs cannot be moved now."
        else:
            job = _start_evacuation(host, user=user, ip=ip)
    if refusal:
        audit_refusal(user=user, action="host.maintenance.enter", target=host, message=refusal)
        raise ServiceError(refusal)
    return job


def _start_evacuation(host: Host, *, user, ip) -> Job:
    """Mark ``host`` entering maintenance and create its evacuation job (inside the caller's lock)."""
    host.maintenance = MaintenanceState.ENTERING
    host.save(update_fields=["maintenance", "updated"])
    _push_host(host)
    task_id = str(uuidlib.uuid4())
    who = user.get_username() if user is not None and user.is_authenticated else "system"
    job = Job.objects.create(
        kind=JobKind.MAINTENANCE,
        host=host,
        host_name=host.name,
        requested_by=user if user is not None and user.is_authenticated else None,
        requested_by_name=who,
        requested_from=jobs._client_ip(ip),
        celery_task_id=task_id,
        message="waiting for a worker",
    )
    JobEvent.objects.create(job=job, status=JobStatus.QUEUED, message=f"requested by {who}")
    jobs._push_job(job)
    audit_record(
        action="host.maintenance.enter",
        user=user,
        ip=job.requested_from,
        target=host,
        message=f"evacuation started (job {job.pk})",
        details={"job": job.pk},
    )
    from .tasks import host_maintenance_task

    transaction.on_commit(lambda: host_maintenance_task.apply_async(args=[job.pk], task_id=task_id))
    return job


def host_maintenance_leave(*, host: Host, user=None) -> Host:
    """Return ``host`` to service (refused while it is still being evacuated)."""
    access.require(user, access.MAINTAIN, host, what="host.maintenance.leave")
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        running = Job.objects.active().filter(kind=JobKind.MAINTENANCE, host=host).first()
        refusal: ServiceError | None = None
        if running is not None:
            refusal = Conflict(f"{host.name} is being evacuated (job {running.pk}); cancel that job first.")
        elif host.maintenance == MaintenanceState.NONE:
            refusal = ServiceError(f"{host.name} is not in maintenance.")
        else:
            host.maintenance = MaintenanceState.NONE
            host.save(update_fields=["maintenance", "updated"])
            _push_host(host)
            audit_record(action="host.maintenance.leave", user=user, target=host, message="back in service")
    if refusal is not None:
        audit_refusal(user=user, action="host.maintenance.leave", target=host, message=refusal.message)
        raise refusal
    return host


def host_maintenance_run(job_id: int, *, worker: str = "", poll: float = 1.0) -> None:
    """The evacuation (on a worker): one migrate job per VM, followed until all have ended."""
    job = Job.objects.select_related("host").filter(pk=job_id).first()
    if job is None or job.status in TERMINAL_STATUSES:
        return
    if job.status == JobStatus.RUNNING:
        jobs.job_end_interrupted(job, reason=f"worker {job.worker or '?'} stopped while running it")
        return
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(attempts=1, worker=worker):
            return
        job.refresh_from_db()
        jobs.job_transition(job, JobStatus.RUNNING, message="planning where each VM goes", progress=0)
    host = job.host
    from vms.migration import migration_request

    refused: list[dict] = []
    children: list[Job] = []
    for placement in maintenance_plan(host=host):
        vm = placement.vm
        if placement.target is None:
            refused.append({"vm": vm.name, "uuid": str(vm.uuid), "reason": placement.reason})
            continue
        try:
            children.append(
                migration_request(
                    vm=vm, target=placement.target, params={"live": True}, user=job.requested_by, parent=job
                )
            )
        except ServiceError as exc:
            refused.append({"vm": vm.name, "uuid": str(vm.uuid), "reason": exc.message})
    total = len(children) + len(refused)
    jobs.job_progress(
        job, 0, f"moving {len(children)} VM(s)" + (f"; {len(refused)} cannot move" if refused else ""), record=True
    )
    cancelled = False
    while True:
        states = dict(Job.objects.filter(pk__in=[c.pk for c in children]).values_list("pk", "status"))
        done = sum(1 for s in states.values() if s in TERMINAL_STATUSES)
        if done == len(children):
            break
        if not cancelled and Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
            cancelled = True
            for child in Job.objects.filter(pk__in=[c.pk for c in children]).active():
                try:
                    jobs.job_cancel(job=child)
                except ServiceError:
                    pass
        jobs.job_progress(job, int(100 * done / max(1, total)), f"{done} of {len(children)} migration(s) ended")
        time.sleep(poll)
    finished = list(Job.objects.filter(pk__in=[c.pk for c in children]))
    moved = [
        {"vm": c.vm_name, "to": c.target_host.name if c.target_host else "?"}
        for c in finished
        if c.status == JobStatus.SUCCEEDED
    ]
    failed = refused + [
        {"vm": c.vm_name, "uuid": str(c.vm_uuid), "reason": c.error or c.message or c.status}
        for c in finished
        if c.status != JobStatus.SUCCEEDED
    ]
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        if cancelled:
            host.maintenance = MaintenanceState.NONE
        else:
            host.maintenance = MaintenanceState.ON
        host.save(update_fields=["maintenance", "updated"])
        _push_host(host)
    result = {"moved": moved, "failed": failed}
    current = Job.objects.get(pk=job.pk)
    job.status = current.status
    with transaction.atomic():
        if cancelled:
            jobs.job_transition(
                job,
                JobStatus.CANCELLED,
                message=f"cancelled after moving {len(moved)} VM(s); {host.name} is back in service",
                result=result,
            )
        elif failed:
            lines = "; ".join(f"{f['vm']}: {f['reason']}" for f in failed)
            jobs.job_transition(
                job,
                JobStatus.FAILED,
                error=f"{host.name} is in maintenance, but {len(failed)} VM(s) could not move — {lines}",
                error_code="not_empty",
                result=result,
            )
        else:
            jobs.job_transition(
                job,
                JobStatus.SUCCEEDED,
                message=f"{host.name} is in maintenance: {len(moved)} VM(s) moved away",
                result=result,
            )
