"""Migration services: choosing a target, pre-flight checks, the migration job and its progress.

migration_request (web/API) validates the choice and the options, runs the pre-flight checks
against both hosts and creates a ``migrate`` job on the migration queue. migration_execute (the
worker) waits for a free slot on both hosts (at most N outgoing / M incoming per host), checks
again, migrates peer-to-peer while a watcher pushes progress at least twice a second, and ends
with the VM row on its new host — or, when cancelled, still running on the old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from core.errors import ServiceError
from core.realtime import JOBS_GROUP, job_group, push_now, vm_group
from hosts.connections import host_connection
from hosts.models import Host, HostState
from virt import DomainNotFound, OperationAborted, VirtError
from virt.migration import Check, MigrationOptions, MigrationProgress, migrate, preflight

from . import jobs
from .models import VM, Job, JobKind, JobStatus

log = logging.getLogger(__name__)

LIVE_STATES = {"running", "paused"}


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


def migration_targets(*, vm: VM, user=None) -> list[Target]:
    """Every other host (that ``user`` may see), with whether it can take the VM at all and why not."""
    from core import access
    from hosts.selectors import host_list

    targets = []
    for host in access.visible_hosts(user, host_list()).exclude(pk=vm.host_id):
        reason = ""
        if host.state != HostState.CONNECTED:
            reason = f"{host.get_state_display().lower()}"
        elif host.in_maintenance:
            reason = "in maintenance"
        elif vm.host.arch and host.arch and vm.host.arch != host.arch:
            reason = f"architecture {host.arch}, the VM's host is {vm.host.arch}"
        elif vm.host.hypervisor_type and host.hypervisor_type and vm.host.hypervisor_type != host.hypervisor_type:
            reason = f"hypervisor {host.hypervisor_type}, the VM runs on {vm.host.hypervisor_type}"
        elif vm.state in LIVE_STATES and host.free_memory_bytes and host.free_memory_bytes < vm.memory_kib * 1024:
            reason = f"only {host.free_memory_bytes // 2**20} MiB free"
        targets.append(Target(host=host, eligible=not reason, reason=reason))
    return sorted(targets, key=lambda t: (not t.eligible, -t.host.free_memory_bytes, t.host.name))


# --- options ----------------------------------------------------------------------------------------------
def _int(params: dict, key: str, low: int, high: int, unit: str) -> int:
    value = params.get(key, 0)
    if value in ("", None):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{key} must be a whole number ({unit}).", field=f"params.{key}") from None
    if not low <= number <= high:
        raise ServiceError(f"{key} must be between {low} and {high} {unit}.", field=f"params.{key}")
    return number


OPTION_KEYS = {"live", "copy_storage", "bandwidth_mibs", "max_downtime_ms", "auto_converge", "compressed", "postcopy"}


def migration_options(*, vm: VM, params: dict | None) -> dict:
    """Validated migration options (a JSON-able dict stored on the job)."""
    params = dict(params or {})
    unknown = set(params) - OPTION_KEYS
    if unknown:
        raise ServiceError(
            f"Unknown migration option(s): {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(OPTION_KEYS))}.",
            field="params",
        )
    live = jobs._bool(params, "live") if "live" in params else vm.state in LIVE_STATES
    if live and vm.state not in LIVE_STATES:
        raise ServiceError(f"{vm.name} is {vm.get_state_display().lower()}: only a running or paused VM migrates live; "
                           "choose offline migration.", field="params.live")  # fmt: skip
    if not live and vm.state != "shutoff":
        raise ServiceError(f"{vm.name} is {vm.get_state_display().lower()}: offline migration moves a shut-off VM; "
                           "shut it down first or migrate live.", field="params.live")  # fmt: skip
    copy = params.get("copy_storage") or ""
    if copy not in ("", "all", "inc"):
        raise ServiceError('copy_storage must be "", "all" or "inc".', field="params.copy_storage")
    options = {
        "live": live,
        "copy_storage": copy,
        "bandwidth_mibs": _int(params, "bandwidth_mibs", 0, 100_000, "MiB/s"),
        "max_downtime_ms": _int(params, "max_downtime_ms", 0, 60_000, "ms"),
        "auto_converge": jobs._bool(params, "auto_converge"),
        "compressed": jobs._bool(params, "compressed"),
        "postcopy": jobs._bool(params, "postcopy"),
    }
    if not live and any(options[k] for k in ("auto_converge", "compressed", "postcopy", "max_downtime_ms")):
        raise ServiceError(
            "auto-converge, compression, post-copy and downtime apply to live migration only.", field="params"
        )
    return options


def _virt_options(options: dict, target: Host) -> MigrationOptions:
    return MigrationOptions(
        live=options["live"],
        copy_storage=options["copy_storage"],
        bandwidth_mibs=options["bandwidth_mibs"],
        max_downtime_ms=options["max_downtime_ms"],
        auto_converge=options["auto_converge"],
        compressed=options["compressed"],
        postcopy=options["postcopy"],
        address=target.migration_address,
    )


# --- pre-flight ------------------------------------------------------------------------------------------
def migration_preflight(*, vm: VM, target: Host, options: dict) -> list[Check]:
    """All pre-flight checks: the database's view first, then both hosts asked live."""
    same = target.pk == vm.host_id
    reachable = f"{target.name} is {target.get_state_display().lower()}"
    if target.last_error and target.state != HostState.CONNECTED:
        reachable += f": {target.last_error}"
    service = f"{target.name} is {'in maintenance' if target.in_maintenance else 'in service'}"
    checks = [
        Check("target", not same, "the VM is already on this host" if same else f"to {target.name}"),
        Check("target reachable", target.state == HostState.CONNECTED, reachable),
        Check("not in maintenance", not target.in_maintenance, service),
        Check(
            "source reachable",
            vm.host.state == HostState.CONNECTED,
            f"{vm.host.name} is {vm.host.get_state_display().lower()}",
        ),
    ]
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


