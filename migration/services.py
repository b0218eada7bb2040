"""Live migration and host maintenance: choosing a target, the options, pre-flight checks, the
migrate and maintenance jobs (kinds in migration.kinds) and what the pages ask.

migration_request checks the choice and the options, runs the pre-flight checks against both
hosts and asks the engine for a ``migrate`` job on the migration queue. The engine admits it once
both hosts have a free slot (at most N outgoing / M incoming per host); the handler checks again,
migrates peer-to-peer while a watcher pushes progress at least twice a second, and ends with the
VM row on its new host — or, when cancelled, still running on the old one.

Entering maintenance refuses new VMs on the host at once and starts a ``maintenance`` job: it
places each running VM on the eligible host with the most free memory and starts one migrate job
per VM as its children; it ends (without holding a worker) when the last of them has, with the host
empty or with the list of VMs that could not move and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from rest_framework import serializers

from audit.services import audit_record, audit_refusal
from core import access
from core.errors import Conflict, ServiceError
from hosts.connections import host_connection
from hosts.events import host_changed
from hosts.models import Host, HostState, MaintenanceState
from hosts.selectors import host_list
from jobs import kinds
from jobs.engine import clean_params, job_progress, job_request
from jobs.kinds import AwaitChildren, JobCancelled, JobContext, JobFailed, Outcome, Verdict
from jobs.models import Job, JobStatus
from jobs.params import Flag, WholeNumber
from virt import DomainNotFound, OperationAborted, VirtError
from virt.migration import Check, MigrationOptions, MigrationProgress, migrate, preflight
from vms.inventory import vm_reread
from vms.models import VM

from .events import migration_progressed

log = logging.getLogger(__name__)

MIGRATE = "migrate"
MAINTENANCE = "maintenance"
LIVE_STATES = {"running", "paused"}
HEADROOM = 64 * 2**20


def _limit(key: str, default: int) -> int:
    return int(settings.VIRTFLEET.get(key, default))


# --- choosing a target --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A host as the migrate dialog shows it (from the database; no libvirt call)."""

    host: Host
    eligible: bool
    reason: str

    @property
    def running(self) -> int:
        return getattr(self.host, "running_count", 0)


def _why_not(vm: VM, host: Host) -> str:
    if host.state != HostState.CONNECTED:
        return f"{host.get_state_display().lower()}"
    if host.in_maintenance:
        return "in maintenance"
    if vm.host.arch and host.arch and vm.host.arch != host.arch:
        return f"architecture {host.arch}, the VM's host is {vm.host.arch}"
    if vm.host.hypervisor_type and host.hypervisor_type and vm.host.hypervisor_type != host.hypervisor_type:
        return f"hypervisor {host.hypervisor_type}, the VM runs on {vm.host.hypervisor_type}"
    if vm.state in LIVE_STATES and host.free_memory_bytes and host.free_memory_bytes < vm.memory_kib * 1024:
        return f"only {host.free_memory_bytes // 2**20} MiB free"
    return ""


def migration_targets(*, vm: VM, user=None) -> list[Target]:
    """Every other host (that ``user`` may see), with whether it can take the VM at all and why not."""
    targets = []
    for host in access.visible_hosts(user, host_list()).exclude(pk=vm.host_id):
        reason = _why_not(vm, host)
        targets.append(Target(host=host, eligible=not reason, reason=reason))
    return sorted(targets, key=lambda t: (not t.eligible, -t.host.free_memory_bytes, t.host.name))


# --- options ----------------------------------------------------------------------------------------------
OPTION_KEYS = ("live", "copy_storage", "bandwidth_mibs", "max_downtime_ms", "auto_converge", "compressed", "postcopy")


class MigrationOptionsSerializer(serializers.Serializer):
    """The options of a migration (context: ``target``, the VM: live is its default when it runs)."""

    live = Flag(default=None, allow_null=True, help_text="live (running or paused VM) or offline (shut off); "
                "default: live when the VM runs")  # fmt: skip
    copy_storage = serializers.ChoiceField(choices=["", "all", "inc"], required=False, default="", allow_blank=True,
                                           help_text="copy disks not on shared storage: all, or incremental")  # fmt: skip
    bandwidth_mibs = WholeNumber(unit="MiB/s", min_value=0, max_value=100_000, help_text="0: unlimited")
    max_downtime_ms = WholeNumber(unit="ms", min_value=0, max_value=60_000, help_text="0: libvirt's default")
    auto_converge = Flag()
    compressed = Flag()
    postcopy = Flag(help_text="allow switching to post-copy while it runs")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["copy_storage"].error_messages["invalid_choice"] = 'copy_storage must be "", "all" or "inc".'

    def validate(self, data):
        vm: VM = self.context["target"]
        live = vm.state in LIVE_STATES if data.get("live") is None else data["live"]
        if live and vm.state not in LIVE_STATES:
            raise serializers.ValidationError(
                f"{vm.name} is {vm.get_state_display().lower()}: only a running or paused VM migrates live; "
                "choose offline migration."
            )
        if not live and vm.state != "shutoff":
            raise serializers.ValidationError(
                f"{vm.name} is {vm.get_state_display().lower()}: offline migration moves a shut-off VM; "
                "shut it down first or migrate live."
            )
        if not live and any(data.get(k) for k in ("auto_converge", "compressed", "postcopy", "max_downtime_ms")):
            raise serializers.ValidationError(
                "auto-converge, compression, post-copy and downtime apply to live migration only."
            )
        return {**data, "live": live, "copy_storage": data.get("copy_storage") or ""}


