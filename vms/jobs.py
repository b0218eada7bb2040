"""Job services: request an operation, move a job through its states, run it on a worker, and
end jobs whose worker died.

Flow: job_request (web/API) validates against vms.actions, creates the Job row and enqueues the
Celery task on commit → vms.tasks.job_run → job_execute claims the job, runs the operation
through virt/, re-reads the VM from libvirt and records the outcome. Every status change goes
through job_transition, which refuses illegal moves, writes the timeline and pushes job.updated.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import FROM_REQUEST, audit_record, audit_refusal, job_outcome
from core import access
from core.errors import Conflict, Forbidden, ServiceError
from core.realtime import JOBS_GROUP, job_group, push_on_commit, vm_group
from hosts.connections import host_connection, manager
from virt import DomainNotFound, HostConnection, OperationAborted, VirtError

from .actions import ACTIONS, refusal
from .models import TERMINAL_STATUSES, TRANSITIONS, VM, Job, JobEvent, JobKind, JobStatus

log = logging.getLogger(__name__)


def _cfg(key: str, default):
    return settings.VIRTFLEET.get(key, default)


# --- parameters ---------------------------------------------------------------------------------------
def _bool(params: dict, key: str) -> bool:
    value = params.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ServiceError(f"{key} must be true or false.", field=f"params.{key}")


def clean_params(kind: str, params: dict | None) -> dict:
    """Validate the options of an operation; unknown options are refused, not ignored."""
    params = dict(params or {})
    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    allowed: dict[str, Callable[[dict], object]] = {}
    if kind == JobKind.SHUTDOWN:

        def timeout(p):
            value = p.get("timeout", _cfg("SHUTDOWN_TIMEOUT", 120))
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ServiceError("timeout must be a whole number of seconds.", field="params.timeout") from None
            if not 1 <= value <= 3600:
                raise ServiceError("timeout must be between 1 and 3600 seconds.", field="params.timeout")
            return value

        allowed["timeout"] = timeout
    if kind == JobKind.START:
        allowed["force_boot"] = lambda p: _bool(p, "force_boot")
    if kind == JobKind.DELETE:
        allowed["remove_storage"] = lambda p: _bool(p, "remove_storage")
        allowed["force"] = lambda p: _bool(p, "force")
    unknown = set(params) - set(allowed)
    if unknown:
        raise ServiceError(
            f"Unknown option(s) for {kind}: {', '.join(sorted(map(str, unknown)))}"
            + (f"; allowed: {', '.join(sorted(allowed))}." if allowed else "; it takes none."),
            field="params",
        )
    return {key: check(params) for key, check in allowed.items()}


# --- requesting ---------------------------------------------------------------------------------------
def _client_ip(ip: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        return None


def job_request(*, vm: VM, kind: str, params: dict | None = None, user=None, ip: str | None = None) -> Job:
    """Create a job for ``kind`` on ``vm`` and have a worker run it once this transaction commits.

    Refused (Forbidden) when ``user`` may not operate the VM, (ServiceError) when the VM's state
    does not allow it, and (Conflict) when the VM already has an active job: never two jobs on one
    VM at a time. Refusals are recorded in the audit log, like the requests themselves.
    """
    action = ACTIONS.get(kind)
    if action is None:
        raise ServiceError(f"Unknown action {str(kind)[:40]!r}; use one of: {', '.join(ACTIONS)}.", field="action")
    access.require(user, access.OPERATE, vm, what=f"vm.{kind}")
    params = clean_params(kind, params)
    busy = Job.objects.active().filter(vm_uuid=vm.uuid).first()
    if busy is not None:
        _refuse(user, f"vm.{kind}", vm, Conflict(
            f"VM {vm.name} is busy with {busy.get_kind_display().lower()} (job {busy.pk}); wait for it to finish.",
            code="busy",
        ))  # fmt: skip
    reason = refusal(vm, kind, params=params)
    if reason:
        _refuse(
            user,
            f"vm.{kind}",
            vm,
            ServiceError(f"Cannot {action.label.lower()} {vm.name}: {reason}.", code="not_allowed"),
        )
    return _create_job(vm=vm, kind=kind, params=params, user=user, ip=ip)


def _refuse(user, what: str, target, error: ServiceError):
    """Record a refused request in the audit log, then refuse it."""
    audit_refusal(user=user, action=what, target=target, message=error.message)
    raise error


def _create_job(*, vm: VM, kind: str, params: dict, user=None, ip=None, target_host=None, task=None) -> Job:
    task_id = str(uuidlib.uuid4())
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                vm=vm,
                vm_uuid=vm.uuid,
                vm_name=vm.name,
                host=vm.host,
                host_name=vm.host.name,
                target_host=target_host,
                params=params,
                requested_by=user if user is not None and user.is_authenticated else None,
                requested_by_name=user.get_username() if user is not None and user.is_authenticated else "system",
                requested_from=_client_ip(ip),
                celery_task_id=task_id,
                message="waiting for a worker",
            )
            JobEvent.objects.create(job=job, status=JobStatus.QUEUED, message=f"requested by {job.requested_by_name}")
    except IntegrityError:
        busy = Job.objects.active().filter(vm_uuid=vm.uuid).first()
        what = f"{busy.get_kind_display().lower()} (job {busy.pk})" if busy else "another job"
        _refuse(
            user, f"vm.{kind}", vm, Conflict(f"VM {vm.name} is busy with {what}; wait for it to finish.", code="busy")
        )
    _push_job(job)
    audit_record(
        action=f"vm.{kind}",
        user=user,
        ip=job.requested_from or FROM_REQUEST,
        target=vm,
        message=f"job {job.pk} queued" + (f" to {target_host.name}" if target_host else ""),
        details={"job": job.pk, "params": params, **({"target_host": target_host.name} if target_host else {})},
    )
    enqueue = task or _default_task(kind)
    transaction.on_commit(lambda: enqueue.apply_async(args=[job.pk], task_id=task_id))
    return job


def _default_task(kind: str):
    from . import tasks

    return tasks.job_run


@dataclass
class BulkResult:
    jobs: list[Job] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)


def jobs_request_bulk(*, vms: list[VM], kind: str, params: dict | None = None, user=None, ip=None) -> BulkResult:
    """One job per VM; VMs that cannot take the action are listed with the reason, not fatal."""
    result = BulkResult()
    for vm in vms:
        try:
            result.jobs.append(job_request(vm=vm, kind=kind, params=params, user=user, ip=ip))
        except Forbidden as exc:
            result.refused.append({"vm": str(vm.uuid), "name": vm.name, "error": exc.message, "code": exc.code})
        except ServiceError as exc:
            if (exc.field or "").startswith("params") or exc.field == "action":
                raise  # the same for every VM: report it once
            result.refused.append({"vm": str(vm.uuid), "name": vm.name, "error": exc.message, "code": exc.code})
    return result


def job_cancel(*, job: Job, user=None) -> Job:
    """Cancel a queued job at once; ask a running one to stop where it can (waits, migrations)."""
    access.require(user, access.CANCEL, job, what="job.cancel")
    error: ServiceError | None = None
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        who = user.get_username() if user is not None and user.is_authenticated else "system"
        if job.status == JobStatus.QUEUED:
            job_transition(job, JobStatus.CANCELLED, message=f"cancelled by {who} before it started")
            audit_record(action="job.cancel", user=user, target=job, message="cancelled before it started")
        elif job.status == JobStatus.RUNNING:
            if job.kind not in CANCELLABLE_WHILE_RUNNING:
                error = ServiceError(f"A running {job.get_kind_display().lower()} cannot be stopped half-way.")
            elif not job.cancel_requested:
                job.cancel_requested = True
                job.save(update_fields=["cancel_requested"])
                JobEvent.objects.create(
                    job=job, status=job.status, progress=job.progress, message=f"cancel requested by {who}"
                )
                _push_job(job)
                audit_record(action="job.cancel", user=user, target=job, message="cancel requested while running")
        else:
            error = ServiceError(f"Job {job.pk} has already {job.status}.")
    if error is not None:
        _refuse(user, "job.cancel", job, error)
    return job


CANCELLABLE_WHILE_RUNNING = {JobKind.SHUTDOWN, JobKind.MIGRATE, JobKind.MAINTENANCE}


# --- the state machine ----------------------------------------------------------------------------------
class IllegalTransition(Exception):
    pass


def job_transition(
    job: Job,
    to: str,
    *,
    message: str = "",
    error: str = "",
    error_code: str = "",
    progress: int | None = None,
    result: dict | None = None,
) -> Job:
    """Move ``job`` to status ``to`` (refusing moves TRANSITIONS does not allow), record and push it."""
    if to not in TRANSITIONS[job.status]:
        raise IllegalTransition(f"job {job.pk}: {job.status} → {to} is not allowed")
    now = timezone.now()
    job.status = to
    if to == JobStatus.RUNNING:
        job.started_at = now
    if to in TERMINAL_STATUSES:
        job.finished_at = now
        if to == JobStatus.SUCCEEDED:
            job.progress = 100
    if progress is not None:
        job.progress = max(0, min(100, progress))
    job.message = (message or job.message)[:500]
    if error:
        job.error = error
        job.error_code = error_code
    if result is not None:
        job.result = result
    job.save()
    JobEvent.objects.create(job=job, at=now, status=to, progress=job.progress, message=(error or message)[:500])
    _push_job(job)
    if to in TERMINAL_STATUSES:
        audit_record(
            action="job.finished",
            user=job.requested_by if job.requested_by_id else None,
            username=job.requested_by_name,
            ip=job.requested_from,
            target=job,
            outcome=job_outcome(to),
            message=(error or job.message)[:500],
            details={
                "job": job.pk,
                "kind": job.kind,
                "status": to,
                **({"error_code": error_code} if error_code else {}),
            },
        )
    return job


def job_progress(job: Job, progress: int, message: str, *, record: bool = False) -> None:
    """Report progress of a running job (pushed live; written to the timeline when ``record``)."""
    job.progress = max(0, min(100, int(progress)))
    job.message = message[:500]
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(progress=job.progress, message=job.message)
    if record:
        JobEvent.objects.create(job=job, status=job.status, progress=job.progress, message=job.message)
    _push_job(job)


def _push_job(job: Job) -> None:
    from .serializers import job_payload

    groups = [JOBS_GROUP, job_group(job.pk)] + ([vm_group(job.vm_uuid)] if job.vm_uuid else [])
    push_on_commit(groups, {"type": "job.updated", "job": job_payload(job)})


# --- running (on a worker) ------------------------------------------------------------------------------
class JobFailed(Exception):
    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code


class JobCancelled(Exception):
    pass


@dataclass
class Outcome:
    message: str
    result: dict = field(default_factory=dict)


class JobContext:
    """What an operation handler gets: the job, a live connection and reporting helpers."""

    def __init__(self, job: Job, conn: HostConnection):
        self.job = job
        self.conn = conn
        self.uuid = str(job.vm_uuid)
        self.params = job.params

    def progress(self, percent: int, message: str, *, record: bool = False) -> None:
        job_progress(self.job, percent, message, record=record)

    def cancelled(self) -> bool:
        return Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()

    def state(self) -> str:
        return str(self.conn.power_state(self.uuid)[0])


def job_execute(job_id: int, *, worker: str = "") -> None:
    """Run job ``job_id`` (called by the Celery task; safe to call twice for one job)."""
    job = Job.objects.select_related("host", "vm").filter(pk=job_id).first()
    if job is None or job.status in TERMINAL_STATUSES:
        return  # deleted, cancelled before it started, or already ended (duplicate delivery)
    if job.status == JobStatus.RUNNING:
        # Delivered again after the worker running it died: end it the way the reaper does.
        job_end_interrupted(job, reason=f"worker {job.worker or '?'} stopped while running it")
        return
    with transaction.atomic():
        claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(attempts=job.attempts + 1)
        if not claimed:
            return
        job.refresh_from_db()
        job.worker = worker
        job_transition(job, JobStatus.RUNNING, message="running", progress=0)
    handler = HANDLERS.get(job.kind)
    if handler is None:
        _finish(job, JobStatus.FAILED, error=f"this worker does not know how to {job.kind}", code="unknown_kind")
        return
    retries = int(_cfg("JOB_RETRIES", 3))
    backoff = float(_cfg("JOB_RETRY_BACKOFF", 2.0))
    for attempt in range(1, retries + 2):
        try:
            if job.host is None:
                raise JobFailed("the VM's host was removed from Virtfleet", code="no_host")
            ctx = JobContext(job, host_connection(job.host))
            outcome = handler(ctx)
        except JobCancelled:
            _finish(job, JobStatus.CANCELLED, message="cancelled on request")
        except JobFailed as exc:
            _finish(job, JobStatus.FAILED, error=exc.message, code=exc.code)
        except OperationAborted as exc:
            _finish(job, JobStatus.CANCELLED, message=f"aborted: {exc.message}")
        except DomainNotFound:
            _finish(job, JobStatus.FAILED, error=f"the VM no longer exists on {job.host_name}", code="not_found")
        except VirtError as exc:
            if exc.transient and attempt <= retries:
                delay = backoff * 2 ** (attempt - 1)
                manager().drop(job.host.pk)  # reconnect on the next try
                job_progress(
                    job,
                    job.progress,
                    f"{exc.message} — retrying in {delay:g} s (attempt {attempt + 1} of {retries + 1})",
                    record=True,
                )
                time.sleep(delay)
                continue
            _finish(job, JobStatus.FAILED, error=str(exc), code=type(exc).__name__)
        except Exception as exc:
            log.exception("job %s crashed", job.pk)
            _finish(job, JobStatus.FAILED, error=f"internal error: {exc}", code="internal")
        else:
            _finish(job, JobStatus.SUCCEEDED, message=outcome.message, result=outcome.result)
        return


def _finish(
    job: Job, status: str, *, message: str = "", error: str = "", code: str = "", result: dict | None = None
) -> None:
    _refresh_vm(job)
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status in TERMINAL_STATUSES:
            return  # the reaper got there first
        job.status = current.status
        job_transition(job, status, message=message or error, error=error, error_code=code, result=result)


def _refresh_vm(job: Job) -> None:
    """Re-read the VM from libvirt so its row shows the outcome even without a listener."""
    from .inventory import vm_reread

    if job.host is None:
        return
    try:
        vm_reread(host=job.host, uuid=str(job.vm_uuid))
    except VirtError as exc:
        log.info("could not re-read VM %s after job %s: %s", job.vm_uuid, job.pk, exc)


# --- operation handlers -----------------------------------------------------------------------------------
def _already(state: str, wanted: set[str], what: str) -> Outcome | None:
    if state in wanted:
        return Outcome(f"nothing to do: the VM was already {what}", {"already": True})
    return None


def _start(ctx: JobContext) -> Outcome:
    if done := _already(ctx.state(), {"running"}, "running"):
        return done
    restored = ctx.conn.start(ctx.uuid, force_boot=bool(ctx.params.get("force_boot")))
    return Outcome("restored from its saved state" if restored else "started", {"restored": restored})


def _shutdown(ctx: JobContext) -> Outcome:
    state = ctx.state()
    if done := _already(state, {"shutoff"}, "shut off"):
        return done
    if state == "paused":
        raise JobFailed("the VM is paused and cannot react to the power button; resume it first", code="paused")
    timeout = int(ctx.params.get("timeout") or _cfg("SHUTDOWN_TIMEOUT", 120))
    resend = float(_cfg("SHUTDOWN_RESEND", 10))
    started = time.monotonic()
    last_press = 0.0
    while True:
        elapsed = time.monotonic() - started
        if state == "shutoff":
            return Outcome(f"powered off after {elapsed:.1f} s", {"seconds": round(elapsed, 1)})
        if ctx.cancelled():
            raise JobCancelled()
        if elapsed >= timeout:
            raise JobFailed(
                f"the guest did not power off within {timeout} s; force it off if it is hung",
                code="shutdown_timeout",
            )
        if elapsed - last_press >= resend or last_press == 0.0:
            # Guests miss a power-button press made too early in boot; libvirt never repeats it.
            try:
                ctx.conn.shutdown(ctx.uuid)
            except VirtError:
                if ctx.state() != "shutoff":
                    raise
            last_press = elapsed or 1e-9
        ctx.progress(
            min(99, int(100 * elapsed / timeout)),
            f"waiting for the guest to power off ({elapsed:.0f} s of {timeout} s)",
        )
        time.sleep(0.5)
        state = ctx.state()


def _simple(kind: str, call: Callable[[JobContext], None], message: str, done: set[str] | None = None, what: str = ""):
    def handler(ctx: JobContext) -> Outcome:
        if done and (result := _already(ctx.state(), done, what)):
            return result
        call(ctx)
        return Outcome(message)

    handler.__name__ = f"_{kind}"
    return handler


def _delete(ctx: JobContext) -> Outcome:
    try:
        state = ctx.state()
    except DomainNotFound:
        return Outcome("nothing to do: the VM was already deleted", {"already": True})
    if state not in ("shutoff", "unknown"):
        if not ctx.params.get("force"):
            raise JobFailed("the VM is running; shut it down first or delete with force", code="running")
        ctx.progress(20, "powering the VM off", record=True)
        ctx.conn.destroy(ctx.uuid)
    ctx.progress(50, "removing the definition" + (" and its volumes" if ctx.params.get("remove_storage") else ""))
    outcome = ctx.conn.undefine(ctx.uuid, remove_storage=bool(ctx.params.get("remove_storage")))
    parts = ["deleted"]
    if outcome.removed:
        parts.append(f"removed {len(outcome.removed)} volume(s): {', '.join(outcome.removed)}")
    if outcome.kept:
        parts.append("kept " + "; ".join(f"{label} ({why})" for label, why in outcome.kept))
    return Outcome(", ".join(parts), {"removed": list(outcome.removed), "kept": [list(k) for k in outcome.kept]})


HANDLERS: dict[str, Callable[[JobContext], Outcome]] = {
    JobKind.START: _start,
    JobKind.SHUTDOWN: _shutdown,
    JobKind.FORCE_OFF: _simple("force_off", lambda c: c.conn.destroy(c.uuid), "powered off", {"shutoff"}, "shut off"),
    JobKind.REBOOT: _simple("reboot", lambda c: c.conn.reboot(c.uuid), "reboot requested from the guest (ACPI)"),
    JobKind.RESET: _simple("reset", lambda c: c.conn.reset(c.uuid), "reset"),
    JobKind.SUSPEND: _simple("suspend", lambda c: c.conn.suspend(c.uuid), "suspended", {"paused"}, "paused"),
    JobKind.RESUME: _simple("resume", lambda c: c.conn.resume(c.uuid), "resumed", {"running"}, "running"),
    JobKind.SAVE: _simple(
        "save", lambda c: c.conn.managed_save(c.uuid), "state saved; the next start restores it", {"shutoff"}, "stopped"
    ),
    JobKind.AUTOSTART_ON: _simple("autostart_on", lambda c: c.conn.set_autostart(c.uuid, True), "autostart on"),
    JobKind.AUTOSTART_OFF: _simple("autostart_off", lambda c: c.conn.set_autostart(c.uuid, False), "autostart off"),
    JobKind.DELETE: _delete,
}

# State the VM should be in when a job of this kind succeeded (used to judge interrupted jobs).
TARGET_STATES = {
    JobKind.START: {"running"},
    JobKind.SHUTDOWN: {"shutoff"},
    JobKind.FORCE_OFF: {"shutoff"},
    JobKind.SUSPEND: {"paused"},
    JobKind.RESUME: {"running"},
    JobKind.SAVE: {"shutoff"},
}


# --- jobs whose worker died -----------------------------------------------------------------------------------
def job_end_interrupted(job: Job, *, reason: str) -> Job:
    """End a job left running by a dead worker, judged by what libvirt says now."""
    if job.kind == JobKind.MIGRATE:
        return _end_interrupted_migration(job, reason=reason)
    if job.vm_uuid is None:  # host-wide jobs (maintenance) are judged by their children
        with transaction.atomic():
            current = Job.objects.select_for_update().get(pk=job.pk)
            if current.status != JobStatus.RUNNING:
                return current
            return job_transition(
                current, JobStatus.FAILED, error=f"interrupted: {reason}; run it again", error_code="interrupted"
            )
    state = None
    exists = True
    if job.host is not None:
        try:
            state = str(host_connection(job.host).power_state(str(job.vm_uuid))[0])
        except DomainNotFound:
            exists = False
        except VirtError as exc:
            log.info("interrupted job %s: cannot ask %s: %s", job.pk, job.host_name, exc)
    _refresh_vm(job)
    reached = (job.kind == JobKind.DELETE and not exists) or (
        state is not None and state in TARGET_STATES.get(job.kind, ())
    )
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status != JobStatus.RUNNING:
            return current
        if reached:
            return job_transition(
                current,
                JobStatus.SUCCEEDED,
                message=f"interrupted ({reason}), but the VM reached its target state ({state or 'deleted'})",
            )
        now = (
            f"the VM is {state}"
            if state
            else ("the VM no longer exists" if not exists else "its state is unknown (host unreachable)")
        )
        return job_transition(
            current,
            JobStatus.FAILED,
            error=f"interrupted: {reason}; {now}. Check the VM and run the operation again if needed.",
            error_code="interrupted",
        )


def _end_interrupted_migration(job: Job, *, reason: str) -> Job:
    """A migration whose worker died: done if the VM now runs on the target and not on the source."""
    from .migration import _reread

    where = {}
    for label, host in (("source", job.host), ("target", job.target_host)):
        if host is None:
            continue
        try:
            where[label] = str(host_connection(host).power_state(str(job.vm_uuid))[0])
        except DomainNotFound:
            where[label] = None
        except VirtError:
            where[label] = "unknown"
    if job.host and job.target_host:
        _reread(job.vm_uuid, job.host, job.target_host)
    moved = where.get("target") in ("running", "paused") and where.get("source") is None
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status != JobStatus.RUNNING:
            return current
        if moved:
            return job_transition(
                current,
                JobStatus.SUCCEEDED,
                message=f"interrupted ({reason}), but the VM arrived on {job.target_host.name}",
            )
        return job_transition(
            current,
            JobStatus.FAILED,
            error=f"interrupted: {reason}; the VM is {where.get('source') or 'not'} on the source"
            f" and {where.get('target') or 'not'} on the target. Check it and migrate again if needed.",
            error_code="interrupted",
        )


def jobs_reap(*, worker_alive: Callable[[str], bool], dead_worker: str | None = None) -> list[Job]:
    """End running jobs whose worker is gone (called on worker start and periodically)."""
    ended = []
    for job in Job.objects.filter(status=JobStatus.RUNNING).select_related("host"):
        if job.worker == dead_worker or not worker_alive(job.worker):
            reason = (
                f"worker {job.worker or '?'} restarted"
                if job.worker == dead_worker
                else f"worker {job.worker or '?'} stopped"
            )
            ended.append(job_end_interrupted(job, reason=reason))
    return ended