# --- requesting -------------------------------------------------------------------------------------------
def migration_request(
    *, vm: VM, target: Host, params: dict | None = None, user=None, ip: str | None = None, parent=None
) -> Job:
    """Check the choice and create a migrate job (refused, with the failed checks, if any fails).

    ``user`` must be allowed to migrate the VM and to see the target host; a child of a maintenance job
    (``parent``) acts under the maintenance right its parent was checked for.
    """
    from core import access
    from core.errors import Conflict

    if parent is None:
        access.require(user, access.MIGRATE, vm, what="vm.migrate")
        access.require(user, access.VIEW, target, what="vm.migrate")
    if vm.is_gone:
        jobs._refuse(user, "vm.migrate", vm, ServiceError(f"{vm.name} no longer exists on any host."))
    busy = Job.objects.active().filter(vm_uuid=vm.uuid).first()
    if busy is not None:
        jobs._refuse(user, "vm.migrate", vm, Conflict(
            f"VM {vm.name} is busy with {busy.get_kind_display().lower()} (job {busy.pk}); wait for it to finish.",
            code="busy",
        ))  # fmt: skip
    options = migration_options(vm=vm, params=params)
    checks = migration_preflight(vm=vm, target=target, options=options)
    if failed_checks(checks):
        jobs._refuse(user, "vm.migrate", vm, PreflightFailed(checks))
    from .tasks import migration_run

    job = jobs._create_job(
        vm=vm, kind=JobKind.MIGRATE, params=options, user=user, ip=ip, target_host=target, task=migration_run
    )
    if parent is not None:
        Job.objects.filter(pk=job.pk).update(parent=parent)
        job.parent = parent
    return job


def migration_postcopy(*, job: Job, user=None) -> Job:
    """Ask a running migration to switch to post-copy (it must have been started with post-copy allowed)."""
    from audit.services import audit_record
    from core import access

    access.require(user, access.MIGRATE, job, what="job.postcopy")
    if job.kind != JobKind.MIGRATE or job.status != JobStatus.RUNNING:
        jobs._refuse(user, "job.postcopy", job, ServiceError("Only a running migration can switch to post-copy."))
    if not job.params.get("postcopy"):
        jobs._refuse(user, "job.postcopy", job, ServiceError(
            "This migration was started without post-copy; it cannot switch now."
        ))  # fmt: skip
    Job.objects.filter(pk=job.pk).update(postcopy_requested=True)
    job.postcopy_requested = True
    audit_record(action="job.postcopy", user=user, target=job, message="switch to post-copy requested")
    return job


# --- running (worker) ------------------------------------------------------------------------------------
WAIT = "wait"  # migration_execute's answer when no slot is free: the task asks again later


def _slots_message(job: Job) -> str:
    """ "" when both hosts have a free migration slot, otherwise why the job waits."""
    max_out = _limit("MIGRATION_MAX_OUTGOING", 2)
    max_in = _limit("MIGRATION_MAX_INCOMING", 2)
    running = Job.objects.filter(kind=JobKind.MIGRATE, status=JobStatus.RUNNING)
    outgoing = running.filter(host_id=job.host_id).count()
    incoming = running.filter(target_host_id=job.target_host_id).count()
    if outgoing >= max_out:
        return f"waiting for a migration slot: {job.host_name} already sends {outgoing} of {max_out} migrations"
    if incoming >= max_in:
        return (
            f"waiting for a migration slot: {job.target_host.name} already receives {incoming} of {max_in} migrations"
        )
    return ""