def migration_options(*, vm: VM, params: dict | None) -> dict:
    """Validated migration options (a JSON-able dict stored on the job)."""
    params = dict(params or {})
    unknown = sorted(str(k) for k in params if k not in OPTION_KEYS)
    if unknown:
        raise ServiceError(f"Unknown migration option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(OPTION_KEYS))}.",
                           field="params")  # fmt: skip
    return clean_params(kinds.get(MIGRATE), params, target=vm)


def _virt_options(options: dict, target: Host) -> MigrationOptions:
    return MigrationOptions(**{k: options[k] for k in OPTION_KEYS}, address=target.migration_address)


# --- pre-flight ------------------------------------------------------------------------------------------
def _db_checks(vm: VM, target: Host) -> list[Check]:
    same = target.pk == vm.host_id
    reachable = f"{target.name} is {target.get_state_display().lower()}"
    if target.last_error and target.state != HostState.CONNECTED:
        reachable += f": {target.last_error}"
    service = f"{target.name} is {'in maintenance' if target.in_maintenance else 'in service'}"
    return [
        Check("target", not same, "the VM is already on this host" if same else f"to {target.name}"),
        Check("target reachable", target.state == HostState.CONNECTED, reachable),
        Check("not in maintenance", not target.in_maintenance, service),
        Check("source reachable", vm.host.state == HostState.CONNECTED,
              f"{vm.host.name} is {vm.host.get_state_display().lower()}"),
    ]  # fmt: skip


def migration_preflight(*, vm: VM, target: Host, options: dict) -> list[Check]:
    """All pre-flight checks: the database's view first, then both hosts asked live."""
    checks = _db_checks(vm, target)
    if not all(c.ok for c in checks):
        return checks
    try:
        src = host_connection(vm.host)
    except VirtError as exc:
        return [*checks, Check("source reachable", False, f"cannot connect to {vm.host.name}: {exc}")]
    try:
        dst = host_connection(target)
    except VirtError as exc:
        return [*checks, Check("target reachable", False, f"cannot connect to {target.name}: {exc}")]
    try:
        return checks + preflight(src, dst, str(vm.uuid), _virt_options(options, target))
    except DomainNotFound:
        return [*checks, Check("vm", False, f"{vm.host.name} no longer has {vm.name}")]
    except VirtError as exc:
        return [*checks, Check("pre-flight", False, f"the checks could not run: {exc}")]