def migration_execute(job_id: int, *, worker: str = "") -> str:
    """Run migrate job ``job_id``; returns WAIT when it must wait for a slot (the task retries)."""
    job = Job.objects.select_related("host", "target_host", "vm").filter(pk=job_id).first()
    if job is None or job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        return ""
    if job.status == JobStatus.RUNNING:
        jobs.job_end_interrupted(job, reason=f"worker {job.worker or '?'} stopped while running it")
        return ""
    if job.cancel_requested:
        with transaction.atomic():
            jobs.job_transition(job, JobStatus.CANCELLED, message="cancelled before it started")
        return ""
    if job.host is None or job.target_host is None:
        with transaction.atomic():
            jobs.job_transition(
                job, JobStatus.FAILED, error="the source or target host was removed", error_code="no_host"
            )
        return ""
    with transaction.atomic():
        # Lock both hosts' rows so two workers cannot take the last slot at once.
        list(Host.objects.select_for_update().filter(pk__in=[job.host_id, job.target_host_id]))
        job = Job.objects.select_related("host", "target_host", "vm").get(pk=job.pk)
        if job.status != JobStatus.QUEUED:
            return ""
        waiting = _slots_message(job)
        if waiting:
            if job.message != waiting:
                job.message = waiting
                job.save(update_fields=["message"])
                jobs._push_job(job)
            return WAIT
        job.worker = worker
        job.attempts += 1
        jobs.job_transition(job, JobStatus.RUNNING, message="pre-flight checks", progress=0)
    _run(job)
    return ""


def _run(job: Job) -> None:
    source, target = job.host, job.target_host
    vm = VM.objects.select_related("host").filter(uuid=job.vm_uuid).first()
    if vm is None or vm.host_id != source.pk:
        jobs._finish(job, JobStatus.FAILED, error=f"the VM is no longer on {source.name}", code="moved")
        return
    checks = migration_preflight(vm=vm, target=target, options=job.params)
    if failed_checks(checks):
        jobs._finish(job, JobStatus.FAILED, error=PreflightFailed(checks).message, code="preflight")
        return
    jobs.job_progress(job, 0, f"migrating to {target.name}", record=True)
    options = _virt_options(job.params, target)
    try:
        result = migrate(
            host_connection(source),
            str(job.vm_uuid),
            target.migration_uri,
            options,
            on_progress=lambda p: _report(job, p),
            should_cancel=lambda: Job.objects.filter(pk=job.pk, cancel_requested=True).exists(),
            should_postcopy=lambda: Job.objects.filter(pk=job.pk, postcopy_requested=True).exists(),
        )
    except OperationAborted:
        _reread(vm.uuid, source, target)
        jobs._finish(job, JobStatus.CANCELLED, message=f"cancelled; {vm.name} keeps running on {source.name}")
        return
    except VirtError as exc:
        _reread(vm.uuid, source, target)
        jobs._finish(job, JobStatus.FAILED, error=str(exc), code=type(exc).__name__)
        return
    _reread(vm.uuid, source, target)
    jobs._finish(
        job,
        JobStatus.SUCCEEDED,
        message=f"migrated to {target.name} in {result.seconds:.1f} s",
        result={"seconds": round(result.seconds, 2), "progress_readings": result.progress_readings},
    )


def _reread(uuid, source: Host, target: Host) -> None:
    """Re-read the VM on both hosts so its row follows it now, not when the events arrive."""
    from .inventory import vm_reread

    for host in (target, source):
        try:
            vm_reread(host=host, uuid=str(uuid))
        except VirtError as exc:
            log.info("could not re-read %s on %s: %s", uuid, host.name, exc)


def _report(job: Job, p: MigrationProgress) -> None:
    mib = 2**20
    speed = f" at {p.memory_bps / mib:.1f} MiB/s" if p.memory_bps else ""
    message = (
        f"{p.phase}: {p.data_processed / mib:.1f} of {p.data_total / mib:.1f} MiB{speed}"
        if p.data_total
        else f"{p.phase}…"
    )
    job.progress = p.percent
    job.message = message
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(progress=p.percent, message=message)
    from dataclasses import asdict

    push_now(
        [vm_group(job.vm_uuid), job_group(job.pk), JOBS_GROUP],
        {
            "type": "migration.progress",
            "job_id": job.pk,
            "vm_uuid": str(job.vm_uuid),
            "host": job.host_id,
            "target_host": job.target_host_id,
            "progress": asdict(p),
        },
    )


# --- queries for pages ----------------------------------------------------------------------------------
def migrations_on(host: Host):
    return Job.objects.active().filter(kind=JobKind.MIGRATE).filter(Q(host=host) | Q(target_host=host))