def failed_checks(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


class PreflightFailed(ServiceError):
    def __init__(self, checks: list[Check]):
        failed = failed_checks(checks)
        super().__init__(
            "Pre-flight checks failed: " + "; ".join(f"{c.name}: {c.message}" for c in failed), code="preflight"
        )
        self.checks = checks


def check_migration(vm: VM, options: dict, *, target_host: Host | None = None) -> str:
    """The migrate kind's check at request time: the VM exists, and every pre-flight check passes."""
    if vm.is_gone:
        raise ServiceError(f"{vm.name} no longer exists on any host.")
    checks = migration_preflight(vm=vm, target=target_host, options=options)
    if failed_checks(checks):
        raise PreflightFailed(checks)
    return ""


# --- requesting -------------------------------------------------------------------------------------------
def migration_request(
    *, vm: VM, target: Host, params: dict | None = None, user=None, ip: str | None = None, parent=None
) -> Job:
    """Check the choice and create a migrate job (refused, with the failed checks, if any fails).

    ``user`` must be allowed to migrate the VM and to see the target host; a child of a maintenance job
    (``parent``) acts under the maintenance right its parent was checked for.
    """
    if parent is None:
        access.require(user, access.MIGRATE, vm, what="vm.migrate")
        access.require(user, access.VIEW, target, what="vm.migrate")
    unknown = sorted(str(k) for k in (params or {}) if k not in OPTION_KEYS)
    if unknown:
        migration_options(vm=vm, params=params)  # raises, naming them
    return job_request(kind=MIGRATE, target=vm, params=params, user=user, ip=ip, parent=parent, target_host=target)


def migration_postcopy(*, job: Job, user=None) -> Job:
    """Ask a running migration to switch to post-copy (it must have been started with post-copy allowed)."""
    access.require(user, access.MIGRATE, job, what="job.postcopy")
    refusal = ""
    if job.kind != MIGRATE or job.status != JobStatus.RUNNING:
        refusal = "Only a running migration can switch to post-copy."
    elif not job.params.get("postcopy"):
        refusal = "This migration was started without post-copy; it cannot switch now."
    if refusal:
        audit_refusal(user=user, action="job.postcopy", target=job, message=refusal)
        raise ServiceError(refusal)
    Job.objects.filter(pk=job.pk).update(postcopy_requested=True)
    job.postcopy_requested = True
    audit_record(action="job.postcopy", user=user, target=job, message="switch to post-copy requested")
    return job


# --- the migrate kind (worker) ----------------------------------------------------------------------------
def slots_message(job: Job) -> str:
    """ "" when both hosts have a free migration slot, otherwise why the job waits (the kind's admission)."""
    max_out = _limit("MIGRATION_MAX_OUTGOING", 2)
    max_in = _limit("MIGRATION_MAX_INCOMING", 2)
    # Lock both hosts' rows so two workers cannot take the last slot at once.
    list(Host.objects.select_for_update().filter(pk__in=[job.host_id, job.target_host_id]))
    running = Job.objects.filter(kind=MIGRATE, status=JobStatus.RUNNING)
    outgoing = running.filter(host_id=job.host_id).count()
    incoming = running.filter(target_host_id=job.target_host_id).count()
    if outgoing >= max_out:
        return f"waiting for a migration slot: {job.host_name} already sends {outgoing} of {max_out} migrations"
    if incoming >= max_in:
        return (
            f"waiting for a migration slot: {job.target_host.name} already receives {incoming} of {max_in} migrations"
        )
    return ""


def run_migration(ctx: JobContext) -> Outcome:
    """The migrate kind's handler: check again, migrate with progress, end on the new host."""
    job = ctx.job
    source, target = job.host, job.target_host
    if target is None:
        raise JobFailed("the target host was removed", code="no_host")
    vm = VM.objects.select_related("host").filter(uuid=job.vm_uuid).first()
    if vm is None or vm.host_id != source.pk:
        raise JobFailed(f"the VM is no longer on {source.name}", code="moved")
    ctx.progress(0, "pre-flight checks")
    checks = migration_preflight(vm=vm, target=target, options=job.params)
    if failed_checks(checks):
        raise JobFailed(PreflightFailed(checks).message, code="preflight")
    ctx.progress(0, f"migrating to {target.name}", record=True)
    try:
        result = migrate(
            ctx.conn,
            str(job.vm_uuid),
            target.migration_uri,
            _virt_options(job.params, target),
            on_progress=lambda p: _report(job, p),
            should_cancel=ctx.cancelled,
            should_postcopy=lambda: Job.objects.filter(pk=job.pk, postcopy_requested=True).exists(),
        )
    except OperationAborted:
        raise JobCancelled(f"cancelled; {vm.name} keeps running on {source.name}") from None
    return Outcome(
        f"migrated to {target.name} in {result.seconds:.1f} s",
        {"seconds": round(result.seconds, 2), "progress_readings": result.progress_readings},
    )


def _report(job: Job, p: MigrationProgress) -> None:
    mib = 2**20
    speed = f" at {p.memory_bps / mib:.1f} MiB/s" if p.memory_bps else ""
    message = (
        f"{p.phase}: {p.data_processed / mib:.1f} of {p.data_total / mib:.1f} MiB{speed}"
        if p.data_total
        else f"{p.phase}…"
    )
    job_progress(job, p.percent, message, push=False)
    migration_progressed(job, p)


def reread_both(job: Job) -> None:
    """Re-read the VM on both hosts so its row follows it now, not when the events arrive."""
    for host in (job.target_host, job.host):
        if host is None:
            continue
        try:
            vm_reread(host=host, uuid=str(job.vm_uuid))
        except VirtError as exc:
            log.info("could not re-read %s on %s: %s", job.vm_uuid, host.name, exc)


def _where(host: Host | None, uuid: str) -> str | None:
    if host is None:
        return None
    try:
        return str(host_connection(host).power_state(uuid)[0])
    except DomainNotFound:
        return None
    except VirtError:
        return "unknown"


def judge_migration(job: Job) -> Verdict:
    """A migration whose worker died: done if the VM now runs on the target and not on the source."""
    uuid = str(job.vm_uuid)
    source, target = _where(job.host, uuid), _where(job.target_host, uuid)
    if target in LIVE_STATES and source is None:
        return Verdict(True, f"the VM arrived on {job.target_host.name}")
    return Verdict(False, f"the VM is {source or 'not'} on the source and {target or 'not'} on the target",
                   advice="Check it and migrate again if needed.")  # fmt: skip


# --- host maintenance ---------------------------------------------------------------------------------------
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
    refusal = ""
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        if host.maintenance != MaintenanceState.NONE:
            refusal = f"{host.name} is already {host.get_maintenance_display().lower()}."
        elif host.state != HostState.CONNECTED:
            refusal = f"{host.name} is {host.get_state_display().lower()}: its VMs cannot be moved now."
        else:
            host.maintenance = MaintenanceState.ENTERING
            host.save(update_fields=["maintenance", "updated"])
            host_changed(host)
            return job_request(kind=MAINTENANCE, target=host, user=user, ip=ip)
    audit_refusal(user=user, action="host.maintenance.enter", target=host, message=refusal)
    raise ServiceError(refusal)


def host_maintenance_leave(*, host: Host, user=None) -> Host:
    """Return ``host`` to service (refused while it is still being evacuated)."""
    access.require(user, access.MAINTAIN, host, what="host.maintenance.leave")
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        running = Job.objects.active().filter(kind=MAINTENANCE, host=host).first()
        refusal: ServiceError | None = None
        if running is not None:
            refusal = Conflict(f"{host.name} is being evacuated (job {running.pk}); cancel that job first.")
        elif host.maintenance == MaintenanceState.NONE:
            refusal = ServiceError(f"{host.name} is not in maintenance.")
        else:
            host.maintenance = MaintenanceState.NONE
            host.save(update_fields=["maintenance", "updated"])
            host_changed(host)
            audit_record(action="host.maintenance.leave", user=user, target=host, message="back in service")
    if refusal is not None:
        audit_refusal(user=user, action="host.maintenance.leave", target=host, message=refusal.message)
        raise refusal
    return host


def run_evacuation(ctx: JobContext) -> AwaitChildren | Outcome:
    """The maintenance kind's handler: one migrate job per running VM, as children of this job."""
    job = ctx.job
    refused: list[dict] = []
    started = 0
    ctx.progress(0, "planning where each VM goes")
    for placement in maintenance_plan(host=job.host):
        vm = placement.vm
        if ctx.cancelled():
            break
        if placement.target is None:
            refused.append({"vm": vm.name, "uuid": str(vm.uuid), "reason": placement.reason})
            continue
        try:
            migration_request(vm=vm, target=placement.target, params={"live": True}, user=job.requested_by, parent=job)
            started += 1
        except ServiceError as exc:
            refused.append({"vm": vm.name, "uuid": str(vm.uuid), "reason": exc.message})
    Job.objects.filter(pk=job.pk).update(result={"refused": refused})
    job.result = {"refused": refused}
    return AwaitChildren(f"moving {started} VM(s)" + (f"; {len(refused)} cannot move" if refused else ""))


def evacuation_done(job: Job, children: list[Job]) -> Outcome | JobFailed | JobCancelled:
    """The last migration of an evacuation ended: the host is in maintenance (or, if cancelled,
    back in service), and the job says which VMs moved and which could not."""
    moved = [{"vm": c.vm_name, "to": c.target_host.name if c.target_host else "?"} for c in children
             if c.status == JobStatus.SUCCEEDED]  # fmt: skip
    failed = list((job.result or {}).get("refused", [])) + [
        {"vm": c.vm_name, "uuid": str(c.vm_uuid), "reason": c.error or c.message or c.status}
        for c in children
        if c.status != JobStatus.SUCCEEDED
    ]
    cancelled = Job.objects.filter(pk=job.pk, cancel_requested=True).exists()
    host = Host.objects.select_for_update().get(pk=job.host_id) if job.host_id else None
    if host is not None:
        host.maintenance = MaintenanceState.NONE if cancelled else MaintenanceState.ON
        host.save(update_fields=["maintenance", "updated"])
        host_changed(host)
    name = host.name if host is not None else job.host_name
    result = {"moved": moved, "failed": failed}
    if cancelled:
        return JobCancelled(f"cancelled after moving {len(moved)} VM(s); {name} is back in service", result=result)
    if failed:
        lines = "; ".join(f"{f['vm']}: {f['reason']}" for f in failed)
        return JobFailed(f"{name} is in maintenance, but {len(failed)} VM(s) could not move — {lines}",
                         code="not_empty", result=result)  # fmt: skip
    return Outcome(f"{name} is in maintenance: {len(moved)} VM(s) moved away", result)


# --- queries for pages ----------------------------------------------------------------------------------
def migrations_on(host: Host):
    return Job.objects.active().filter(kind=MIGRATE).filter(Q(host=host) | Q(target_host=host))


def host_maintenance_job(*, host: Host) -> Job | None:
    return Job.objects.active().filter(kind=MAINTENANCE, host=host).first()
